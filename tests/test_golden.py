"""Golden conformance: released-file forms written by the upstream repositories' own code load strictly
through `bench embed`'s code path and give upstream's outputs (fixtures: scripts/golden/regenerate.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.embed import embed_signals
from bench.encoders.checkpoint import CheckpointError
from bench.encoders.loading import load_encoder

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "case.json").is_file())
TOLERANCE = 1e-5  # max |ours - upstream| / max |upstream|


def _case(name: str) -> tuple[dict, dict]:
    case = json.loads((GOLDEN / name / "case.json").read_text())
    text = case["options"].get("text")
    if text and "path" in text:
        case["options"]["text"] = {**text, "path": str(GOLDEN / text["path"])}
    with np.load(GOLDEN / name / "expected.npz") as z:
        return case, {k: z[k] for k in z.files}


def _rel(ours: np.ndarray, upstream: np.ndarray) -> float:
    return float(np.abs(ours - upstream).max() / np.abs(upstream).max())


def test_every_upstream_repository_has_fixtures():
    assert {"stmem", "merl_vit", "merl_resnet18", "dbeta"} <= set(CASES)


@pytest.mark.parametrize("name", CASES)
def test_released_files_give_upstream_outputs(name):
    case, expected = _case(name)
    for file in case["files"]:
        handle = load_encoder(case["method"], case["options"], GOLDEN / name / file)
        out = embed_signals(handle, expected["signals"], case["fs"], texts=case.get("prompts"))
        assert _rel(out["embedding"], expected["embedding"]) <= TOLERANCE, (file, _rel(out["embedding"], expected["embedding"]))
        for key in ("aligned", "text"):
            if key in expected:
                assert _rel(out[key], expected[key]) <= TOLERANCE, (file, key, _rel(out[key], expected[key]))


@pytest.mark.parametrize("name", [c for c in CASES if json.loads((GOLDEN / c / "case.json").read_text()).get("encoder_only_files")])
def test_encoder_only_files_embed_but_refuse_zero_shot(name):
    case, expected = _case(name)
    for file in case["encoder_only_files"]:
        with pytest.raises(CheckpointError, match="ECG encoder only.*zero-shot"):
            load_encoder(case["method"], case["options"], GOLDEN / name / file)
        handle = load_encoder(case["method"], {**case["options"], "text": {"kind": "none"}}, GOLDEN / name / file)
        out = embed_signals(handle, expected["signals"], case["fs"])
        assert "aligned" not in out and _rel(out["embedding"], expected["embedding"]) <= TOLERANCE


@pytest.mark.parametrize("name", CASES)
def test_whole_model_files_load_without_a_text_tower(name):
    case, expected = _case(name)
    if "text" not in case["options"]:
        pytest.skip("no text tower")
    handle = load_encoder(case["method"], {**case["options"], "text": {"kind": "none"}}, GOLDEN / name / case["files"][0])
    out = embed_signals(handle, expected["signals"], case["fs"])
    assert _rel(out["embedding"], expected["embedding"]) <= TOLERANCE


def test_a_checkpoint_of_another_architecture_is_refused_naming_keys():
    case, _ = _case("stmem")
    with pytest.raises(CheckpointError, match=r"merl_vit_tiny_final_total\.pth: checkpoint does not fit STMEM"):
        load_encoder("stmem", case["options"], GOLDEN / "merl_vit" / "merl_vit_tiny_final_total.pth")
