"""Results others add: `bench submit` packs a user's runs of their encoder under the published protocol into a
submission (a results bundle of those units and their aggregates, plus ``submission.json``), and `bench leaderboard add`
verifies it against the publication before a number of it counts.

A submission is checked the way `bench verify` checks the publication (every unit metric from its predictions, every
aggregate from its units, every file against the sha256 the manifest gives it), and against the publication itself:
each task at the publication's version with the publication's split, each test set the publication's record ids,
complete provenance, no checkpoint read with its code allowed, no dirty tree, no record of a corpus its model card
declares. Accepted, its units and aggregates join the publication's bundle tagged ``submitted`` and the publication is
written again from that bundle, swapped in whole; refused, nothing of the publication changes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import tempfile
from datetime import date
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from bench.errors import BenchError
from bench.publish.bundle import BUNDLE, SUBMISSIONS, BundleStore, export_bundle, verify_numbers, write_combined

SUBMISSION = "submission.json"
#: what every submitted unit must say about itself (the leaderboard's provenance, and what these checks read)
REQUIRED_TAGS = ("method", "dataset", "task", "protocol", "fraction", "seed", "split_hash", "task_version", "checkpoint_hash",
                 "code_version", "input_contract", "contaminated", "pretrain_text", "trust_checkpoint_code")
#: the tags that say which test set a unit scored: two units alike in these scored the same records
_TEST_SET = ("suite", "dataset", "task", "protocol", "fold", "leads")


class SubmissionError(BenchError):
    """A submission that cannot be packed or cannot count; the message names the first problem."""


class _MethodsOnly:
    """A result store seen through ``methods``: only their aggregates (and so only their units) are exported."""

    def __init__(self, store, methods: Iterable[str]):
        self.store, self.methods = store, set(methods)

    def aggregate_runs(self, suite: str) -> list:
        return [r for r in self.store.aggregate_runs(suite) if r.data.tags.get("method") in self.methods]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def _house(results: Path) -> BundleStore:
    try:
        return BundleStore.open(results)
    except Exception as exc:
        raise SubmissionError(f"{results}: no publication to compare with ({exc}) (fix: --results names the published "
                              f"folder, e.g. results/)") from None


def _house_task_version(tags: dict[str, str]) -> str:
    """A house unit's task version; units published before versions were tagged are their dataset's version 1."""
    return tags.get("task_version") or f"{tags.get('dataset')}/{tags.get('task')}@1"


def _test_ids(bundle: BundleStore, entry: dict) -> frozenset[str] | None:
    if entry.get("predictions") is None:
        return None
    arrays = bundle.predictions(bundle.unit(entry["suite"], entry["key"]))
    return frozenset(map(str, arrays["record_ids"])) if "record_ids" in arrays else None


def problems_against(house: BundleStore, sub: BundleStore, methods: Iterable[str] | None = None) -> list[str]:
    """What stops ``sub``'s units from counting beside ``house``'s: provenance, versions, splits, test records,
    contamination, code. The first of them is what a refusal names."""
    from bench.config import dataset_configs
    from bench.encoders.cards import corpora_containing

    problems: list[str] = []
    house_units = house.manifest["units"]
    house_methods = {u["tags"].get("method") for u in house_units}
    house_keys = {(u["suite"], u["key"]) for u in house_units}
    test_sets: dict[tuple, dict] = {}
    for u in house_units:
        test_sets.setdefault(tuple(u["tags"].get(k, "") for k in _TEST_SET), u)
    house_ids = functools.lru_cache(maxsize=None)(lambda key: _test_ids(house, test_sets[key]))  # one read per test set
    card = _submission(sub.root.parent).get("cards", {})
    identities = {name: str(cfg.data.get("identity", name)) for name, cfg in dataset_configs().items()}
    for entry in sub.manifest["units"]:
        tags = entry["tags"]
        name = f"{entry['suite']} unit {entry['key']} ({tags.get('method')}/{tags.get('dataset')}/{tags.get('task')})"
        missing = [k for k in REQUIRED_TAGS if not tags.get(k)]
        if missing:
            problems.append(f"{name}: provenance incomplete, no {', '.join(missing)}")
            continue
        if methods is not None and tags["method"] not in methods:
            problems.append(f"{name}: method {tags['method']} is not one the submission names")
        if tags["method"] in house_methods:
            problems.append(f"{name}: {tags['method']} is already a method of the publication (fix: register your encoder "
                            f"under a name of its own)")
        if tags.get("submitted") == "yes" or (entry["suite"], entry["key"]) in house_keys:
            problems.append(f"{name}: already on the leaderboard")
        if tags["trust_checkpoint_code"] == "yes":
            problems.append(f"{name}: its checkpoint was read with --trust-checkpoint-code (fix: a file the safe loader reads)")
        if tags["code_version"].endswith(".dirty"):
            problems.append(f"{name}: run from a dirty tree ({tags['code_version']}) (fix: commit, then run again)")
        test_set = tuple(tags.get(k, "") for k in _TEST_SET)
        house_entry = test_sets.get(test_set)
        if house_entry is None:
            where = ", ".join(f"{k}={tags.get(k, '')}" for k in _TEST_SET)
            problems.append(f"{name}: the publication has no such test set ({where})")
            continue
        if tags["task_version"] != _house_task_version(house_entry["tags"]):
            problems.append(f"{name}: task version {tags['task_version']}, the publication's is "
                            f"{_house_task_version(house_entry['tags'])}")
        if tags["split_hash"] != house_entry["tags"].get("split_hash"):
            problems.append(f"{name}: split {tags['split_hash']}, the publication's is {house_entry['tags'].get('split_hash')} "
                            f"(fix: run with the published splits: `bench splits export`)")
        ours, theirs = _test_ids(sub, entry), house_ids(test_set)
        if ours is not None and theirs is not None and ours != theirs:
            problems.append(f"{name}: its {len(ours)} test records are not the publication's {len(theirs)} "
                            f"({len(ours - theirs)} foreign, {len(theirs - ours)} missing)")
        corpora = tuple((card.get(tags["method"]) or {}).get("corpora") or ())
        inside = corpora_containing(identities.get(tags["dataset"], tags["dataset"]), corpora)
        if tags["contaminated"] == "yes" or inside:
            problems.append(f"{name}: the dataset is inside the training corpora of the checkpoint ({', '.join(inside) or 'tagged'})")
    return problems


def _refuse(problems: list[str], where: str = "") -> None:
    """Raise the refusal of a submission: its first problem, and how many more there are."""
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise SubmissionError(f"{where}refused: {problems[0]}{more}")


def _submission(folder: Path) -> dict:
    path = Path(folder) / SUBMISSION
    if not path.is_file():
        raise SubmissionError(f"{path}: not a submission (fix: `bench submit --methods M --out DIR` writes one)")
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SubmissionError(f"{path}: not readable JSON ({exc})") from None


def pack(store, methods: list[str], out: Path, results: Path, command: str, submitter: str,
         echo: Callable[[str], None] = lambda _: None) -> Path:
    """Write the submission of ``methods``' runs in ``store`` to ``out`` (refused, naming the first problem, when a run
    cannot count beside the publication in ``results``); nothing is left at ``out`` when it is refused."""
    from bench import code_version
    from bench.encoders.cards import declared_corpora, load_card
    from bench.publish.publication import PublishSettings
    from bench.suites.base import suite_names

    house = _house(results)
    out = Path(out)
    if out.exists():
        raise SubmissionError(f"{out}: exists (fix: name a new folder with --out)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=".submission-", dir=out.parent))  # beside it: renamed into place at the end
    try:
        export_bundle(_MethodsOnly(store, methods), staged, suite_names(), PublishSettings(readme=""))
        sub = BundleStore.open(staged)
        if not sub.manifest["units"]:
            raise SubmissionError(f"{store.uri}: no results of {', '.join(methods)} (fix: `bench run --methods "
                                  f"{','.join(methods)} ...` first)")
        cards = {}
        for m in methods:
            presets = sorted({u["tags"].get("preset", "") for u in sub.manifest["units"] if u["tags"].get("method") == m})
            card = load_card(m)
            cards[m] = {**card, "corpora": sorted({c for p in presets for c in declared_corpora(m, p)}) if card.get("presets") else []}
        (staged / SUBMISSION).write_text(json.dumps({
            "methods": methods, "submitter": submitter, "command": command, "packed": date.today().isoformat(),
            "packed_with": code_version(), "code_versions": sub.manifest.get("code_versions", []),
            "task_versions": sorted({u["tags"].get("task_version", "") for u in sub.manifest["units"]}),
            "checkpoints": sorted({f"{u['tags'].get('method')}: {u['tags'].get('checkpoint_hash')}" for u in sub.manifest["units"]}),
            "cards": cards}, indent=1, sort_keys=True, default=str) + "\n")
        _refuse(problems_against(house, sub, methods))
        staged.rename(out)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    echo(f"submission: {len(sub.manifest['units'])} units, {len(sub.manifest['aggregates'])} aggregates of {', '.join(methods)} -> {out}")
    return out


def check(submission: Path, results: Path, workers: int | None = None) -> tuple[BundleStore, BundleStore, dict]:
    """The submission verified on its own and against the publication (raises naming the first problem)."""
    submission = Path(submission)
    meta = _submission(submission)
    try:
        sub = BundleStore.open(submission)
    except Exception as exc:
        raise SubmissionError(f"{submission}: refused: {exc}") from None
    _refuse(verify_numbers(submission, workers=workers), f"{submission}: ")
    house = _house(results)
    _refuse(problems_against(house, sub, meta.get("methods")), f"{submission}: ")
    return house, sub, meta


def merged_bundle(house: BundleStore, sub: BundleStore, meta: dict, folder: Path) -> None:
    """``folder``/bundle: the publication's bundle with the submission's units and aggregates added, tagged."""
    text = json.dumps(meta, indent=1, sort_keys=True, default=str) + "\n"
    record = f"{SUBMISSIONS}/{hashlib.sha256(text.encode()).hexdigest()[:12]}.json"  # the page links a row to it
    mark = {"submitted": "yes", "submitter": str(meta.get("submitter", "")), "submission_command": str(meta.get("command", "")),
            "submission": f"{BUNDLE}/{record}"}
    manifest = json.loads(json.dumps(house.manifest))
    manifest["units"] += [{**u, "tags": {**u["tags"], **mark}} for u in sub.manifest["units"]]
    manifest["aggregates"] += [{**a, "tags": {**a["tags"], **mark}} for a in sub.manifest["aggregates"]]
    (folder / BUNDLE / SUBMISSIONS).mkdir(parents=True)
    (folder / BUNDLE / record).write_text(text)
    write_combined(house, sub, manifest, folder)
