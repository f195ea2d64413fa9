"""Linear probing: one linear layer on frozen embeddings, many heads trained at once.

Defaults follow the MERIT paper (AdamW, lr 1e-3, batch 64, 100 epochs, BCE). The heads of one
(method, dataset, task, protocol) group -- all folds and label fractions -- train together as a
batched linear layer: every head draws its own shuffled minibatches from its own training records,
and a head whose epoch has no batch left takes no optimiser step, so each head follows exactly the
trajectory it would follow alone (tested). The epoch with the lowest validation loss is kept.
Features are standardised with each head's training mean/std (``standardize``).
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bench.suites.base import Aggregate, Group, Request, Suite, Unit, UnitResult, content_hash, frame_hash, ids_hash

if TYPE_CHECKING:
    from bench.suites.base import RunContext


@dataclass
class HeadConfig:
    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    standardize: bool = True
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    #: the validation part of a label fraction: "full" (the whole fold; the paper's and MERL's protocol) or "match" (the
    #: same fraction as training). A split setting, not the head's: in a unit's key only when not "full"
    val_fraction: str = "full"

    @classmethod
    def from_mapping(cls, cfg) -> "HeadConfig":
        from bench.config import ConfigError, dataclass_from_mapping

        return dataclass_from_mapping(cls, cfg, "linear config", lambda w, m: ConfigError(f"{w}: {m}"), betas=tuple)

    def as_params(self) -> dict:
        return {f"head.{k}": v for k, v in asdict(self).items() if k != "val_fraction"}


@dataclass
class TrainedHeads:
    weight: torch.Tensor  # [H, D, C]
    bias: torch.Tensor  # [H, C]
    mean: torch.Tensor  # [H, D]
    std: torch.Tensor  # [H, D]
    best_epoch: list[int]
    val_loss: list[list[float]] = field(default_factory=list)  # per head, per epoch: what chose best_epoch

    def predict(self, x: np.ndarray, head: int) -> np.ndarray:
        xt = torch.as_tensor(x, dtype=torch.float32)
        z = (xt - self.mean[head]) / self.std[head]
        return torch.sigmoid(z @ self.weight[head] + self.bias[head]).numpy()


def train_heads(x: np.ndarray, y: np.ndarray, heads: list[tuple[np.ndarray, np.ndarray]], cfg: HeadConfig,
                seed: int = 0, head_seeds: list[int] | None = None) -> TrainedHeads:
    """Train one linear head per (train rows, val rows) pair on features ``x`` [N, D], labels ``y`` [N, C].

    Head h's initialisation and shuffles come from its own seed ``(seed, head_seeds[h])``, so its result
    does not depend on which other heads train beside it.
    """
    X = torch.tensor(np.asarray(x, dtype=np.float32))
    Y = torch.tensor(np.asarray(y, dtype=np.float32))
    H, D, C = len(heads), X.shape[1], Y.shape[1]
    head_seeds = list(range(H)) if head_seeds is None else list(head_seeds)
    mean, std = torch.zeros(H, D), torch.ones(H, D)
    if cfg.standardize:
        for h, (tr, _) in enumerate(heads):
            mean[h] = X[tr].mean(0)
            std[h] = X[tr].std(0, unbiased=False).clamp_min(1e-6)
    bound = 1 / math.sqrt(D)  # nn.Linear's default init
    W, b = torch.empty(H, D, C), torch.empty(H, C)
    rngs = []
    for h in range(H):
        g = torch.Generator().manual_seed(seed * 1_000_003 + head_seeds[h])
        W[h] = (torch.rand(D, C, generator=g) * 2 - 1) * bound
        b[h] = (torch.rand(C, generator=g) * 2 - 1) * bound
        rngs.append(np.random.default_rng([seed, head_seeds[h]]))
    m_w, v_w, m_b, v_b = torch.zeros_like(W), torch.zeros_like(W), torch.zeros_like(b), torch.zeros_like(b)
    t = torch.zeros(H)
    b1, b2 = cfg.betas
    best_loss = torch.full((H,), float("inf"))
    best_W, best_b, best_epoch = W.clone(), b.clone(), [0] * H
    curves: list[list[float]] = [[] for _ in range(H)]
    n_train = np.array([len(tr) for tr, _ in heads])
    bs = cfg.batch_size
    steps = int(math.ceil(n_train.max() / bs))
    val_rows = [torch.as_tensor(va) for _, va in heads]
    for epoch in range(cfg.epochs):
        perms = np.zeros((H, steps * bs), dtype=np.int64)
        valid = np.zeros((H, steps * bs), dtype=bool)
        for h, (tr, _) in enumerate(heads):
            perms[h, :len(tr)] = rngs[h].permutation(tr)
            valid[h, :len(tr)] = True
        perms_t, valid_t = torch.as_tensor(perms), torch.as_tensor(valid)
        for s in range(steps):
            a = torch.as_tensor(np.flatnonzero(n_train > s * bs))
            rows = perms_t[a, s * bs:(s + 1) * bs]  # [A, bs]
            mask = valid_t[a, s * bs:(s + 1) * bs].float()
            xb = (X[rows] - mean[a, None]) / std[a, None]  # [A, bs, D]
            p = torch.sigmoid(torch.bmm(xb, W[a]) + b[a, None])
            g = (p - Y[rows]) * mask[..., None] / (mask.sum(1)[:, None, None] * C)  # d(mean BCE)/d(logits)
            gw, gb = torch.bmm(xb.transpose(1, 2), g), g.sum(1)
            t[a] += 1
            W[a] *= 1 - cfg.lr * cfg.weight_decay
            b[a] *= 1 - cfg.lr * cfg.weight_decay
            for param, grad, m, v in ((W, gw, m_w, v_w), (b, gb, m_b, v_b)):
                m[a] = b1 * m[a] + (1 - b1) * grad
                v[a] = b2 * v[a] + (1 - b2) * grad ** 2
                shape = (-1,) + (1,) * (grad.ndim - 1)
                mhat = m[a] / (1 - b1 ** t[a]).view(shape)
                vhat = v[a] / (1 - b2 ** t[a]).view(shape)
                param[a] -= cfg.lr * mhat / (vhat.sqrt() + cfg.eps)
        for h in range(H):
            z = (X[val_rows[h]] - mean[h]) / std[h]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ W[h] + b[h], Y[val_rows[h]]).item()
            curves[h].append(loss)
            if loss < best_loss[h]:
                best_loss[h], best_W[h], best_b[h], best_epoch[h] = loss, W[h], b[h], epoch + 1
    return TrainedHeads(best_W, best_b, mean, std, best_epoch, curves)


def head_seed(fold: str, fraction: float) -> int:
    """A head's own seed: the same for a unit whichever other heads train beside it."""
    return int(hashlib.sha256(f"{fold}|{fraction}".encode()).hexdigest()[:8], 16)


def split_material(split) -> dict[str, str]:
    """The record ids of a unit's train / val / test parts, hashed: which records a number used."""
    return {"train": ids_hash(split.train), "val": ids_hash(split.val), "test": ids_hash(split.test)}


@dataclass
class LinearState:
    cfg: Any
    labels: Any
    scorers: list
    head: HeadConfig
    seed: int
    fraction: float
    mode: Any = None  # a ModeConfig for the attentive, finetune and scratch modes; None for the linear probe


@dataclass
class FittedHead:
    """One trained head with the per-class thresholds chosen on its validation records."""

    trained: TrainedHeads
    index: int
    thresholds: np.ndarray
    train_positives: np.ndarray
    validation: dict[str, np.ndarray] = field(default_factory=dict)  # val_record_ids, val_y_true, val_y_score

    def arrays(self, x: np.ndarray, y: np.ndarray, record_ids) -> dict[str, np.ndarray]:
        """Test arrays: scores, decisions at the validation thresholds, and what they came from (the validation
        predictions the thresholds were chosen on, and the validation loss of each epoch that chose the epoch)."""
        score = self.trained.predict(x, self.index).astype(np.float32)
        curve = self.trained.val_loss[self.index] if self.trained.val_loss else []
        return {"record_ids": np.array(record_ids), "y_true": np.asarray(y).astype(np.int8), "y_score": score,
                "y_pred": (score >= self.thresholds).astype(np.int8), "thresholds": self.thresholds.astype(np.float32),
                "train_positives": self.train_positives.astype(np.int32), **self.validation,
                **({"selection_loss": np.asarray(curve, np.float32)} if curve else {})}

    @property
    def best_epoch(self) -> int:
        return int(self.trained.best_epoch[self.index])


def fit_heads(emb, y_all: np.ndarray, splits: list, head: HeadConfig, seed: int, fraction: float) -> list[FittedHead]:
    """Train one head per split on ``emb`` and choose each class's threshold on the split's validation records."""
    from bench.suites.metrics import val_thresholds

    rows = [(emb.rows(sp.train), emb.rows(sp.val)) for sp in splits]
    trained = train_heads(emb.emb, y_all, rows, head, seed=seed, head_seeds=[head_seed(sp.fold, fraction) for sp in splits])
    fitted = []
    for h, ((tr, va), sp) in enumerate(zip(rows, splits)):
        val_score = trained.predict(emb.emb[va], h)
        fitted.append(FittedHead(trained, h, val_thresholds(y_all[va], val_score), y_all[tr].sum(0),
                                 validation_arrays(sp.val, y_all[va], val_score)))
    return fitted


def validation_arrays(record_ids, y: np.ndarray, score: np.ndarray) -> dict[str, np.ndarray]:
    """The validation predictions a unit's thresholds were chosen on, kept with it (the bundle stores them, so
    anyone can choose the thresholds again)."""
    return {"val_record_ids": np.array(list(record_ids)), "val_y_true": np.asarray(y).astype(np.int8),
            "val_y_score": np.asarray(score)}


def _unit_arrays(score_test: np.ndarray, score_val: np.ndarray, y: np.ndarray, rows: dict[str, np.ndarray],
                 test_ids, val_ids) -> dict[str, np.ndarray]:
    """A unit's test arrays as the linear probe writes them: scores, decisions at per-class thresholds chosen on the
    validation records, and the training positives per class."""
    from bench.suites.metrics import val_thresholds

    thresholds = val_thresholds(y[rows["val"]], score_val)
    return {"record_ids": np.array(test_ids), "y_true": y[rows["test"]].astype(np.int8), "y_score": score_test.astype(np.float32),
            "y_pred": (score_test >= thresholds).astype(np.int8), "thresholds": np.asarray(thresholds, np.float32),
            "train_positives": y[rows["train"]].sum(0).astype(np.int32),
            **validation_arrays(val_ids, y[rows["val"]], score_val)}


def compute_mode_units(ctx, st: LinearState, units: list) -> list:
    """The units of one group in the attentive, finetune or scratch mode: each trains its own head (and encoder) on
    its split; the frozen tokens (attentive) or the contract's views (finetune, scratch) are computed once per group."""
    from pathlib import Path

    from bench.suites.classification import unit_result
    from bench.suites.modes import fit_and_predict, mode_inputs

    cfg = st.mode
    classes = list(st.labels.columns)
    done = {}
    for k in sorted({u.payload[0] for u in units}):
        handle = st.scorers[k].handle
        mine = [u for u in units if u.payload[0] == k]
        needed = sorted({r for u in mine for part in (u.payload[1].train, u.payload[1].val, u.payload[1].test) for r in part})
        ids, data, present = mode_inputs(ctx, st.cfg, handle, cfg.mode, needed)
        where = {r: i for i, r in enumerate(ids)}
        y = st.labels.reindex(ids, fill_value=0).to_numpy()
        for u in mine:
            split = u.payload[1]
            rows = {part: np.array([where[r] for r in getattr(split, part)], dtype=np.int64) for part in ("train", "val", "test")}
            seed = st.seed * 1_000_003 + head_seed(split.fold, st.fraction) % 1_000_003
            val_score, test_score, info = fit_and_predict(cfg, handle.encoder, data, y, rows, seed,
                                                          Path(st.cfg.paths.cache) / "modes" / u.key, present, bool(ctx.progress))
            arrays = _unit_arrays(test_score, val_score, y, rows, split.test, split.val)
            done[u.key] = unit_result(arrays, classes, {**info, "n_train": len(split.train), "n_val": len(split.val)},
                                      {**cfg.as_params(), "fraction_requested": st.fraction, "n_train_actual": len(split.train),
                                       "decision": "per-class threshold maximising validation F1"})
    return [done[u.key] for u in units]


class LinearSuite(Suite):
    name = "linear"
    version = "2"  # 2: decisions at validation-chosen thresholds; fixed-class-set bootstrap
    pools_seeds = True
    takes_modes = True
    takes_lead_sets = True
    description = ("frozen linear probe (fixed split or 10-fold cv, label fractions; MERIT Table 1), and the attentive, "
                   "finetune and scratch modes (--modes)")

    def groups(self, ctx: "RunContext", request: Request):
        from omegaconf import OmegaConf

        from bench.suites.modes import ModeConfig

        for dataset in request.datasets or [ctx.base.data.name]:
            cfg = ctx.dataset_cfg(dataset)
            head = HeadConfig.from_mapping(OmegaConf.to_container(cfg.linear))
            modes = {m: None if m == "linear" else ModeConfig.from_config(cfg, m) for m in request.modes or list(cfg.run.modes)}
            index = ctx.reader(cfg).index
            cells = list(itertools.product(request.tasks or list(cfg.data.default_tasks),
                                           request.fractions or [float(f) for f in cfg.run.fractions]))
            seeds = request.seeds or [int(s) for s in cfg.run.seeds]
            for method, protocol, mode, seed in itertools.product(request.methods, request.protocols or list(cfg.run.protocols),
                                                                  modes, seeds):
                scorers = ctx.scorers(cfg, method, protocol, untrained=mode == "scratch", seed=seed)
                inputs = [(ctx.embedding_key(cfg, sc.handle), ctx.provenance(cfg, sc.handle, index)) for sc in scorers]
                for task, fraction in cells:
                    yield self._group(cfg, index, head, scorers, inputs, method, protocol, task, fraction, seed, modes[mode])

    @staticmethod
    def _group(cfg, index, head: HeadConfig, scorers: list, inputs: list[tuple[str, dict]], method: str, protocol: str, task: str,
               fraction: float, seed: int, mode=None) -> Group:
        """One cell's units, one per split; ``inputs`` holds each scorer's embedding key and provenance. The linear
        probe's material is as it always was; another mode replaces the head's settings with its own."""
        from bench.data.leads import FULL_SET, lead_set_name
        from bench.data.splits import versioned_task
        from bench.suites.modes import mode_material, trainable
        from bench.suites.protocols import protocol_splits

        labels = index.task(task).labels
        version = versioned_task(index, cfg.data.name, task)
        identity = {"method": method, "dataset": cfg.data.name, "task": task, "protocol": protocol, "fraction": fraction,
                    "seed": seed, "mode": mode.mode if mode else "linear"}
        matched = {"val_fraction": head.val_fraction} if head.val_fraction != "full" else {}
        identity.update(matched)
        leads = lead_set_name(cfg.preprocess.get("lead_set", FULL_SET))
        if leads != FULL_SET:  # the lead set is in the embedding key already; the cell names it
            identity["leads"] = leads
        group = Group(identity, state=LinearState(cfg, labels, scorers, head, seed, fraction, mode))
        if mode is not None and mode.mode in ("finetune", "scratch") and not trainable(scorers[0].handle.encoder):
            group.applicable, group.why_not = False, f"nothing to train in {mode.mode}"
            return group
        trained = mode_material(mode) if mode else {"head": head.as_params()}
        shared = {"labels": frame_hash(labels), "protocol": protocol, "fraction": fraction, "seed": seed, **trained, **matched}
        head_hash = content_hash(mode.as_params() if mode else head.as_params(), 12)
        for split in protocol_splits(index.records, labels, protocol, fraction, seed, head.val_fraction):
            k = next(i for i, sc in enumerate(scorers) if sc.folds is None or split.fold in sc.folds)
            scorers[k].handle.check_leakage(cfg.data.name, cfg.data.get("identity", cfg.data.name), split.test)
            embedding, provenance = inputs[k]
            material = {**shared, "embedding": embedding, **split_material(split), "fold": split.fold,
                        "head_seed": head_seed(split.fold, fraction)}
            tags = {"fold": split.fold, **provenance, "head_hash": head_hash, "task_version": version}
            group.units.append(Unit(tags, material, (k, split)))
        return group

    def compute(self, ctx: "RunContext", group: Group, units: list[Unit]) -> list[UnitResult]:
        from bench.suites.classification import unit_result

        st: LinearState = group.state
        if st.mode is not None:
            return compute_mode_units(ctx, st, units)
        classes = list(st.labels.columns)
        by_scorer: dict[int, list[tuple[Any, Unit]]] = {}
        for u in units:
            by_scorer.setdefault(u.payload[0], []).append((u.payload[1], u))
        done: dict[str, UnitResult] = {}
        for k, items in by_scorer.items():
            emb, _ = ctx.embeddings(st.cfg, st.scorers[k].handle)
            y_all = st.labels.reindex(emb.record_ids, fill_value=0).to_numpy()
            for (sp, u), fitted in zip(items, fit_heads(emb, y_all, [sp for sp, _ in items], st.head, st.seed, st.fraction)):
                rows = emb.rows(sp.test)
                arrays = fitted.arrays(emb.emb[rows], y_all[rows], sp.test)
                done[u.key] = unit_result(arrays, classes, {"best_epoch": fitted.best_epoch, "n_train": len(sp.train),
                                                            "n_val": len(sp.val)},
                                          {**st.head.as_params(), "fraction_requested": st.fraction, "n_train_actual": len(sp.train),
                                           "decision": "per-class threshold maximising validation F1"})
        return [done[u.key] for u in units]

    def aggregate(self, ctx: "RunContext", group: Group, results) -> Aggregate:
        from bench.suites.classification import classification_aggregate

        results = sorted(results, key=lambda r: (len(str(r[0].tags["fold"])), str(r[0].tags["fold"])))
        agg = classification_aggregate(ctx, group, results, list(group.state.labels.columns) if group.state else [])
        agg.tags["head_hash"] = ",".join(sorted({str(u.tags.get("head_hash", "")) for u, _ in results}))
        return agg

    def job_values(self, ctx: "RunContext", request: Request) -> list[dict[str, list]]:
        sweeps = []
        for dataset in request.datasets or [ctx.base.data.name]:
            cfg = ctx.dataset_cfg(dataset)
            for protocol in request.protocols or list(cfg.run.protocols):
                sweeps.append({"method": request.methods, "dataset": [dataset],
                               "task": request.tasks or list(cfg.data.default_tasks), "protocol": [protocol],
                               "fraction": request.fractions or list(cfg.run.fractions), "seed": request.seeds or list(cfg.run.seeds),
                               "fold": ["test"] if protocol == "fixed" else list(range(1, 11)),
                               "mode": request.modes or list(cfg.run.modes)})
        return sweeps
