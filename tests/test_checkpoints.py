"""Checkpoints users bring: never executed, identified by their weights, any pretraining budget, text towers and
file shapes loaded as documented, damaged files named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bench.cli import app
from bench.encoders import create_encoder
from bench.encoders.checkpoint import CheckpointError, UnsafeCheckpoint, read_checkpoint, weights_hash

cli = CliRunner()
GOLDEN = Path(__file__).parent / "golden"


class Trap:
    """What a malicious checkpoint pickles: unpickling it calls os.system."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _trap_file(tmp_path: Path, state: dict) -> tuple[Path, Path]:
    marker = tmp_path / "PWNED"
    path = tmp_path / "released.pth"
    torch.save({"model": state, "extra": Trap(marker)}, path)
    return path, marker


def _store(root: Path) -> list[str]:
    return [f"paths.cache={root}/cache", f"paths.results={root}/results", f"tracking.uri=sqlite:///{root}/results/mlflow.db",
            "encoder.preset=tiny", "pretrain.epochs=1", "pretrain.batch_size=32", "linear.epochs=3", "run.n_boot=20",
            "data.demo.n_records=120"]


def _unit_runs(root: Path) -> int:
    from bench.config import load_config
    from bench.run.store import ResultStore

    if not (root / "results" / "mlflow.db").exists():
        return 0
    return len(ResultStore.from_config(load_config(_store(root))).unit_counts(["linear"]))


def test_a_booby_trapped_file_runs_nothing_through_any_entry_point(tmp_path):
    state = create_encoder("stmem", preset="tiny").checkpoint_state()
    path, marker = _trap_file(tmp_path, state)
    with pytest.raises(UnsafeCheckpoint, match=r"released\.pth: refused: reading it would build or call posix\.system"):
        read_checkpoint(path)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(0, 0.3, (2, 12, 5000)).astype(np.float32))
    out = tmp_path / "out" / "e.npz"
    embed = cli.invoke(app, ["embed", "--method", "stmem", "--ckpt", str(path), "--signals", str(tmp_path / "x.npy"), "--fs", "500",
                             "--out", str(out), *_store(tmp_path)])
    run = cli.invoke(app, ["run", "--suite", "linear", "--methods", "stmem", "--ckpt", f"stmem={path}", "--tasks", "super",
                           *_store(tmp_path)])
    for result in (embed, run):
        assert result.exit_code == 2, result.output
        assert "released.pth: refused" in result.output and "posix.system" in result.output
        assert "--trust-checkpoint-code" in result.output
    assert not marker.exists() and not out.exists() and _unit_runs(tmp_path) == 0


def test_a_booby_trapped_resume_file_is_refused_by_bench_pretrain(tmp_path):
    args = ["pretrain", "--method", "merit_mse", "--dataset", "demo_ptbxl", *_store(tmp_path)]
    first = cli.invoke(app, args)
    assert first.exit_code == 0, first.output
    folder = next((tmp_path / "cache" / "checkpoints").glob("merit_mse-*"))
    (folder / "encoder.pt").unlink()
    _, marker = _trap_file(folder, {})
    (folder / "released.pth").rename(folder / "last.pt")
    again = cli.invoke(app, args)
    assert again.exit_code == 2 and "last.pt: refused" in again.output and not marker.exists()


def test_trusting_a_files_code_is_explicit_and_recorded(tmp_path):
    from bench.encoders.loading import load_encoder

    enc = create_encoder("stmem", preset="tiny")
    path = tmp_path / "with_object.pth"
    from fractions import Fraction

    torch.save({"model": enc.checkpoint_state(), "lr": Fraction(1, 3)}, path)
    with pytest.raises(UnsafeCheckpoint, match="fractions.Fraction"):
        load_encoder("stmem", {"preset": "tiny"}, path)
    handle = load_encoder("stmem", {"preset": "tiny"}, path, trust_code=True)
    assert handle.trusted_code and handle.checkpoint_hash == weights_hash(enc.checkpoint_state())
    result = cli.invoke(app, ["run", "--suite", "linear", "--methods", "stmem", "--ckpt", f"stmem={path}", "--tasks", "super",
                              "--trust-checkpoint-code", *_store(tmp_path)])
    assert result.exit_code == 0, result.output
    from bench.config import load_config
    from bench.run.store import ResultStore

    runs = ResultStore.from_config(load_config(_store(tmp_path))).finished_units("linear", method="stmem").values()
    assert {r.data.tags["trust_checkpoint_code"] for r in runs} == {"yes"}
    assert {r.data.tags["checkpoint_sha256"] for r in runs} != {"none"}  # a released file keeps its file digest


def test_the_hash_is_of_the_weights_not_the_file():
    enc = create_encoder("merit_mse", preset="tiny")
    state = enc.checkpoint_state()
    same = {k: v.clone() for k, v in reversed(list(state.items()))}
    assert weights_hash(state) == weights_hash(same)
    changed = dict(same)
    key = next(iter(changed))
    changed[key] = changed[key].clone()
    changed[key].view(-1)[0] += 1e-6
    assert weights_hash(changed) != weights_hash(state)
    assert weights_hash({**state, key: state[key].double()}) != weights_hash(state)  # the dtype is part of it


def _pretrain_in_a_process(root: Path) -> dict:
    code = ("import json, sys; from bench.config import load_config; from bench.encoders.pretrain import run_pretraining; "
            "from bench.encoders.loading import load_encoder; "
            f"cfg = load_config({_store(root)!r}, data='demo_ptbxl'); r = run_pretraining(cfg, 'merit', progress=False); "
            "h = load_encoder('merit', {'preset': 'tiny'}, r.checkpoint); "
            "print(json.dumps({'hash': h.checkpoint_hash, 'path': str(r.checkpoint)}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_identical_pretraining_in_two_processes_gives_one_hash_and_the_same_unit_keys(tmp_path):
    import shutil

    first = _pretrain_in_a_process(tmp_path)
    first_bytes = Path(first["path"]).read_bytes()
    shutil.rmtree(tmp_path / "cache" / "checkpoints")
    second = _pretrain_in_a_process(tmp_path)  # the same settings, written again by another process
    assert Path(second["path"]).read_bytes() != first_bytes  # the file differs (its zip names the temporary file) ...
    assert second["hash"] == first["hash"]  # ... the weights do not
    from bench.run.runner import Runner

    keys = []
    for store in ("a", "b"):
        runner = Runner([*_store(tmp_path), f"tracking.uri=sqlite:///{tmp_path}/{store}.db", f"tracking.artifacts={tmp_path}/{store}"],
                        progress=False)
        runner.run("linear", ["merit"], ["demo_ptbxl"], ["super"])
        keys.append(sorted(runner.store.finished_units("linear").keys()))
    assert keys[0] == keys[1]


def test_two_budgets_coexist_and_are_listed(tmp_path):
    one = cli.invoke(app, ["run", "--suite", "linear", "--methods", "merit_mse", "--tasks", "super", *_store(tmp_path)])
    two = cli.invoke(app, ["run", "--suite", "linear", "--methods", "merit_mse", "--tasks", "super", *_store(tmp_path),
                           "pretrain.epochs=2"])
    assert one.exit_code == 0 and two.exit_code == 0, two.output
    assert "1 units (1 run" in two.output  # another budget: other weights, another unit
    folders = sorted(p.name for p in (tmp_path / "cache" / "checkpoints").glob("merit_mse-*"))
    assert len(folders) == 2 and {f.split("-")[3] for f in folders} == {"e1", "e2"}
    listed = cli.invoke(app, ["runs", "list", *_store(tmp_path)])
    assert listed.exit_code == 0 and "pretrained checkpoints" in listed.output
    for folder in folders:
        assert folder in listed.output
    assert "finished (1/1 epochs)" in listed.output and "finished (2/2 epochs)" in listed.output


def test_damaged_files_name_themselves(tmp_path):
    enc = create_encoder("merit_mse", preset="tiny")
    good = tmp_path / "encoder.pt"
    torch.save({"model": enc.checkpoint_state()}, good)
    cut = tmp_path / "last.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"last\.pt: not a readable checkpoint: truncated"):
        enc.load_checkpoint(cut)
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a readable checkpoint"):
        read_checkpoint(tmp_path / "model.safetensors")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(0, 0.3, (1, 12, 1000)).astype(np.float32))
    result = cli.invoke(app, ["embed", "--method", "merit_mse", "--ckpt", str(cut), "--signals", str(tmp_path / "x.npy"),
                              "--fs", "100", "--out", str(tmp_path / "e.npz"), "encoder.preset=tiny"])
    assert result.exit_code == 2 and "last.pt: not a readable checkpoint" in result.output and not (tmp_path / "e.npz").exists()


def test_the_readmes_merl_text_route_gives_merls_text_embeddings(tmp_path):
    from test_golden import _case

    case, expected = _case("merl_vit")
    o = case["options"]
    np.save(tmp_path / "x.npy", expected["signals"])
    (tmp_path / "t.txt").write_text("\n".join(case["prompts"]) + "\n")
    args = ["embed", "--method", "merl", "--ckpt", str(GOLDEN / "merl_vit" / case["files"][0]), "--signals", str(tmp_path / "x.npy"),
            "--fs", "500", "--texts", str(tmp_path / "t.txt"), "--out", str(tmp_path / "e.npz"),
            "encoder.preset=official", f"encoder.text.path={GOLDEN / 'text' / 'bert'}",  # as the README writes it: no '+'
            *(f"encoder.{k}={o[k]}" for k in ("proj_dim", "width", "depth", "heads", "mlp"))]
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "e.npz") as z:
        err = np.abs(z["text"] - expected["text"]).max() / np.abs(expected["text"]).max()
    assert err <= 1e-5  # MERL's own pooler output of lower-cased prompts, not a generic mean-pooled tower
    generic = cli.invoke(app, [*args[:-6], "encoder.text.kind=hf", *args[-5:]])
    assert generic.exit_code == 2 and "'medcpt' tower" in generic.output and "encoder.text.force_kind=true" in generic.output


def test_a_misspelt_key_gets_the_near_key_never_plus(tmp_path):
    result = cli.invoke(app, ["run", "--suite", "linear", "--methods", "random", *_store(tmp_path), "linear.epoch=5"])
    assert result.exit_code == 2 and "unknown config key 'linear.epoch'" in result.output and "linear.epochs" in result.output
    assert "'+" not in result.output
    added = cli.invoke(app, ["data", "verify", "demo_ptbxl", "+data.rooot=/x", *_store(tmp_path)])
    assert added.exit_code == 2 and "data.root" in added.output


def test_melps_twelve_query_files_name_the_option_that_loads_them(tmp_path):
    twelve = create_encoder("melp", preset="tiny", queries=12)
    path = tmp_path / "melp_pretrain.ckpt"
    torch.save({"state_dict": twelve.checkpoint_state()}, path)
    with pytest.raises(CheckpointError, match=r"melp_pretrain\.ckpt: .*this file has 12 contrastive queries.*encoder\.queries=12"):
        create_encoder("melp", preset="tiny").load_checkpoint(path)
    create_encoder("melp", preset="tiny", queries=12).load_checkpoint(path)


def _bench(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, env={**os.environ, **env})


def test_models_pull_and_hf_checkpoints_download_from_a_hub_stand_in_and_run_offline(tmp_path):
    import io

    from hub_server import serving

    enc = create_encoder("ecgfounder", preset="tiny")
    buffer = io.BytesIO()
    torch.save({"state_dict": enc.checkpoint_state(), "padding": bytes(24 << 20)}, buffer)  # larger than the hub client's 10 MB chunk
    data = buffer.getvalue()
    cache = [f"paths.cache={tmp_path}/cache"]
    with serving() as hub:
        digest = hub.add("PKUDigitalHealth/ECGFounder/12_lead_ECGFounder.pth", data, cut_after=12 << 20)
        pulled = _bench(["models", "pull", "ecgfounder", *cache], {"HF_ENDPOINT": hub.url})
        assert pulled.returncode == 0, pulled.stderr
        assert f"sha256 {digest}" in pulled.stdout and "--ckpt ecgfounder=hf:PKUDigitalHealth/ECGFounder" in pulled.stdout
        gets = [r for r in hub.requests if r[0] == "GET"]
        assert len(gets) >= 2 and gets[-1][2].startswith("bytes=") and gets[-1][2] != "bytes=0-"  # the cut transfer resumed
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(2, 12, 5000)).astype(np.float32))
    offline = _bench(["embed", "--method", "ecgfounder", "--ckpt", "hf:PKUDigitalHealth/ECGFounder/12_lead_ECGFounder.pth",
                      "--signals", str(tmp_path / "x.npy"), "--fs", "500", "--out", str(tmp_path / "e.npz"), "encoder.preset=tiny",
                      *cache], {"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"})  # the hub is gone: the cache serves
    assert offline.returncode == 0, offline.stderr
    assert weights_hash(enc.checkpoint_state()) in offline.stdout
    missing = _bench(["embed", "--method", "ecgfounder", "--ckpt", "hf:PKUDigitalHealth/Other/x.pth", "--signals",
                      str(tmp_path / "x.npy"), "--fs", "500", "--out", str(tmp_path / "f.npz"), *cache], {"HF_HUB_OFFLINE": "1"})
    assert missing.returncode == 2 and "hf:PKUDigitalHealth/Other/x.pth@main: not in the cache" in missing.stderr


def test_plain_downloads_resume_and_a_wrong_digest_keeps_nothing(tmp_path):
    import hashlib

    from bench.encoders.weights import fetch_plain

    from hub_server import serving

    data = np.random.default_rng(1).bytes(300_000)
    with serving() as hub:
        hub.add("records/4916206/files/model.pth", data, cut_after=150_000)
        url = f"{hub.url}/records/4916206/files/model.pth"
        with pytest.raises(CheckpointError, match="download failed.*it resumes"):
            fetch_plain(url, tmp_path)
        path = fetch_plain(url, tmp_path, hashlib.sha256(data).hexdigest())
        assert path.read_bytes() == data
        assert [r[2] for r in hub.requests][-1].startswith("bytes=") and [r[2] for r in hub.requests][-1] != "bytes=0-"
        hub.add("records/1/files/other.pth", data)
        with pytest.raises(CheckpointError, match="sha256 .* expected 0000"):
            fetch_plain(f"{hub.url}/records/1/files/other.pth", tmp_path, "0" * 64)
        assert not list((tmp_path / "downloads").glob("*other.pth*"))
    with pytest.raises(CheckpointError, match="Google Drive"):
        fetch_plain("https://drive.google.com/file/d/abc/view", tmp_path)


_TRAINER_WRITES = '''
import sys, numpy as np, torch
from dataclasses import dataclass, field
from omegaconf import OmegaConf
from clinical_ts.template_modules import BaseConfig
state = torch.load(sys.argv[1], weights_only=True)
hp = OmegaConf.structured(BaseConfig)
optimizer = {"state": {}, "param_groups": [{"lr": np.float64(1e-3), "weight_decay": np.float64(0.05), "params": [0]}]}
torch.save({"state_dict": state, "hyper_parameters": {"hparams": hp, "init_logit_scale": np.float64(np.log(1 / 0.07))},
            "hyper_parameters_type": type(hp), "optimizer_states": [optimizer], "epoch": np.int64(3)}, sys.argv[2])
'''


def test_files_with_numpy_scalars_and_structured_configs_load_and_payloads_stay_refused(tmp_path):
    """What training code saves beside the weights: numpy float64 hyper-parameters and optimizer settings (MELPModel,
    HeartLang's engine) and a Hydra structured config (the reality check's ECG-CPC Trainer), written in a process where
    the config's package exists and read in one where it does not."""
    from bench.encoders.cards import checkpoint_objects

    package = tmp_path / "src" / "clinical_ts"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "template_modules.py").write_text(
        "from dataclasses import dataclass, field\nfrom typing import List, Optional\n"
        "@dataclass\nclass BaseConfig:\n    fs: float = 240.0\n    input_size: float = 2.5\n"
        "    lr: float = 1e-3\n    input_channels: List[int] = field(default_factory=lambda: [12])\n"
        "    pretrained: Optional[str] = None\n")
    weights = tmp_path / "weights.pt"
    torch.save({"w": torch.arange(4.0)}, weights)
    path = tmp_path / "last.ckpt"
    subprocess.run([sys.executable, "-c", _TRAINER_WRITES, str(weights), str(path)], check=True,
                   env={**os.environ, "PYTHONPATH": str(tmp_path / "src")})
    blob = read_checkpoint(path, checkpoint_objects("ecg_cpc"), owner="ecg_cpc")
    assert torch.equal(blob["state_dict"]["w"], torch.arange(4.0))
    assert blob["hyper_parameters"]["init_logit_scale"] == pytest.approx(np.log(1 / 0.07))
    assert type(blob["hyper_parameters"]["hparams"]).__module__.startswith("bench.encoders.checkpoint.foreign")
    assert "clinical_ts" not in sys.modules
    for name in ("melp", "heartlang", "stmem"):  # numpy allowed, no structured configs: refused naming the class
        with pytest.raises(UnsafeCheckpoint, match=r"refused: reading it would build or call .*clinical_ts\.template_modules"
                                                   r"\.BaseConfig.*configs/cards/" + name):
            read_checkpoint(path, checkpoint_objects(name), owner=name)
    numpy_only = tmp_path / "engine.pth"
    torch.save({"model": {"w": torch.ones(2)}, "optimizer": {"param_groups": [{"lr": np.float64(5e-4)}]},
                "scaler": {"scale": np.float32(65536.0)}}, numpy_only)
    for name in ("melp", "heartlang"):
        assert read_checkpoint(numpy_only, checkpoint_objects(name), owner=name)["optimizer"]["param_groups"][0]["lr"] == 5e-4
    with pytest.raises(UnsafeCheckpoint, match=r"numpy.*configs/cards/merl\.yaml"):  # a card without numpy: named, not "truncated"
        read_checkpoint(numpy_only, checkpoint_objects("merl"), owner="merl")
    marker = tmp_path / "PWNED"
    torch.save({"model": {"w": torch.ones(2)}, "lr": np.float64(1.0), "x": Trap(marker)}, tmp_path / "trap.pth")
    for name in ("ecg_cpc", "heartlang", "melp"):
        with pytest.raises(UnsafeCheckpoint, match="posix.system"):
            read_checkpoint(tmp_path / "trap.pth", checkpoint_objects(name), owner=name)
    assert not marker.exists()
    with pytest.raises(ValueError, match="not of 'os'"):
        read_checkpoint(numpy_only, ["os.*"])


def _point_hub_at(monkeypatch, url: str, offline: str = "") -> None:
    """huggingface_hub reads its endpoint and offline switch once, at import: this process's copy is pointed too."""
    import huggingface_hub.constants as hub_constants

    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setattr(hub_constants, "ENDPOINT", url)
    monkeypatch.setattr(hub_constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", offline.upper() in hub_constants.ENV_VARS_TRUE_VALUES)


def test_hub_references_are_validated_and_confined_to_the_cache(tmp_path, monkeypatch):
    """'..' in any part of a reference, an absolute path or a symlink in the cache: nothing is written outside it."""
    from hub_server import serving

    from bench.encoders.weights import resolve_checkpoint

    cache = tmp_path / "cache"
    outside = tmp_path / "outside"
    outside.mkdir()
    refs = ["hf:ORG/REPO/model.pth@../../../../outside/x", "hf:ORG/REPO/model.pth@..", "hf:ORG/REPO/../../x.pth@main",
            "hf:ORG/REPO//etc/passwd@main", "hf:ORG/..REPO/model.pth@main", "hf:ORG/REPO/model.pth@main/../../../..",
            "hf:ORG/REPO/a\\..\\b.pth@main", "hf:ORG/REPO/model.pth@/abs"]
    with serving() as hub:
        hub.add("ORG/REPO/model.pth", b"x" * 100)
        _point_hub_at(monkeypatch, hub.url)
        for ref in refs:
            with pytest.raises(CheckpointError, match=r"(not a plain relative name|not a Hub repository id)"):
                resolve_checkpoint(ref, cache)
        (cache / "hub").mkdir(parents=True)
        (cache / "hub" / "models--ORG--REPO").symlink_to(outside, target_is_directory=True)
        with pytest.raises(CheckpointError, match="outside the cache"):
            resolve_checkpoint("hf:ORG/REPO/model.pth@main", cache)
        assert not [r for r in hub.requests if r[0] == "GET"]
    assert list(outside.iterdir()) == [] and not (tmp_path / "x").exists()
    for url in ("url:http://127.0.0.1:9/files/..", "url:http://127.0.0.1:9/a/..%2f"):
        with pytest.raises(CheckpointError):
            resolve_checkpoint(url, cache)
    np.save(tmp_path / "x.npy", np.zeros((1, 12, 5000), dtype=np.float32) + np.sin(np.arange(5000) / 50.0)[None, None])
    result = _bench(["embed", "--method", "ecgfounder", "--ckpt", refs[0], "--signals", str(tmp_path / "x.npy"), "--fs",
                     "500", "--out", str(tmp_path / "e.npz"), f"paths.cache={cache}"], {})
    assert result.returncode != 0 and "not a plain relative name" in result.stderr and "Traceback" not in result.stderr


def test_downloads_fail_in_one_line_switches_parse_as_the_hub_and_cached_files_are_rechecked(tmp_path, monkeypatch):
    from hub_server import serving

    from bench.encoders.weights import fetch_hf

    cache = tmp_path / "cache"
    data = np.random.default_rng(3).bytes(200_000)
    with serving() as hub:
        _point_hub_at(monkeypatch, hub.url)
        hub.add("ORG/REPO/cut.pth", data, cut_after=50_000, always=True)
        with pytest.raises(CheckpointError, match=r"hf:ORG/REPO/cut\.pth@main: .*(broke off|interrupted).*run the command again"):
            fetch_hf("ORG/REPO", "cut.pth", "main", cache)
        hub.add("ORG/REPO/liar.pth", data, etag="ab" * 32)  # the hub's digest is not the file's
        _point_hub_at(monkeypatch, hub.url, offline="0")  # an explicit "online"
        with pytest.raises(CheckpointError, match="sha256 .* expected abab"):
            fetch_hf("ORG/REPO", "liar.pth", "main", cache)
        assert not [p for p in (cache / "hub").rglob("*") if p.is_file() and p.stat().st_size == len(data)]
        hub.add("ORG/REPO/good.pth", data)
        path = fetch_hf("ORG/REPO", "good.pth", "main", cache)
        assert path.read_bytes() == data
    real = Path(os.path.realpath(path))
    real.write_bytes(data[:-1] + b"\0")  # altered in the cache after its download
    _point_hub_at(monkeypatch, "http://127.0.0.1:9", offline="1")
    with pytest.raises(CheckpointError, match=r"\(cached\): downloaded file has sha256"):
        fetch_hf("ORG/REPO", "good.pth", "main", cache)
