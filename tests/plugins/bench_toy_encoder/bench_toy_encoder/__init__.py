"""A third-party encoder: per-lead means and standard deviations through one linear layer."""

import torch
from torch import nn

from bench.encoders import Encoder, EncoderSpec
from bench.suites.base import Aggregate, Group, Suite, Unit, UnitResult, frame_hash


class ToyMean(Encoder):
    """Per-lead means and standard deviations through one linear layer of random weights."""

    def __init__(self, dim: int = 16, **_: object):
        super().__init__()
        self.proj = nn.Linear(24, dim)
        self.dim = dim

    @property
    def spec(self) -> EncoderSpec:
        return EncoderSpec(name="toy_mean", embed_dim=self.dim, fs=100.0, n_samples=1000, normalisation="none",
                           n_params=self.n_params())

    def encode_ecg(self, x: torch.Tensor, aligned: bool = False) -> torch.Tensor:
        return self.proj(torch.cat([x.mean(-1), x.std(-1)], dim=-1))  # x: [B, 12 leads, 1000 samples] in mV


def build_toy_mean(**config):
    return ToyMean(**config)


class PrevalenceSuite(Suite):
    """A third-party suite (no encoder): each class's prevalence in the test split, run by bench's executor."""

    name = "toy_prevalence"
    version = "1"
    description = "class prevalence in the test split (a third-party plugin suite)"
    stores_predictions = False
    on_leaderboard = False

    def groups(self, ctx, request):
        for dataset in request.datasets or [ctx.base.data.name]:
            cfg = ctx.dataset_cfg(dataset)
            index = ctx.reader(cfg).index
            for task in request.tasks or list(cfg.data.default_tasks):
                labels = index.task(task).labels
                test = labels[index.records.loc[labels.index, "split"] == "test"]
                yield Group({"method": "none", "dataset": dataset, "task": task, "protocol": "fixed", "fraction": 1.0, "seed": 0},
                            [Unit({"fold": "test"}, {"labels": frame_hash(test)})], state=test)

    def compute(self, ctx, group, units):
        return [UnitResult({f"prevalence.{c}": float(v) for c, v in group.state.mean().items()})]

    def aggregate(self, ctx, group, results):
        return Aggregate(dict(results[0][1].metrics))

    def table(self, aggregates, fmt="md", methods=None):
        cols = sorted(c for c in aggregates.columns if c.startswith("prevalence."))
        return aggregates[["dataset", "task", *cols]].to_string(index=False)
