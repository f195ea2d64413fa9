"""Fold/fraction logic (no test record in training), the vectorised linear head, and the Table 5 maps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from bench import REPO_ROOT
from bench.suites.linear import HeadConfig, train_heads
from bench.suites.protocols import protocol_splits, stratified_fraction
from bench.suites.transfer import aligned_classes, aligned_labels, load_label_maps


def _records(n=400, seed=0):
    rng = np.random.default_rng(seed)
    rec = pd.DataFrame({"fold": rng.integers(1, 11, n)}, index=[f"r{i}" for i in range(n)])
    rec["split"] = rec["fold"].map(lambda f: "train" if f <= 8 else ("val" if f == 9 else "test"))
    labels = pd.DataFrame((rng.random((n, 4)) < [0.5, 0.3, 0.1, 0.05]).astype(int), index=rec.index, columns=list("abcd"))
    return rec, labels[labels.sum(1) > 0]


def test_fixed_and_cv10_never_train_on_test():
    rec, labels = _records()
    (fixed,) = protocol_splits(rec, labels, "fixed")
    assert not set(fixed.test) & (set(fixed.train) | set(fixed.val))
    assert set(rec.loc[fixed.test, "fold"]) == {10}
    cv = protocol_splits(rec, labels, "cv10")
    assert len(cv) == 10
    tested = [r for sp in cv for r in sp.test]
    assert sorted(tested) == sorted(labels.index), "every record is tested exactly once"
    for sp in cv:
        assert not set(sp.test) & set(sp.train) and not set(sp.test) & set(sp.val) and not set(sp.val) & set(sp.train)


def test_fractions_are_stratified_and_only_subsample_training():
    rec, labels = _records(2000)
    (full,) = protocol_splits(rec, labels, "fixed", 1.0)
    (tenth,) = protocol_splits(rec, labels, "fixed", 0.1, seed=3)
    assert tenth.val == full.val and tenth.test == full.test
    assert set(tenth.train) <= set(full.train)
    assert abs(len(tenth.train) - round(0.1 * len(full.train))) <= 1
    prev_full, prev_tenth = labels.loc[full.train].mean(), labels.loc[tenth.train].mean()
    assert (prev_full - prev_tenth).abs().max() < 0.03
    assert len(stratified_fraction(labels, 0.001, 0)) == 1


def test_batched_head_equals_torch_adamw_reference():
    """One head trained by the batched loop equals nn.Linear + torch.optim.AdamW on the same batches."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 8)).astype(np.float32)
    y = (x[:, :3] + rng.normal(0, 0.5, (150, 3)) > 0).astype(np.float32)
    tr, va = np.arange(0, 100), np.arange(100, 150)
    cfg = HeadConfig(epochs=3, batch_size=32, lr=1e-2, weight_decay=0.01, standardize=True)
    ours = train_heads(x, y, [(tr, va)], cfg, seed=5, head_seeds=[7])
    g = torch.Generator().manual_seed(5 * 1_000_003 + 7)
    lin = torch.nn.Linear(8, 3)
    with torch.no_grad():
        lin.weight.copy_(((torch.rand(8, 3, generator=g) * 2 - 1) / np.sqrt(8)).T)
        lin.bias.copy_((torch.rand(3, generator=g) * 2 - 1) / np.sqrt(8))
    opt = torch.optim.AdamW(lin.parameters(), lr=1e-2, weight_decay=0.01)
    X, Y = torch.tensor(x), torch.tensor(y)
    mu, sd = X[tr].mean(0), X[tr].std(0, unbiased=False)
    perm_rng = np.random.default_rng([5, 7])
    best, best_w = float("inf"), None
    for _ in range(3):
        perm = perm_rng.permutation(tr)
        for s in range(0, len(perm), 32):
            rows = perm[s:s + 32]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(lin((X[rows] - mu) / sd), Y[rows])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            v = torch.nn.functional.binary_cross_entropy_with_logits(lin((X[va] - mu) / sd), Y[va]).item()
        if v < best:
            best, best_w = v, lin.weight.detach().T.clone()
    torch.testing.assert_close(ours.weight[0], best_w, atol=1e-5, rtol=1e-4)


def test_table5_maps_are_verbatim_and_aligned_both_ways(shared):
    ours = load_label_maps(REPO_ROOT / "configs/protocols/table5_label_maps.yaml")
    if (shared / "protocols/table5_label_maps.yaml").is_file():
        assert ours == yaml.safe_load((shared / "protocols/table5_label_maps.yaml").read_text())
    fwd = {c.name: (c.source_codes, c.target_codes) for c in aligned_classes(ours, "ptbxl_super", "cpsc2018")}
    assert set(fwd) == {"NORM", "CD", "STTC"}  # HYP and MI map to "None": left out
    assert fwd["CD"] == (["CD"], ["1AVB", "CRBBB", "CLBBB"])
    rev = aligned_classes(ours, "cpsc2018", "ptbxl_super")
    assert [(c.source_codes, c.target_codes) for c in rev if c.target_codes == ["CD"]] == [(["1AVB", "CRBBB", "CLBBB"], ["CD"])]
    assert len(aligned_classes(ours, "csn", "cpsc2018")) == 9
    target = pd.DataFrame({"1AVB": [0, 1, 0], "CRBBB": [0, 0, 1], "CLBBB": [0, 0, 0], "NORM": [1, 0, 0], "STE": [0, 0, 0], "STD": [0, 0, 0]})
    lab = aligned_labels(target, aligned_classes(ours, "ptbxl_super", "cpsc2018"), "target")
    assert lab["CD"].tolist() == [0, 1, 1] and lab["NORM"].tolist() == [1, 0, 0]
    with pytest.raises(ValueError, match="no Table 5 direction"):
        aligned_classes(ours, "ptbxl_super", "mimic")
