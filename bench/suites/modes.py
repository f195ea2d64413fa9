"""Evaluation modes beside the linear probe: what a unit trains on top of (or instead of) the frozen encoder.

- ``linear``: the frozen encoder's cached embeddings and a linear head (``bench.suites.linear``; unchanged keys);
- ``attentive``: the frozen encoder's token features [T, D] (cached once per record, float16) and a learnable-query
  attention-pooling head (V-JEPA's attentive probe: queries cross-attend the tokens, then an MLP block and a linear
  layer);
- ``finetune``: the whole encoder trained with a linear (or MLP) head on its pooled embedding, at discriminative
  learning rates (head at lr, the upper half of the encoder's layer groups at lr x 0.1, the lower half at lr x 0.01);
- ``scratch``: the same architecture from random initial weights trained end to end at one lr, the supervised
  control that says whether pretraining helped at all.

The protocol (``configs/protocols/modes.yaml``, the reality check's): Adam, lr 1e-3, weight decay 1e-3, batch 64, up
to ``epochs`` at a constant lr, the epoch with the best validation macro AUROC kept (early stopping on validation
only, never on test), predictions averaged over the input contract's views (non-overlapping windows of the model's
native length). Views are computed once per record and reused across epochs. Fine-tuning checkpoints every epoch in
the cache, so a killed unit resumes to the same weights on CPU; it uses CUDA with bf16 autocast when present.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

MODES = ("linear", "attentive", "finetune", "scratch")


@dataclass(frozen=True)
class ModeConfig:
    """One mode's training settings (every field is in the unit key)."""

    mode: str
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-3
    batch_size: int = 64
    epochs: int = 100
    select_on: str = "val_auroc"
    patience: int | None = None
    attn_heads: int = 16
    attn_queries: int = 1
    head: str = "linear"
    lr_factors: tuple[float, float, float] = (1.0, 0.1, 0.01)
    protocol: str = "reality_check"

    @classmethod
    def from_config(cls, cfg, mode: str) -> "ModeConfig":
        from omegaconf import OmegaConf

        from bench.config import ConfigError, dataclass_from_mapping

        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r} (fix: choose from {', '.join(MODES)})")
        modes = OmegaConf.to_container(cfg.modes, resolve=True)
        values = {**modes.get("common", {}), **(modes.get(mode) or {}), "mode": mode, "protocol": modes.get("protocol", "")}
        out = dataclass_from_mapping(cls, values, f"modes.{mode}", lambda w, m: ConfigError(f"{w}: {m}"), lr_factors=tuple)
        if out.head not in ("linear", "mlp") or out.optimizer not in ("adam", "adamw") or out.select_on != "val_auroc":
            raise ConfigError(f"modes.{mode}: head is linear or mlp, optimizer adam or adamw, select_on val_auroc "
                              f"(got {out.head}, {out.optimizer}, {out.select_on})")
        return out

    def as_params(self) -> dict[str, Any]:
        keep = {"attentive": ("attn_heads", "attn_queries"), "finetune": ("head", "lr_factors"), "scratch": ("head", "lr_factors")}
        common = ("optimizer", "lr", "weight_decay", "batch_size", "epochs", "select_on", "patience", "protocol")
        return {f"mode.{k}": v for k, v in asdict(self).items() if k in common + keep.get(self.mode, ())}


def macro_auroc(y: np.ndarray, p: np.ndarray) -> float:
    """Validation macro AUROC over the classes with positives and negatives (the selection criterion)."""
    from sklearn.metrics import roc_auc_score

    ok = [c for c in range(y.shape[1]) if 0 < y[:, c].sum() < len(y)]
    return float(np.mean([roc_auc_score(y[:, c], p[:, c]) for c in ok])) if ok else float("nan")


@dataclass(frozen=True)
class Objective:
    """What a head is trained for: ``labels`` (multi-label classes: BCE on logits, sigmoid outputs, the epoch with the
    best validation macro AUROC kept) or ``continuous`` (targets standardised on the training records: MSE, the raw
    output, the epoch with the lowest validation MSE kept)."""

    name: str

    def loss(self) -> nn.Module:
        return nn.BCEWithLogitsLoss() if self.name == "labels" else nn.MSELoss()

    def output(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.name == "labels" else logits

    def score(self, y: np.ndarray, p: np.ndarray) -> float:
        """The validation score the epoch loop maximises."""
        return macro_auroc(y, p) if self.name == "labels" else -float(np.mean((np.asarray(y) - np.asarray(p)) ** 2))

    @property
    def score_name(self) -> str:
        return "val_auroc" if self.name == "labels" else "val_neg_mse"


LABELS, CONTINUOUS = Objective("labels"), Objective("continuous")


def _optimizer(cfg: ModeConfig, groups: list[dict]) -> torch.optim.Optimizer:
    kind = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return kind(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ---- attentive probe --------------------------------------------------------------------------------------------
class AttentiveHead(nn.Module):
    """Learnable queries cross-attend the token features (pre-norm), an MLP block refines them, their mean goes
    through a linear layer: V-JEPA's attentive classifier on frozen features."""

    def __init__(self, dim: int, n_classes: int, heads: int = 16, queries: int = 1, objective: Objective = LABELS):
        super().__init__()
        self.objective = objective
        heads = max(h for h in range(1, heads + 1) if dim % h == 0)  # as many heads as divide the width
        self.heads = heads
        self.query = nn.Parameter(torch.randn(1, queries, dim) * 0.02)
        self.norm_kv, self.norm_q = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.out = nn.Linear(dim, n_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        kv = self.norm_kv(tokens)
        q = self.norm_q(self.query.expand(tokens.shape[0], -1, -1))
        h = self.attn(q, kv, kv, need_weights=False)[0] + q
        h = h + self.mlp(h)
        return self.out(h.mean(1))


def _epochs(cfg: ModeConfig, n: int, seed: int, step, evaluate, on_epoch=None, state: dict | None = None,
            progress: bool = False, score_name: str = "val_auroc") -> dict:
    """The shared epoch loop: shuffled batches of ``n`` samples drawn from (seed, epoch), ``step(batch rows)`` per batch,
    ``evaluate()`` -> validation macro AUROC after each epoch, ``on_epoch(state, improved)`` (keep the best weights,
    checkpoint); ``state`` resumes a loop. Stops after ``epochs``, or ``patience`` epochs without improvement.
    ``progress``: a bar of the epochs (nested under the run's own bars, gone when the unit is done) with the validation
    AUROC of the last epoch and the best one."""
    from tqdm.auto import tqdm

    state = state or {"epoch": 0, "best_score": -math.inf, "best_epoch": 0, "stale": 0}
    bar = tqdm(total=cfg.epochs, initial=state["epoch"], desc=f"{cfg.mode} epochs", unit="epoch", leave=False, position=1,
               disable=not progress)
    try:
        _loop(cfg, n, seed, step, evaluate, on_epoch, state, bar, score_name)
    finally:
        bar.close()
    return state


def _loop(cfg: ModeConfig, n: int, seed: int, step, evaluate, on_epoch, state: dict, bar, score_name: str) -> None:
    while state["epoch"] < cfg.epochs and (cfg.patience is None or state["stale"] < cfg.patience):
        epoch = state["epoch"]
        torch.manual_seed(seed * 1_000_003 + epoch)  # dropout and the like: the same draws when a unit resumes
        order = np.random.default_rng([seed, epoch]).permutation(n)
        for s in range(0, n, cfg.batch_size):
            step(order[s:s + cfg.batch_size])
        score = evaluate()
        state["epoch"] = epoch + 1
        improved = bool(np.isfinite(score) and score > state["best_score"])
        if improved:
            state.update(best_score=score, best_epoch=epoch + 1, stale=0)
        else:
            state["stale"] += 1
        if on_epoch is not None:
            on_epoch(state, improved)
        bar.update(1)
        bar.set_postfix({score_name: f"{score:.3f}", "best": f"{state['best_score']:.3f}@{state['best_epoch']}"})


def fit_attentive(tokens: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray, cfg: ModeConfig,
                  seed: int, progress: bool = False, objective: Objective = LABELS) -> tuple[AttentiveHead, dict[str, float]]:
    """An attentive head trained on the frozen tokens of rows ``train``, the epoch with the best validation score kept."""
    device = _device()
    torch.manual_seed(seed)
    head = AttentiveHead(tokens.shape[-1], y.shape[1], cfg.attn_heads, cfg.attn_queries, objective).to(device)
    opt = _optimizer(cfg, [{"params": head.parameters()}])
    loss_fn = objective.loss()
    best = copy.deepcopy(head.state_dict())

    def step(rows):
        head.train()
        xb = torch.as_tensor(np.asarray(tokens[train[rows]], dtype=np.float32), device=device)
        loss = loss_fn(head(xb), torch.as_tensor(y[train[rows]], dtype=torch.float32, device=device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def keep(state, improved):
        if improved:
            best.update(copy.deepcopy(head.state_dict()))

    state = _epochs(cfg, len(train), seed, step, lambda: objective.score(y[val], predict_attentive(head, tokens, val)), keep,
                    progress=progress, score_name=objective.score_name)
    head.load_state_dict(best)
    return head, {"best_epoch": state["best_epoch"], objective.score_name: state["best_score"], "epochs_run": state["epoch"],
                  "attn_heads": head.heads}


@torch.no_grad()
def predict_attentive(head: AttentiveHead, tokens: np.ndarray, rows: np.ndarray, batch: int = 256) -> np.ndarray:
    head.eval()
    device = next(head.parameters()).device
    out = [head.objective.output(head(torch.as_tensor(np.asarray(tokens[rows[s:s + batch]], dtype=np.float32), device=device))).cpu().numpy()
           for s in range(0, len(rows), batch)]
    return np.concatenate(out) if out else np.zeros((0, head.out.out_features), np.float32)


# ---- fine-tuning and training from scratch ------------------------------------------------------------------------
class Tuned(nn.Module):
    """An encoder and a head on its pooled embedding: the model fine-tuning (or training from scratch) trains."""

    def __init__(self, encoder: nn.Module, n_classes: int, head: str = "linear", objective: Objective = LABELS):
        super().__init__()
        self.encoder, self.objective = encoder, objective
        dim = encoder.spec.embed_dim
        self.head = nn.Linear(dim, n_classes) if head == "linear" else nn.Sequential(
            nn.Linear(dim, dim), nn.ReLU(), nn.BatchNorm1d(dim), nn.Linear(dim, n_classes))

    def forward(self, view: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder.encode_ecg(view))


def param_groups(model: Tuned, cfg: ModeConfig) -> list[dict]:
    """The head at lr x factor[0], the encoder's upper layer groups at lr x factor[1], its lower ones at lr x factor[2]
    (the encoder orders its groups from input to output, ``Encoder.layer_groups``)."""
    groups = [g for g in model.encoder.layer_groups() if g]
    half = (len(groups) + 1) // 2
    lower = [p for g in groups[:half] for p in g]
    upper = [p for g in groups[half:] for p in g]
    f_head, f_upper, f_lower = cfg.lr_factors
    return [{"params": list(model.head.parameters()), "lr": cfg.lr * f_head},
            {"params": upper, "lr": cfg.lr * f_upper}, {"params": lower, "lr": cfg.lr * f_lower}]


def fit_tuned(encoder: nn.Module, views: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray, cfg: ModeConfig,
              seed: int, state_dir: Path | None = None, amp: bool = True, progress: bool = False,
              present: np.ndarray | None = None, objective: Objective = LABELS) -> tuple[Tuned, dict[str, float]]:
    """Fine-tune ``encoder`` (a copy: the caller's stays as it was) with a head on records ``train`` of ``views``
    [N, V, leads, C] (each view a training sample, its record's labels; with ``present`` [N, V], only the views the
    contract counts), select the epoch on ``val`` (predictions averaged over views), checkpointing every epoch under
    ``state_dir`` so a killed unit resumes."""
    from bench.encoders.checkpoint import read_checkpoint
    from bench.files import atomic_path

    device = _device()
    torch.manual_seed(seed)
    model = Tuned(copy.deepcopy(encoder), y.shape[1], cfg.head, objective).to(device)
    opt = _optimizer(cfg, param_groups(model, cfg))
    loss_fn = objective.loss()
    use_amp = amp and device.type == "cuda"
    n_views = views.shape[1]
    samples = np.repeat(train, n_views), np.tile(np.arange(n_views), len(train))
    if present is not None:
        kept = present[samples]
        samples = samples[0][kept], samples[1][kept]
    state, best = None, copy.deepcopy(model.state_dict())
    last = state_dir / "last.pt" if state_dir is not None else None
    if last is not None and last.is_file():
        saved = read_checkpoint(last)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        best = saved["best_model"]
        state = saved["loop"]

    def step(rows):
        model.train()
        xb = torch.as_tensor(views[samples[0][rows], samples[1][rows]], device=device)
        yb = torch.as_tensor(y[samples[0][rows]], dtype=torch.float32, device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss = loss_fn(model(xb).float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def keep_and_save(loop, improved):
        nonlocal best
        if improved:
            best = copy.deepcopy(model.state_dict())
        if last is not None:
            last.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(last) as tmp:
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "best_model": best, "loop": dict(loop)}, tmp)

    loop = _epochs(cfg, len(samples[0]), seed, step, lambda: objective.score(y[val], predict_tuned(model, views, val, use_amp, present=present)),
                   keep_and_save, state, progress, objective.score_name)
    model.load_state_dict(best)
    return model, {"best_epoch": loop["best_epoch"], objective.score_name: loop["best_score"], "epochs_run": loop["epoch"]}


@torch.no_grad()
def predict_tuned(model: Tuned, views: np.ndarray, rows: np.ndarray, amp: bool = False, batch: int = 128,
                  present: np.ndarray | None = None) -> np.ndarray:
    """Probabilities (or, for continuous targets, outputs) per record, averaged over its views (non-overlapping windows
    of the model's native length; with ``present`` [N, V], over the views the contract counts)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for s in range(0, len(rows), batch):
        v = torch.as_tensor(views[rows[s:s + batch]], device=device)  # [b, V, leads, C]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(v.reshape(-1, *v.shape[2:])).float()
        probs = model.objective.output(logits).reshape(v.shape[0], v.shape[1], -1)
        if present is not None:  # the contract's windows past a record's end are not part of its prediction
            keep = torch.as_tensor(present[rows[s:s + batch]], device=device, dtype=probs.dtype)[:, :, None]
            out.append(((probs * keep).sum(1) / keep.sum(1)).cpu().numpy())
        else:
            out.append(probs.mean(1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def trainable(encoder: nn.Module) -> bool:
    """Whether fine-tuning or training from scratch applies (controls such as signal_stats have nothing to train)."""
    return any(True for g in encoder.layer_groups() for _ in g)


def views_of(prepared_signals: np.ndarray, contract, rows: np.ndarray, chunk: int = 256) -> np.ndarray:
    """The contract's views [N, V, leads, C] of the prepared rows, computed once (reused across epochs)."""
    return np.concatenate([contract.views(np.asarray(prepared_signals[rows[s:s + chunk]])) for s in range(0, len(rows), chunk)])


def mode_inputs(ctx, cfg, handle, mode: str, ids: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """What a mode trains on, for a suite (``ctx`` its RunContext, ``cfg`` the dataset's config): the frozen token
    features of every record (attentive), or the contract's views of ``ids`` (finetune, scratch); their record ids, and
    for a contract reading whole records the views it counts (``present``, else None)."""
    if mode == "attentive":
        source = ctx.token_features(cfg, handle)
        return [str(r) for r in source.record_ids], source.tokens, None
    prepared = ctx.prepared(cfg, handle)
    views = views_of(prepared.signals, handle.encoder.contract, prepared.rows(list(ids)))
    return list(ids), views, handle.encoder.contract.present_views(views) if handle.encoder.contract.record_seconds else None


def fit_and_predict(cfg: ModeConfig, encoder: nn.Module, data: np.ndarray, y: np.ndarray, rows: Mapping[str, np.ndarray],
                    seed: int, state_dir: Path | None, present: np.ndarray | None, progress: bool = False,
                    objective: Objective = LABELS) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """One unit of a mode on ``mode_inputs``' data: the head (attentive) or encoder and head (finetune, scratch) trained
    on ``rows["train"]``, selected on ``rows["val"]``; its outputs on the validation and test rows, and what training
    says of itself."""
    if cfg.mode == "attentive":
        head, info = fit_attentive(data, y, rows["train"], rows["val"], cfg, seed, progress=progress, objective=objective)
        return predict_attentive(head, data, rows["val"]), predict_attentive(head, data, rows["test"]), info
    model, info = fit_tuned(encoder, data, y, rows["train"], rows["val"], cfg, seed, state_dir, progress=progress, present=present,
                            objective=objective)
    return predict_tuned(model, data, rows["val"], present=present), predict_tuned(model, data, rows["test"], present=present), info


def mode_material(cfg: ModeConfig) -> Mapping[str, Any]:
    """What a non-linear mode adds to a unit's key."""
    return {"mode": cfg.mode, "mode_config": cfg.as_params()}

