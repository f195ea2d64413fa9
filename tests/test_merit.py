"""MERIT: masking, loss terms against hand computations, per-objective gradients, pretraining resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.data.loader import LoaderConfig, Rows, Texts
from bench.encoders import create_encoder
from bench.encoders.pretrain import PretrainConfig, PretrainPool, pretrain
from bench.encoders.losses import ib_term, info_nce, masked_mse
from merit.model import MERIT
from bench.encoders.randomness import StepRandom
from bench.encoders.vit import random_keep, sincos_positions


def test_masking_ratio_and_per_lead_independence():
    keep, mask = random_keep(torch.rand(64, 12, 20, generator=torch.Generator().manual_seed(0)), 0.75)
    assert keep.shape == (64, 12, 5)
    assert torch.all(mask.sum(-1) == 15)  # exactly 75 % of each lead's patches masked
    assert torch.all(torch.gather(mask, 2, keep) == 0)
    patterns = {tuple(mask[0, lead].int().tolist()) for lead in range(12)}
    assert len(patterns) > 6, "leads of one record must be masked independently"
    assert not torch.equal(mask[0], mask[1])


def test_sep_positions_are_zero():
    table = sincos_positions(22, 16)
    assert torch.all(table[0] == 0) and torch.all(table[-1] == 0) and table[1].abs().sum() > 0


def test_reconstruction_loss_counts_only_masked_patches():
    torch.manual_seed(0)
    target = torch.randn(2, 12, 10, 5)
    mask = (torch.rand(2, 12, 10) < 0.75).float()
    pred = target.clone()
    pred[mask == 1] += 1.0  # error of 1 on every masked value
    assert masked_mse(pred, target, mask).item() == pytest.approx(1.0)
    pred2 = pred.clone()
    pred2[mask == 0] += 100.0  # visible patches are not targets
    assert masked_mse(pred2, target, mask).item() == pytest.approx(1.0)


def test_info_nce_equals_hand_computation():
    z_e = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z_t = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    t = 0.5
    c = 1 / math.sqrt(2)
    s = torch.tensor([[c, 0.0], [c, 1.0]]) / t  # cosine similarities / temperature
    e2t = -0.5 * (math.log(math.exp(s[0, 0]) / (math.exp(s[0, 0]) + math.exp(s[0, 1])))
                  + math.log(math.exp(s[1, 1]) / (math.exp(s[1, 0]) + math.exp(s[1, 1]))))
    t2e = -0.5 * (math.log(math.exp(s[0, 0]) / (math.exp(s[0, 0]) + math.exp(s[1, 0])))
                  + math.log(math.exp(s[1, 1]) / (math.exp(s[0, 1]) + math.exp(s[1, 1]))))
    assert info_nce(z_e, z_t, t).item() == pytest.approx(0.5 * (e2t + t2e), rel=1e-6)


def test_ib_term_is_beta_times_one_minus_cosine():
    z_e, z_t = torch.randn(5, 8), torch.randn(5, 8)
    expected = 0.3 * (1 - F.cosine_similarity(z_e, z_t)).mean()
    assert ib_term(z_e, z_t, 0.3).item() == pytest.approx(expected.item())


@pytest.mark.parametrize("objective,terms,trained,untouched", [
    ("merit", {"mse", "cma"}, {"encoder", "decoder", "ecg_proj", "text_proj", "text_tower"}, set()),
    ("merit_mse", {"mse"}, {"encoder", "decoder"}, {"ecg_proj", "text_proj", "text_tower"}),
    ("merit_cma", {"cma"}, {"encoder", "ecg_proj", "text_proj", "text_tower"}, {"decoder"}),
    ("merit_ib", {"cma", "ib"}, {"encoder", "ecg_proj", "text_proj", "text_tower"}, {"decoder"}),
])
def test_each_objective_optimises_exactly_its_terms(objective, terms, trained, untouched):
    torch.manual_seed(0)
    model = MERIT(objective, preset="tiny")
    x = model.normalise(torch.randn(4, 12, 1000))
    losses = model.pretraining_losses(x, ["atrial fibrillation", "sinus rhythm", "normal ECG", "ST depression"],
                                      StepRandom(0, 0, range(4)))
    assert set(losses) - {"loss"} == terms
    assert losses["loss"].item() == pytest.approx(sum(losses[t].item() for t in terms))
    losses["loss"].backward()
    for part in trained:
        grads = [p.grad for p in getattr(model, part).parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), f"{part} should learn under {objective}"
    for part in untouched:
        module = getattr(model, part)
        assert module is None or all(p.grad is None for p in module.parameters()), f"{part} must not learn under {objective}"


def _pool():
    rng = np.random.default_rng(0)
    signals = rng.normal(size=(48, 12, 1000)).astype(np.float32)
    texts = [["sinus rhythm", "atrial fibrillation", "normal ECG"][i % 3] for i in range(48)]
    return signals, texts


def _pretrain(tmp_path, epochs, on_step=None, out="run", signals=None, texts=None, loader=None):
    torch.manual_seed(0)
    model = create_encoder("merit", preset="tiny")
    if signals is None:
        signals, texts = _pool()
    pool = PretrainPool("synthetic", [str(i) for i in range(48)], [1])
    cfg = PretrainConfig(epochs=epochs, batch_size=16, lr=3e-3, seed=0)
    result = pretrain(model, signals, texts, cfg, tmp_path / out, pool=pool, encoder_config={"name": "merit", "preset": "tiny"},
                      progress=False, on_step=on_step, loader=loader)
    return model, result


def test_streaming_from_the_prepared_file_gives_the_in_memory_loss_curve(tmp_path):
    """The pool read row by row from a cache file (in another order, among other records) by two loader
    processes gives exactly the curve and weights of the pool held in memory."""
    signals, texts = _pool()
    where = np.random.default_rng(1).permutation(60)[:48]  # pool position i lives in file row where[i]
    stored = np.lib.format.open_memmap(tmp_path / "signals.npy", mode="w+", dtype=np.float32, shape=(60, 12, 1000))
    stored[where] = signals
    stored.flush()
    del stored
    in_memory, a = _pretrain(tmp_path, epochs=2, out="memory", signals=signals, texts=texts)
    streamed, b = _pretrain(tmp_path, epochs=2, out="stream", signals=Rows(tmp_path / "signals.npy", where), texts=Texts(texts),
                            loader=LoaderConfig(workers=2))
    assert [h["step_loss"] for h in b.history] == [h["step_loss"] for h in a.history]
    for (k, v), w in zip(in_memory.state_dict().items(), streamed.state_dict().values()):
        assert torch.equal(v, w), k


def test_row_reader_reads_runs_and_texts_round_trip(tmp_path):
    data = np.arange(10 * 2 * 3, dtype=np.float32).reshape(10, 2, 3)
    np.save(tmp_path / "a.npy", data)
    rows = Rows(tmp_path / "a.npy", [9, 2, 3, 4, 0])
    np.testing.assert_array_equal(rows.read([1, 2, 3, 0, 4]), data[[2, 3, 4, 9, 0]])
    texts = Texts(["Sinusrhythmus", "", "ÖKG normal ✓"])
    assert [texts[i] for i in range(3)] == ["Sinusrhythmus", "", "ÖKG normal ✓"]
    np.save(tmp_path / "b.npy", data.astype(np.float64))
    with pytest.raises(ValueError, match="float32"):
        Rows(tmp_path / "b.npy")


def test_pretraining_loss_goes_down_and_checkpoint_records_pool(tmp_path):
    model, result = _pretrain(tmp_path, epochs=6)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0]
    blob = torch.load(result.checkpoint, weights_only=False)
    assert blob["pretrain_pool"]["n"] == 48 and blob["pretrain_pool"]["folds"] == [1]
    assert blob["config"]["pretrain"]["epochs"] == 6 and len(blob["pretrain_record_ids"]) == 48


def test_kill_and_resume_continues_from_saved_epoch(tmp_path):
    full, _ = _pretrain(tmp_path, epochs=3, out="full")

    def die(step):
        if step == 7:  # during epoch 3 (3 steps per epoch)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _pretrain(tmp_path, epochs=3, on_step=die, out="killed")
    resumed, result = _pretrain(tmp_path, epochs=3, out="killed")
    assert result.resumed_from_epoch == 2 and len(result.history) == 3
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=k)


def test_resume_refuses_a_different_config(tmp_path):
    _pretrain(tmp_path, epochs=1, out="x")
    model = create_encoder("merit", preset="tiny")
    with pytest.raises(ValueError, match="different encoder config, pool or pretraining settings"):
        pretrain(model, np.zeros((16, 12, 1000), np.float32), ["a"] * 16, PretrainConfig(epochs=2, batch_size=16),
                 tmp_path / "x", pool=PretrainPool("synthetic", ["a"], [1]), encoder_config={"name": "merit", "preset": "other"},
                 progress=False)
    # same encoder and pool, another learning rate: resuming would mix two runs, so it is refused too
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="pretraining settings"):
        pretrain(model, rng.normal(size=(48, 12, 1000)).astype(np.float32), ["x"] * 48,
                 PretrainConfig(epochs=1, batch_size=16, lr=1e-4, seed=0), tmp_path / "x",
                 pool=PretrainPool("synthetic", [str(i) for i in range(48)], [1]),
                 encoder_config={"name": "merit", "preset": "tiny"}, progress=False)


def _bench_pretrain(cache, *, nproc: int, method: str = "merit", epochs: int = 2):
    """`bench pretrain` on 120 demo records (global batch 32), alone or under `torchrun --nproc_per_node`."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "BENCH_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)] if nproc > 1 else [sys.executable]
    cmd = [*launcher, "-m", "bench.cli", "pretrain", "--method", method, "--dataset", "demo_ptbxl", "encoder.preset=tiny",
           f"pretrain.epochs={epochs}", "pretrain.batch_size=32", "data.demo.n_records=120", "tracking.enabled=false"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    ckpts = list(cache.glob("checkpoints/*/encoder.pt"))
    assert len(ckpts) == 1
    return torch.load(ckpts[0], weights_only=False)


def test_step_randomness_does_not_depend_on_how_the_batch_is_sharded():
    whole = StepRandom(3, 7, [5, 9, 11, 2])
    halves = [StepRandom(3, 7, [5, 9]), StepRandom(3, 7, [11, 2])]
    assert torch.equal(whole.rand(12, 10), torch.cat([h.rand(12, 10) for h in halves]))
    assert whole.batch_randint(0, 1000) == halves[1].batch_randint(0, 1000)
    assert not torch.equal(StepRandom(3, 8, [5]).rand(4), StepRandom(3, 7, [5]).rand(4))


def test_torchrun_two_processes_give_the_one_process_loss_curve(tmp_path):
    """`torchrun --nproc_per_node 2` (gloo on CPU) with the same global batch reproduces the one-process
    run: every step's loss (MSE + InfoNCE over the gathered global batch) and the final weights agree to
    float tolerance; rank 0 alone writes the checkpoint."""
    one = _bench_pretrain(tmp_path / "one", nproc=1)
    two = _bench_pretrain(tmp_path / "two", nproc=2)
    curve_one = [v for h in one["history"] for v in h["step_loss"]]
    curve_two = [v for h in two["history"] for v in h["step_loss"]]
    assert len(curve_one) == len(curve_two) == 2 * (120 * 8 // 10 // 32)
    assert curve_one[-1] < curve_one[0]
    np.testing.assert_allclose(curve_two, curve_one, rtol=1e-4, atol=1e-5)
    for key, value in one["model"].items():
        torch.testing.assert_close(two["model"][key], value, rtol=1e-3, atol=1e-4)
