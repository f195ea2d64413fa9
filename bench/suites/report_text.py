"""The reports' own ceiling: TF-IDF + logistic regression on each record's free-text report, no ECG.

A control for the pretraining text, not an encoder: the pretraining of the text-aligned encoders reads these
reports, and the reports were written with the diagnoses the tasks score. Its rows (method ``report_text``, no
checkpoint) say how much of a task the text alone holds. Settings: configs/protocols/report_text.yaml.

Written only against the suite plugin interface (bench/suites/base.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from bench.suites.base import Aggregate, Group, Request, Suite, Unit, UnitResult, content_hash, frame_hash

if TYPE_CHECKING:
    from bench.suites.base import RunContext


def report_scores(train: Sequence[str], y_train: np.ndarray, texts: Sequence[str], settings: dict) -> np.ndarray:
    """Per-class probabilities for ``texts`` from one logistic regression per class on TF-IDF features of ``train``; a
    class without both outcomes in training scores its training prevalence (it cannot rank)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    tfidf = dict(settings["tfidf"])
    tfidf["ngram_range"] = tuple(tfidf["ngram_range"])
    vectorizer = TfidfVectorizer(**tfidf).fit(train)
    x_train, x = vectorizer.transform(train), vectorizer.transform(texts)
    out = np.zeros((len(texts), y_train.shape[1]))
    for k in range(y_train.shape[1]):
        if 0 < y_train[:, k].sum() < len(y_train):
            out[:, k] = LogisticRegression(**settings["logistic"]).fit(x_train, y_train[:, k]).predict_proba(x)[:, 1]
        else:
            out[:, k] = y_train[:, k].mean()
    return out


class ReportTextSuite(Suite):
    name = "report_text"
    version = "1"
    description = "the pretraining text's own ceiling: TF-IDF + logistic regression on each record's report (no ECG; --methods is ignored)"
    CONTROL = "report_text"

    def groups(self, ctx: "RunContext", request: Request):
        from omegaconf import OmegaConf

        from bench.data.errors import DataError
        from bench.suites.linear import split_material
        from bench.suites.protocols import protocol_splits

        for dataset in request.datasets or [ctx.base.data.name]:
            cfg = ctx.dataset_cfg(dataset)
            settings = OmegaConf.to_container(cfg.report_text, resolve=True)
            index = ctx.reader(cfg).index
            reports = index.records.get("report", pd.Series("", index=index.records.index)).fillna("").astype(str)
            if not reports.str.strip().any():
                raise DataError(dataset, "no record has a free-text report", "run report_text on a dataset with reports (ptbxl, ptbxl_1819)")
            for task in request.tasks or list(cfg.data.default_tasks):
                labels = index.task(task).labels
                (split,) = protocol_splits(index.records, labels, "fixed")
                ids = split.train + split.val + split.test
                group = Group({"method": self.CONTROL, "dataset": cfg.data.name, "task": task, "protocol": "fixed", "fraction": 1.0,
                               "seed": 0}, state=(settings, labels, reports, split))
                material = {"labels": frame_hash(labels), **split_material(split), "settings": settings,
                            "reports": content_hash([reports[r] for r in ids])}
                group.units.append(Unit({"fold": "test", **ctx.provenance(cfg, None, index)}, material))
                yield group

    def compute(self, ctx: "RunContext", group: Group, units: list[Unit]) -> list[UnitResult]:
        from bench.suites.classification import unit_result
        from bench.suites.linear import _unit_arrays

        settings, labels, reports, split = group.state
        ids = split.train + split.val + split.test
        y = labels.loc[ids].to_numpy()
        rows = {"train": np.arange(len(split.train)), "val": len(split.train) + np.arange(len(split.val)),
                "test": len(split.train) + len(split.val) + np.arange(len(split.test))}
        scores = report_scores([reports[r] for r in split.train], y[rows["train"]], [reports[r] for r in ids], settings)
        arrays = _unit_arrays(scores[rows["test"]], scores[rows["val"]], y, rows, split.test, split.val)
        return [unit_result(arrays, list(labels.columns), {"n_train": len(split.train), "n_val": len(split.val)},
                            {"decision": "per-class threshold maximising validation F1", "features": "TF-IDF of the report"})]

    def aggregate(self, ctx: "RunContext", group: Group, results) -> Aggregate:
        from bench.suites.classification import classification_aggregate

        return classification_aggregate(ctx, group, results, list(group.state[1].columns) if group.state else [])

    def job_values(self, ctx: "RunContext", request: Request) -> list[dict[str, list]]:
        return [{"method": [self.CONTROL], "dataset": [d], "task": request.tasks or list(ctx.dataset_cfg(d).data.default_tasks),
                 "seed": [0]} for d in request.datasets or [ctx.base.data.name]]

    def table(self, aggregates: pd.DataFrame, fmt: str = "md", methods: Sequence[str] | None = None) -> str:
        from bench.suites.base import render_block

        def pct(r: dict) -> str:
            return f"{100 * r['auroc_pooled']:.1f} [{100 * r['auroc_ci_low']:.1f}, {100 * r['auroc_ci_high']:.1f}]"

        blocks = []
        for dataset, g in aggregates.groupby("dataset", sort=True):
            cells = pd.DataFrame(index=["report_text (control: the report, no ECG)"], dtype=object)
            for r in g.sort_values("task").to_dict("records"):
                cells.loc[cells.index[0], f"{r['task']} (n={float(r['n_test']):.0f})"] = pct(r)
            blocks.append(render_block(cells, f"the reports' own ceiling on {dataset}: macro AUROC (%) [95% CI over test records] of "
                                              f"TF-IDF + logistic regression on each record's free-text report (fixed split, "
                                              f"thresholds on validation)", fmt))
        return "\n\n".join(blocks)
