"""Pretraining loop shared by every method that defines ``pretraining_losses(x, texts, rng)``.

The pool is streamed from the prepared cache through a DataLoader (bench/data/loader.py), so memory
does not grow with it. AdamW with a per-step cosine schedule; deterministic on CPU given the seed (the
shuffle of epoch e is drawn from (seed, e) and each sample's masks at step s from (seed, s, sample), so
a resumed run continues exactly as an uninterrupted one would); checkpoints carry the resolved config
and the pretraining pool (for the leakage rule); CUDA with bf16 autocast when present. Under ``torchrun``
the ranks take disjoint shards of each global batch, draw the same per-sample randomness, compute
global-batch losses (``bench.encoders.losses``) and log the global mean, so the loss curve equals the
one-process curve with the same global batch; rank 0 writes checkpoints.

A checkpoint's folder is named by a hash of everything that determines its weights (``pretraining_key``: the
method and encoder options, the prepared arrays, the pool's records and text, the pretraining settings), so
several budgets of one method coexist in a cache and a changed setting never meets a stale file; the folder's
``settings.json`` says what they are (``bench runs list`` lists them).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from bench import code_version
from bench.data.loader import Batches, EpochBatches, LoaderConfig, Rows, Texts, batch_loader
from bench.encoders.checkpoint import CheckpointError, read_checkpoint
from bench.encoders.randomness import StepRandom
from bench.files import atomic_path
from bench.hashing import content_hash
from bench.locks import hold
from bench.tracking import Tracker


@dataclass
class PretrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    min_lr_ratio: float = 0.01
    seed: int = 0
    checkpoint_every: int = 1  # epochs
    amp: bool = True  # bf16 autocast on CUDA only

    @classmethod
    def from_mapping(cls, cfg) -> "PretrainConfig":
        from bench.config import ConfigError, dataclass_from_mapping

        return dataclass_from_mapping(cls, cfg, "pretrain config", lambda w, m: ConfigError(f"{w}: {m}"))

    def weight_settings(self) -> dict[str, Any]:
        """The settings that change the weights: all but how often a checkpoint is written, with the precision
        the steps actually run in (bf16 autocast happens on CUDA only)."""
        settings = {k: v for k, v in asdict(self).items() if k not in ("checkpoint_every", "amp")}
        return {**settings, "precision": "bf16" if self.amp and torch.cuda.is_available() else "fp32"}


@dataclass
class PretrainPool:
    """Which records an encoder saw in pretraining: the suites refuse to test on any of them."""

    dataset: str
    record_ids: list[str]
    folds: list[int] | None = None
    split_hash: str = ""
    #: the records' text the encoder aligned to: a column of the dataset index (``report``, ``label_text``),
    #: or ``none`` when the encoder has no text tower and read no text
    text: str = "none"

    @property
    def ids_hash(self) -> str:
        return hashlib.sha256("\n".join(sorted(self.record_ids)).encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        described = {"dataset": self.dataset, "folds": self.folds, "n": len(self.record_ids), "ids_sha": self.ids_hash,
                     "split_hash": self.split_hash}
        return described if self.text == "none" else {**described, "text": self.text}  # text-free checkpoints keep their form


@dataclass
class PretrainResult:
    checkpoint: Path
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    samples_per_s: float = 0.0
    resumed_from_epoch: int = 0


def init_distributed_from_env() -> None:
    """Under torchrun (WORLD_SIZE > 1) start the process group: gloo on CPU, NCCL on GPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend=backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class _Losses(torch.nn.Module):
    """Wraps ``pretraining_losses`` as ``forward`` so DistributedDataParallel can sync gradients."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, texts: list[str], rng: StepRandom) -> dict[str, torch.Tensor]:
        return self.model.pretraining_losses(x, texts, rng)


def _global_mean(losses: dict[str, torch.Tensor], world: int) -> dict[str, float]:
    """The loss terms averaged over processes: each process's terms are global-batch values or
    shares of them (see ``bench.encoders.losses``), so the mean is the global batch's loss."""
    names = sorted(losses)
    values = torch.stack([losses[k] for k in names])
    if world > 1:
        torch.distributed.all_reduce(values)
        values /= world
    return dict(zip(names, values.tolist()))


def _atomic_save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _write_history(out_dir: Path, history: list[dict[str, Any]]) -> None:
    """The per-epoch losses so far, beside the checkpoints (what `bench runs list` reads for the epochs done)."""
    with atomic_path(out_dir / "history.json") as tmp:
        Path(tmp).write_text(json.dumps(history, indent=1))


def pretrain(model: torch.nn.Module, signals: np.ndarray | Rows, texts: Sequence[str] | Texts, cfg: PretrainConfig,
             out_dir: str | Path, *, pool: PretrainPool, encoder_config: dict[str, Any], units: str = "mV",
             tracker: Tracker | None = None, progress: bool = True, on_step: Callable[[int], None] | None = None,
             loader: LoaderConfig | None = None) -> PretrainResult:
    """Train ``model`` on ``signals`` [N, leads, samples] with ``texts`` [N]; resume from ``out_dir/last.pt``.

    ``signals`` is an array in memory or ``Rows`` of the prepared cache file, streamed batch by batch
    through a DataLoader (``loader``); either gives the same batches in the same order."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rank, world = _dist()
    device = torch.device(f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu")
    model.to(device)
    torch.manual_seed(cfg.seed)
    rows = signals if isinstance(signals, Rows) else Rows(signals)
    texts = texts if isinstance(texts, Texts) else Texts(texts)
    n = len(rows)
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the number of processes {world}")
    plan = EpochBatches(n, cfg.batch_size, cfg.seed, rank, world)
    batches = batch_loader(Batches(rows, texts), plan, loader)
    steps_per_epoch = len(plan)
    total = steps_per_epoch * cfg.epochs
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    run_config = {"pretrain": asdict(cfg), "encoder": encoder_config, "pool": pool.describe()}
    history: list[dict[str, float]] = []
    start_epoch = 0
    last = out_dir / "last.pt"
    final = out_dir / "encoder.pt"
    if final.is_file() and last.is_file():
        done = read_checkpoint(last)
        if done["epoch"] >= cfg.epochs and done["config"] == run_config:
            return PretrainResult(final, done["history"], 0.0, 0.0, done["epoch"])  # already trained: reuse
    if last.is_file():
        blob = read_checkpoint(last)
        if blob.get("config") != run_config:
            raise CheckpointError(f"{last}: a checkpoint of a different encoder config, pool or pretraining settings is in "
                                  f"this folder (fix: delete {out_dir}; bench names each folder by its settings, so only a "
                                  f"copied or edited file can be here)")
        model.load_state_dict(blob["model"])
        opt.load_state_dict(blob["optimizer"])
        sched.load_state_dict(blob["scheduler"])
        start_epoch, history = blob["epoch"], blob["history"]
    step_fn: torch.nn.Module = _Losses(model)
    if world > 1:
        step_fn = torch.nn.parallel.DistributedDataParallel(step_fn, device_ids=[device.index] if device.type == "cuda" else None)
    use_amp = cfg.amp and device.type == "cuda"
    t0, seen = time.perf_counter(), 0
    tracker = tracker or Tracker(None, "pretrain", enabled=False)
    name = encoder_config.get("name", type(model).__name__)
    with tracker.run(f"pretrain-{name}", tags={"method": name, "code_version": code_version(), **{f"pool_{k}": v for k, v in pool.describe().items()}},
                     params={**asdict(cfg), **{f"encoder.{k}": v for k, v in encoder_config.items()}} if start_epoch == 0 else None):
        for epoch in range(start_epoch, cfg.epochs):
            model.train()
            plan.set_epoch(epoch)
            sums: dict[str, float] = {}
            step_loss: list[float] = []
            bar = tqdm(batches, total=steps_per_epoch, desc=f"pretrain {name} epoch {epoch + 1}/{cfg.epochs}",
                       disable=not progress or rank != 0)
            for i, (x, batch_texts, idx) in enumerate(bar):
                step = epoch * steps_per_epoch + i
                x = model.normalise(x.to(device, non_blocking=True), units)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                    losses = step_fn(x, batch_texts, StepRandom(cfg.seed, step, idx, device))
                opt.zero_grad(set_to_none=True)
                losses["loss"].backward()
                opt.step()
                sched.step()
                seen += len(idx) * world
                step_losses = _global_mean({k: v.detach().float() for k, v in losses.items()}, world)
                for k, v in step_losses.items():
                    sums[k] = sums.get(k, 0.0) + v
                step_loss.append(step_losses["loss"])
                bar.set_postfix(loss=f"{step_losses['loss']:.4f}", sps=f"{seen / (time.perf_counter() - t0):.0f}")
                if on_step is not None:
                    on_step(step)
            epoch_losses = {k: v / steps_per_epoch for k, v in sums.items()}
            history.append({"epoch": epoch + 1, **epoch_losses, "step_loss": step_loss})
            tracker.log_metrics(epoch_losses, step=epoch + 1)
            if rank == 0 and ((epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs):
                _atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                              "epoch": epoch + 1, "history": history, "config": run_config, "code_version": code_version()}, last)
                _write_history(out_dir, history)
        seconds = time.perf_counter() - t0
        if rank == 0:
            state = model.checkpoint_state() if hasattr(model, "checkpoint_state") else model.state_dict()
            _atomic_save({"model": state, "config": run_config, "history": history, "code_version": code_version(),
                          "pretrain_pool": pool.describe(), "pretrain_record_ids": sorted(pool.record_ids)}, final)
            _write_history(out_dir, history)
            tracker.log_artifact(final)
        if world > 1:
            torch.distributed.barrier()  # no rank leaves (and tears the group down) before the checkpoint is written
    return PretrainResult(final, history, seconds, seen / seconds if seconds else 0.0, start_epoch)


def pool_from_config(index, pool_cfg, reads_text: bool = True) -> PretrainPool:
    """The pretraining pool named by config: records in ``folds`` (all records when folds is null), and the
    text column an encoder with a text tower aligns to (``reads_text``)."""
    from bench.config import ConfigError
    from bench.encoders.loading import PRETRAIN_TEXT_TAGS

    folds = list(pool_cfg.get("folds") or []) or None
    records = index.records
    text = str(pool_cfg.get("text", "report"))
    if text == "none" or text not in PRETRAIN_TEXT_TAGS:
        raise ConfigError(f"pretrain_pool.text={text!r}: unknown pretraining text (fix: pretrain_pool.text=report, the record's "
                          f"own report, or label_text, its label descriptions)")
    if folds is None:
        ids = list(records.index)
    else:
        if records["fold"].isna().all():
            raise ValueError(f"dataset {index.name} has no folds; set pretrain_pool.folds=null to pretrain on all records")
        ids = list(records.index[records["fold"].isin(folds)])
    return PretrainPool(index.name, ids, folds, index.split_hash(), text if reads_text else "none")


def pretraining_key(method: str, encoder_options: dict[str, Any], prepared_key: str, pool: PretrainPool,
                    cfg: PretrainConfig) -> dict[str, Any]:
    """Everything that determines a pretrained checkpoint's weights (its folder is named by the hash of this)."""
    return {"method": method, "encoder": encoder_options, "prepared": prepared_key, "pool": pool.describe(),
            "pretrain": cfg.weight_settings()}


def checkpoint_dir(cache: str | Path, settings: dict[str, Any]) -> Path:
    """``<cache>/checkpoints/<method>-<preset>-<dataset>-e<epochs>-seed<seed>[-<text>]-<hash of the settings>``."""
    pool, pretrain = settings["pool"], settings["pretrain"]
    text = f"-{pool['text']}" if pool.get("text", "none") != "none" else ""
    name = (f"{settings['method']}-{settings['encoder'].get('preset', 'default')}-{pool['dataset']}-e{pretrain['epochs']}"
            f"-seed{pretrain['seed']}{text}-{content_hash(settings, 10)}")
    return Path(cache) / "checkpoints" / name


def cached_checkpoints(cache: str | Path) -> list[dict[str, Any]]:
    """The pretrained checkpoints of a cache with their settings and state (finished, or the last epoch written)."""
    rows = []
    for folder in sorted((Path(cache) / "checkpoints").glob("*/settings.json")):
        settings = json.loads(folder.read_text())
        final, history = folder.parent / "encoder.pt", folder.parent / "history.json"
        state = "finished" if final.is_file() else ("interrupted" if (folder.parent / "last.pt").is_file() else "started")
        epochs = len(json.loads(history.read_text())) if history.is_file() else None
        rows.append({"folder": folder.parent.name, "state": state, "epochs_done": epochs, **settings})
    return rows


def run_pretraining(cfg, method: str, *, progress: bool = True, tracker: Tracker | None = None,
                    cached_only: bool = False) -> PretrainResult:
    """Compose dataset -> prepared cache -> encoder -> pretraining for ``method`` as ``cfg`` says, into the folder
    its settings name (``checkpoint_dir``).

    ``cached_only``: return the finished checkpoint or raise FileNotFoundError, never train (a launcher's
    collect pass, which may run on a login node).
    """
    from omegaconf import OmegaConf

    from bench.data.cache import prepare
    from bench.data.preprocess import PreprocessConfig, check_lead_set
    from bench.data.registry import open_from_config
    from bench.encoders import create_encoder

    from bench.config import encoder_options

    init_distributed_from_env()
    enc_cfg = encoder_options(cfg)
    torch.manual_seed(int(cfg.pretrain.seed))  # the initial weights are part of what the seed fixes
    model = create_encoder(method, **enc_cfg)
    from bench.encoders.base import has_objective
    from bench.errors import ConfigError

    if not has_objective(model):
        raise ConfigError(f"{method} defines no pretraining objective (pretraining_losses), so there is nothing to pretrain "
                          f"(fix: evaluate it as built: bench run / bench embed --untrained; or give it a "
                          f"pretraining_losses(x, texts, rng) method, see docs/plugins.md)")
    rank, world = _dist()
    if rank != 0:
        torch.distributed.barrier()  # rank 0 generates / prepares the data first
    reader = open_from_config(cfg)
    index = reader.index
    spec = model.spec
    pool = pool_from_config(index, cfg.pretrain_pool, reads_text=spec.has_text_tower)
    pcfg = PreprocessConfig.from_mapping(spec.contract.preprocess_mapping(OmegaConf.to_container(cfg.preprocess),
                                                                          cfg.data.get("identity", cfg.data.name), pretraining=True))
    check_lead_set(pcfg, index.leads, cfg.data.name, method)
    prepared = prepare(reader, pcfg, cfg.paths.cache, on_error=cfg.data.get("on_error", "raise"),
                       workers=cfg.data.get("workers"), progress=progress and rank == 0)
    if rank == 0 and world > 1:
        torch.distributed.barrier()
    have = set(prepared.record_ids)
    ids = [r for r in pool.record_ids if r in have]
    pool.record_ids = ids
    signals = Rows(prepared.path / "signals.npy", prepared.rows(ids))  # streamed from the cache, never held whole
    texts = Texts(index.records.loc[ids, pool.text].fillna("").astype(str).tolist() if pool.text != "none" else [""] * len(ids))
    if tracker is None:
        tracker = Tracker(cfg.tracking.uri, "pretrain", enabled=cfg.tracking.enabled and rank == 0)
    pcfg_train = PretrainConfig.from_mapping(cfg.pretrain)
    settings = pretraining_key(method, enc_cfg, prepared.key, pool, pcfg_train)
    out_dir = checkpoint_dir(cfg.paths.cache, settings)
    if cached_only and not (out_dir / "encoder.pt").is_file():
        raise FileNotFoundError(f"no finished checkpoint of {method} in {out_dir}")
    # one process pretrains a given checkpoint; a concurrent `bench run` needing it waits, then reuses it
    # (under torchrun the ranks already act as one, so no lock)
    with hold(cfg.paths.cache, [f"pretrain:{out_dir.name}"] if world == 1 else []):
        if rank == 0:
            out_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(out_dir / "settings.json") as tmp:
                Path(tmp).write_text(json.dumps(settings, indent=1, sort_keys=True, default=str) + "\n")
        return pretrain(model, signals, texts, pcfg_train, out_dir, pool=pool,
                        encoder_config={"name": method, **enc_cfg}, units=index.units, tracker=tracker, progress=progress,
                        loader=LoaderConfig.from_mapping(cfg.get("loader")))
