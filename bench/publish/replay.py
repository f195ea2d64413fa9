"""`bench verify --replay N`: N units of a publication, drawn at random, computed again from scratch by this code.

`bench verify` recomputes every number *from the stored predictions*; a replay checks the predictions themselves. Each
drawn unit is run again in a fresh workspace and cache (data prepared, checkpoints pretrained, heads trained) under the
publication's settings (``configs/publication/replay.yaml``). Meeting the unit's own key again proves the settings and
the code's view of what determines the number are the published ones; the replayed metrics must then equal the
published ones. Units keyed before a key scheme changed (the data fingerprint hashed file times before it hashed
contents) are found by what they are instead (suite, method, dataset, task, protocol, fraction, seed, mode, fold);
their pretrained weights' hash, split hash and input contract must then come out the same, and the replay says whether
the key did too.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import yaml
from pydantic import BaseModel, Field, ValidationError

from bench import REPO_ROOT

SETTINGS = REPO_ROOT / "configs" / "publication" / "replay.yaml"
RTOL = 1e-6
# what names a unit whatever its key, and what must come out the same before its metrics are compared
IDENTITY = ("suite", "method", "dataset", "task", "protocol", "fraction", "seed", "mode", "fold", "condition", "source_dataset",
            "target_dataset", "leads")
PROVENANCE = ("checkpoint_hash", "split_hash", "pretrain_budget", "contaminated", "pretrain_text")
# an input contract whose key changed since the unit ran (a field added for records longer than 10 s, a filter moved
# into the preprocessing) is reported; the unit holds only if today's contract gives its published metrics again
CONTRACT = "input_contract"


@dataclass
class Replayed:
    key: str
    label: str
    seconds: float
    problem: str = ""
    max_rel_diff: float = 0.0
    key_equal: bool = False
    note: str = ""


class _Candidate(BaseModel):
    name: str = ""
    when: dict[str, list] = {}
    overrides: list[str]


class _Settings(BaseModel):
    """The shape of a replay settings file (``configs/publication/replay.yaml``)."""

    candidates: list[_Candidate]
    suites: list[str] = Field(min_length=1)


def load_settings(path: Path | None = None) -> dict:
    """The publication's run settings (``configs/publication/replay.yaml`` unless another file is named)."""
    from bench.config import ConfigError

    path = Path(path or SETTINGS)
    try:
        return _Settings.model_validate(yaml.safe_load(path.read_text())).model_dump()
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"{path}: not a replay settings file (candidates: a list of {{name, when, overrides}}, suites: "
                          f"a list) ({exc.__class__.__name__}: {exc})") from exc


def candidates(tags: dict, settings: dict) -> list[list[str]]:
    """The override sets to try for a unit, in order: those whose ``when`` matches its tags; a transfer unit's two
    datasets and a unit's evaluation lead set are named by its own tags."""
    out = []
    for c in settings["candidates"]:
        when = c.get("when") or {}
        if all(str(tags.get(k, "linear" if k == "mode" else "")) in map(str, v) for k, v in when.items()):
            out.append(list(c["overrides"]))
    if tags["suite"] == "transfer":
        target = str(tags["task"]).removeprefix("to_")
        families = [f"transfer.families.{tags['dataset']}.dataset={tags['source_dataset']}",
                    f"transfer.families.{target}.dataset={tags['target_dataset']}"]
        out = [[o for o in c if not o.startswith("transfer.families.")] + families for c in out]
    if str(tags.get("leads", "12")) != "12":  # an evaluation lead set is named by the unit itself (bench run --leads)
        out = [[o for o in c if not o.startswith("preprocess.lead_set=")] + [f"preprocess.lead_set={tags['leads']}"] for c in out]
    return [c for i, c in enumerate(out) if c not in out[:i]]


def request_for(tags: dict):
    """The smallest request whose plan holds this unit (one method, dataset, task, protocol, fraction, seed, mode)."""
    from bench.suites.base import Request

    if tags["suite"] == "transfer":
        return Request([tags["method"]], seeds=[int(tags["seed"])],
                       directions=[f"{tags['dataset']}:{str(tags['task']).removeprefix('to_')}"])
    return Request([tags["method"]], [tags["dataset"]], [tags["task"]], [tags["protocol"]], [float(tags["fraction"])],
                   [int(tags["seed"])], modes=[tags.get("mode", "linear")])


def compare_metrics(published: dict, again: dict) -> tuple[str, float]:
    """The first metric that differs beyond ``RTOL`` ("" when none) and the largest relative difference."""
    worst, problem = 0.0, ""
    for name in sorted(set(published) & set(again)):
        a, b = float(published[name]), float(again[name])
        if np.isnan(a) and np.isnan(b):
            continue
        rel = abs(a - b) / max(abs(a), 1e-12)
        worst = max(worst, rel)
        if not np.isclose(a, b, rtol=RTOL, atol=1e-9) and not problem:
            problem = f"{name} is {a!r} published, {b!r} replayed"
    return problem, worst


def replay_unit(entry: dict, root: Path, settings: dict) -> Replayed:
    """One unit of the bundle run again under ``root`` (a scratch workspace and cache shared by the replays)."""
    from bench.run.runner import Runner
    from bench.suites.base import get_suite

    tags, suite = entry["tags"], get_suite(entry["suite"])
    label = f"{entry['suite']} {tags['method']}/{tags['dataset']}/{tags['task']} ({tags.get('protocol')}, fraction " \
            f"{tags.get('fraction')}, seed {tags.get('seed')}, {tags.get('mode', 'linear')}, fold {tags.get('fold')})"
    began = time.perf_counter()
    store = [f"paths.cache={root}/cache", f"tracking.uri=sqlite:///{root}/mlflow.db", f"tracking.artifacts={root}/artifacts"]
    folds = [str(tags["fold"])] if tags.get("protocol") == "cv10" and entry["suite"] == "linear" else None
    first = None
    for overrides in candidates(tags, settings):
        runner = Runner([*overrides, *store], progress=False, echo=lambda _: None, folds=folds, aggregate=False)
        runner.execute(suite, request_for(tags))
        runs = runner.store.finished_units(entry["suite"], method=str(tags["method"]))
        same = [r for r in runs.values() if all(str(r.data.tags.get(k)) == str(tags.get(k)) for k in IDENTITY if k in tags)]
        if not same:
            continue
        again = same[0].data
        provenance = [f"{k} is {tags[k]!r} published, {again.tags.get(k)!r} replayed" for k in PROVENANCE
                      if k in tags and str(again.tags.get(k)) != str(tags[k])]
        problem, worst = compare_metrics(entry["metrics"], again.metrics)
        contract = (f"input contract {tags[CONTRACT]} published, {again.tags.get(CONTRACT)} now"
                    if CONTRACT in tags and str(again.tags.get(CONTRACT)) != str(tags[CONTRACT]) else "")
        if contract and problem:
            provenance.append(contract)
        result = Replayed(entry["key"], label, 0.0, "; ".join(provenance + [problem] if problem else provenance), worst,
                          key_equal=again.tags.get("unit_key") == entry["key"], note=contract if not problem else "")
        if not result.problem:
            result.seconds = time.perf_counter() - began
            return result
        first = first or result
    if first is None:
        first = Replayed(entry["key"], label, 0.0, "no unit of this identity in the replayed plan")
    first.seconds = time.perf_counter() - began
    return first


def replay(results: Path, n: int, seed: int = 0, echo: Callable[[str], None] = lambda _: None,
           settings_file: Path | None = None, scratch: Path | None = None) -> list[Replayed]:
    """``n`` units of ``results/bundle`` drawn with ``seed`` among the replayable suites, each run again."""
    from bench.publish.bundle import BundleStore

    bundle = BundleStore.open(Path(results))
    settings = load_settings(settings_file)
    suites = set(settings["suites"])
    pool = [u for u in bundle.manifest["units"] if u["suite"] in suites]
    drawn = [pool[i] for i in np.random.default_rng(seed).choice(len(pool), size=min(n, len(pool)), replace=False)]
    out = []
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        for i, entry in enumerate(drawn, 1):
            r = replay_unit(entry, Path(tmp), settings)
            echo(f"[replay {i}/{len(drawn)}, {r.seconds:.0f} s] {r.label}: "
                 + (f"DIFFERS: {r.problem}" if r.problem else f"equal (largest relative difference {r.max_rel_diff:.1e}; "
                                                               f"key {'the same' if r.key_equal else 'new: this code keys it differently'}"
                                                               + (f"; {r.note}, giving the same metrics" if r.note else "") + ")"))
            out.append(r)
    return out
