"""The suite plugin interface: a suite declares its units, computes them, and folds a group into an aggregate.

The one generic executor (``bench.run.runner``) does everything else: unit keys, claims, skip/resume,
logging, aggregation records and provenance. A suite never builds a key by hand: it hands over a
``material`` mapping holding everything that determines the unit's number, and the key is its hash
together with the suite's name and declared ``version`` (bump it when the suite's semantics change).

Third parties register a suite without editing bench, through the ``bench.suites`` entry-point group::

    [project.entry-points."bench.suites"]
    my_suite = "my_pkg.suites:MySuite"

Modelled on lm-evaluation-harness (tasks as registered objects, one evaluation path) and MTEB (one
runner, tasks declare themselves).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Mapping, Protocol, Sequence

import numpy as np

from bench.hashing import content_hash, frame_hash, ids_hash  # noqa: F401  (part of the plugin API)
from bench.registry import Registry

if TYPE_CHECKING:
    import pandas as pd
    from omegaconf import DictConfig

# the provenance tags every unit row carries (RunContext.provenance) and every aggregate carries over from its units
UNIT_PROVENANCE = ("checkpoint_hash", "checkpoint", "checkpoint_sha256", "split_hash", "code_version", "pool", "preset",
                   "pretrain_budget", "input_contract", "input", "corpora", "contaminated", "pretrain_text", "trust_checkpoint_code",
                   "task_version")
# provenance tags added after units were published: left out of an aggregate whose units predate them
LATER_PROVENANCE = ("task_version",)


class RunContext(Protocol):
    """What a suite computes through: the executor (``bench.run.runner.Runner``) implements it, so suites depend on
    this small protocol, never on the executor."""

    base: "DictConfig"
    store: Any
    progress: bool

    def dataset_cfg(self, dataset: str) -> "DictConfig": ...

    def reader(self, cfg: "DictConfig") -> Any: ...

    def scorers(self, cfg: "DictConfig", method: str, protocol: str, untrained: bool = False, seed: int = 0) -> list: ...

    def prepared(self, cfg: "DictConfig", handle: Any, raw: bool = False) -> Any: ...

    def embedding_key(self, cfg: "DictConfig", handle: Any) -> str: ...

    def embeddings(self, cfg: "DictConfig", handle: Any) -> tuple[Any, Any]: ...

    def token_features(self, cfg: "DictConfig", handle: Any) -> Any: ...

    def provenance(self, cfg: "DictConfig", handle: Any, index: Any) -> dict[str, Any]: ...

    def unit_results(self, suite: str, keys: Sequence[str], **tags: str) -> list["UnitResult"]: ...

    def execute(self, suite: "Suite", request: "Request") -> Any: ...


@dataclass
class Request:
    """What `bench run` was asked for; ``None`` = the config's default."""

    methods: list[str]
    datasets: list[str] | None = None
    tasks: list[str] | None = None
    protocols: list[str] | None = None
    fractions: list[float] | None = None
    seeds: list[int] | None = None
    directions: list[str] | None = None
    modes: list[str] | None = None


@dataclass
class Unit:
    """One unit of work. ``material`` is everything that determines its number (hashed into the key);
    ``tags`` are what MLflow shows (suite, method, dataset, task, protocol, fold, fraction, seed and the
    provenance); ``payload`` is the suite's own (a split, a perturbation, ...), never logged."""

    tags: dict[str, Any]
    material: dict[str, Any]
    payload: Any = None
    key: str = ""


@dataclass
class UnitResult:
    metrics: dict[str, float]
    params: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] | None = None
    files: dict[str, str] | None = None
    tags: dict[str, Any] = field(default_factory=dict)


@dataclass
class Group:
    """The units one aggregate pools. ``identity`` names the table cell (suite, method, dataset, task,
    protocol, fraction, seed); ``state`` is the suite's shared context for computing them."""

    identity: dict[str, Any]
    units: list[Unit] = field(default_factory=list)
    state: Any = None
    applicable: bool = True
    #: why a group does not apply (said on screen): e.g. no text tower for zero-shot, nothing to train for fine-tuning
    why_not: str = "no text tower"

    @property
    def cell(self) -> str:
        """The table cell whatever the seed: the groups a ``seed="all"`` aggregate pools share it."""
        return content_hash({k: str(v) for k, v in self.identity.items() if k != "seed"}, 16)

    @property
    def agg_key(self) -> str:
        """The table cell's name; a mode other than the linear probe and a validation part other than the full fold are
        appended (the keys of the defaults stay as they were)."""
        key = "|".join(str(self.identity[k]) for k in ("suite", "method", "dataset", "task", "protocol", "fraction", "seed"))
        mode = self.identity.get("mode", "linear")
        key = key if mode == "linear" else f"{key}|{mode}"
        val = self.identity.get("val_fraction", "full")
        key = key if val == "full" else f"{key}|val={val}"
        leads = str(self.identity.get("leads", "12"))
        return key if leads == "12" else f"{key}|leads={leads}"


@dataclass
class Aggregate:
    metrics: dict[str, float]
    tags: dict[str, Any] = field(default_factory=dict)


class Suite:
    """Base class of every suite plugin."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    #: units log per-record predictions (``predictions.npz``) that a skipped unit reloads
    stores_predictions: ClassVar[bool] = True
    #: the leaderboard lists this suite's aggregates (a suite with its own metric layout says False)
    on_leaderboard: ClassVar[bool] = True
    #: the metric its leaderboard rows are read by: "macro AUROC" (higher is better) or "MAE" (lower is better, in the target's
    #: unit; a suite of continuous targets)
    board_metric: ClassVar[str] = "macro AUROC"
    #: (aggregate tag, unit tag) when the order of a group's units shapes its aggregate (a table's columns): the
    #: aggregate tag lists the units' tag values in that order, so `bench verify` can pool them the same way
    unit_order: ClassVar[tuple[str, str] | None] = None
    #: the suite's ``aggregate`` also folds a cell's seeds together (units tagged with their seed): when a run covers
    #: two or more seeds the executor writes that cell once more with ``seed="all"``
    pools_seeds: ClassVar[bool] = False
    #: the suite reads ``--modes`` (evaluation modes beside the linear probe); others are refused one
    takes_modes: ClassVar[bool] = False
    #: the suite names an evaluation lead set in its cells (``leads``); others are refused one (``preprocess.lead_set``)
    takes_lead_sets: ClassVar[bool] = False

    def groups(self, ctx: "RunContext", request: Request) -> Iterable[Group]:
        """The groups (with their units) of ``request``; a generator, so pretraining happens group by group."""
        raise NotImplementedError

    def compute(self, ctx: "RunContext", group: Group, units: list[Unit]) -> list[UnitResult]:
        """Compute ``units`` (the group's units not yet in the store), one result each, in order."""
        raise NotImplementedError

    def aggregate(self, ctx: "RunContext", group: Group, results: list[tuple[Unit, UnitResult]]) -> Aggregate:
        raise NotImplementedError

    def job_values(self, ctx: "RunContext", request: Request) -> list[dict[str, list]]:
        """The launcher's multiruns: one mapping ``axis -> values`` per sweep (default: method x dataset x seed)."""
        return [{"method": request.methods, "dataset": [d], "seed": request.seeds or list(ctx.base.run.seeds)}
                for d in request.datasets or [ctx.base.data.name]]

    def table(self, aggregates: "pd.DataFrame", fmt: str = "md", methods: Sequence[str] | None = None) -> str:
        """`bench table <suite>` for suites outside the paper's layouts (bench/publish/tables.py has those)."""
        raise NotImplementedError(f"suite '{self.name}' has no table")


SUITES: Registry[type[Suite]] = Registry("suite", base=Suite, entry_point_group="bench.suites")
for _name, _where in {"linear": "bench.suites.linear:LinearSuite", "zero_shot": "bench.suites.zero_shot:ZeroShotSuite",
                      "transfer": "bench.suites.transfer:TransferSuite", "textgen": "bench.suites.textgen:TextgenSuite",
                      "subgroup": "bench.suites.subgroup:SubgroupSuite",
                      "robustness": "bench.suites.robustness:RobustnessSuite",
                      "report_text": "bench.suites.report_text:ReportTextSuite",
                      "regression": "bench.suites.regression:RegressionSuite"}.items():
    SUITES.register(_name, _where)


def render_block(cells: "pd.DataFrame", title: str, fmt: str) -> str:
    """One titled table (methods as rows) in md, latex or csv: every table, a suite plugin's own (``Suite.table``)
    included, is rendered here."""
    from tabulate import tabulate

    table = cells.fillna("").reset_index().rename(columns={"index": "method"})
    if fmt == "csv":
        return table.to_csv(index=False)
    rendered = tabulate(table, headers="keys", tablefmt="github" if fmt == "md" else "latex_raw", showindex=False,
                        disable_numparse=True)  # cells are written as they should read ("+1.20", "≤ 0.002")
    return (f"### {title}\n\n" if fmt == "md" else f"% {title}\n") + rendered


def get_suite(name: str) -> Suite:
    from bench.config import ConfigError
    from bench.registry import UnknownNameError

    try:
        return SUITES.get(name)()
    except UnknownNameError as exc:
        raise ConfigError(str(exc)) from exc


def suite_names() -> list[str]:
    return SUITES.names()


def unit_key(suite: Suite, material: Mapping[str, Any]) -> str:
    """The content address of a unit: suite, its version and the material."""
    return content_hash({"suite": suite.name, "version": suite.version, **material}, 24)
