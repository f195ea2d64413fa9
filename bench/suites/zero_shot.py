"""Zero-shot classification: cosine similarity between aligned ECG embeddings and class-prompt embeddings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from bench.config import ConfigError, encoder_options
from bench.data.errors import DataError
from bench.data.ptbxl import normalise_code
from bench.suites.base import Aggregate, Group, Request, Suite, Unit, UnitResult, content_hash, frame_hash, ids_hash

if TYPE_CHECKING:
    from bench.suites.base import RunContext


def load_prompts(path: str | Path, lowercase: bool = True) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "prompt file not found", "set zero_shot.prompts=/path/to/prompts.json (code -> description)")
    raw = json.loads(path.read_text())
    return {normalise_code(k): (v.lower() if lowercase else v) for k, v in raw.items()}


def class_prompts(classes: Sequence[str], prompts: dict[str, str], source: str = "prompt file") -> list[str]:
    missing = [c for c in classes if normalise_code(c) not in prompts]
    if missing:
        raise DataError(source, f"no prompt for class(es) {', '.join(missing)}", "add them to the prompt file")
    return [prompts[normalise_code(c)] for c in classes]


def cosine_scores(ecg: np.ndarray, text: np.ndarray) -> np.ndarray:
    e = ecg / np.linalg.norm(ecg, axis=1, keepdims=True).clip(1e-12)
    t = text / np.linalg.norm(text, axis=1, keepdims=True).clip(1e-12)
    return e @ t.T


def top1_decisions(scores: np.ndarray) -> np.ndarray:
    pred = np.zeros_like(scores, dtype=int)
    pred[np.arange(len(scores)), scores.argmax(1)] = 1
    return pred


class ZeroShotSuite(Suite):
    name = "zero_shot"
    version = "2"  # 2: fixed-class-set bootstrap; unit key holds the prompt texts
    pools_seeds = True
    description = "zero-shot classification with class prompts on the test split (top-1 decisions); MERIT Table 2"

    def groups(self, ctx: "RunContext", request: Request):
        from omegaconf import OmegaConf

        from bench.encoders import create_encoder

        for dataset in request.datasets or [ctx.base.data.name]:
            cfg = ctx.dataset_cfg(dataset)
            zs = cfg.zero_shot
            if zs.decision != "top1":
                raise DataError("zero_shot.decision", f"unknown decision rule {zs.decision!r}", "use top1")
            has_text = {m: create_encoder(m, **encoder_options(cfg)).spec.has_text_tower
                        for m in request.methods}
            for method in request.methods:
                for task in request.tasks or list(cfg.data.default_tasks):
                    for seed in request.seeds or [int(s) for s in cfg.run.seeds]:
                        group = Group({"method": method, "dataset": cfg.data.name, "task": task, "protocol": "fixed",
                                       "fraction": 0.0, "seed": seed}, applicable=has_text[method])
                        if group.applicable:
                            self._add_unit(ctx, cfg, group, method, task, seed)
                        yield group

    def _add_unit(self, ctx, cfg, group: Group, method: str, task: str, seed: int) -> None:
        zs = cfg.zero_shot
        handle = ctx.scorers(cfg, method, "fixed", seed=seed)[0].handle
        index = ctx.reader(cfg).index
        labels = index.task(task).labels
        test = [r for r in labels.index if index.records.at[r, "split"] == zs.eval_split]
        handle.check_leakage(cfg.data.name, cfg.data.get("identity", cfg.data.name), test)
        if handle.pretrain_text == "labels" and not cfg.run.get("allow_label_text", False):
            raise ConfigError(f"zero-shot refused for {method}: it was pretrained on the label descriptions of the records "
                              f"(pretrain_pool.text=label_text, {handle.checkpoint}), so classifying with label prompts is not "
                              f"zero-shot (fix: pretrain on the reports, pretrain_pool.text=report; or pass --allow-label-text "
                              f"and the rows say pretrain_text=labels)")
        prompts = class_prompts(list(labels.columns), load_prompts(zs.prompts, zs.lowercase), str(zs.prompts))
        material = {"embedding": ctx.embedding_key(cfg, handle), "labels": frame_hash(labels), "test": ids_hash(test),
                    "prompts": content_hash(prompts), "decision": zs.decision, "seed": seed}
        tags = {"fold": zs.eval_split, **ctx.provenance(cfg, handle, index), "prompts": Path(zs.prompts).name,
                "prompts_hash": material["prompts"]}
        group.state = (cfg, handle, labels, test, prompts)
        group.units.append(Unit(tags, material))

    def compute(self, ctx: "RunContext", group: Group, units: list[Unit]) -> list[UnitResult]:
        import torch

        from bench.suites.classification import unit_result

        cfg, handle, labels, test, prompts = group.state
        emb, _ = ctx.embeddings(cfg, handle)
        with torch.no_grad():
            text = handle.encoder.encode_text(prompts).float().cpu().numpy()
        scores = cosine_scores(emb.aligned[emb.rows(test)], text)
        arrays = {"record_ids": np.array(test), "y_true": labels.loc[test].to_numpy().astype(np.int8),
                  "y_score": scores.astype(np.float32), "y_pred": top1_decisions(scores).astype(np.int8)}
        return [unit_result(arrays, list(labels.columns), params={"decision": "top-1 (the most similar class is predicted)",
                                                                   "lowercase": cfg.zero_shot.lowercase})]

    def aggregate(self, ctx: "RunContext", group: Group, results) -> Aggregate:
        from bench.suites.classification import classification_aggregate

        agg = classification_aggregate(ctx, group, results, list(group.state[2].columns) if group.state else [])
        agg.tags.update({k: results[0][0].tags[k] for k in ("prompts", "prompts_hash")})
        return agg

    def job_values(self, ctx: "RunContext", request: Request) -> list[dict[str, list]]:
        return [{"method": request.methods, "dataset": [d], "task": request.tasks or list(ctx.dataset_cfg(d).data.default_tasks),
                 "seed": request.seeds or list(ctx.base.run.seeds)} for d in request.datasets or [ctx.base.data.name]]
