"""Performance figures of the harness, measured in one run on this machine; prints a table and writes
results/perf.md. Not a test: `python benchmarks/perf.py [--records N] [--quick]`.

1. Data: records/s to prepare PTB-XL-layout WFDB records (500 Hz -> 100 Hz) into the cache, cold vs warm.
2. Embeddings: records/s and peak memory (RSS of a fresh process) per encoder at its cpu_small preset.
3. Linear suite (10 folds x 4 tasks, paper head: 100 epochs, batch 64) on ptbxl_1819 (or the demo):
   the harness (one cached embedding pass + heads batched over folds) against
   (a) the floor: one embedding pass + training the same heads, measured separately, and
   (b) the naive way of the anchor scripts: every batch re-encoded through the frozen encoder every epoch,
       one fold at a time (measured on a few epochs of one fold per task, scaled to the full work).
4. Determinism: the same `bench run` twice into two stores gives byte-identical leaderboard rows.
5. Evaluation modes: fine-tuning steps through the harness (bench.suites.modes.fit_tuned) against a bare PyTorch loop
   over the same model, batches and optimizer (goal <= 1.15x), and the attentive probe end to end against its floor
   (one token-feature pass + the head's training, timed separately; goal <= 1.5x); each phase repeated and the minimum
   taken. Fine-tuning records/s per encoder at cpu_small on this CPU.

`--sections` runs some of them; the figures of the others are kept from results/perf.json, each section saying when
it was measured.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.data.cache import prepare  # noqa: E402
from bench.data.demo import ensure_demo  # noqa: E402
from bench.data.preprocess import PreprocessConfig  # noqa: E402
from bench.data.ptbxl import PTBXLReader  # noqa: E402

ENCODERS = ["merit", "stmem", "merl", "d_beta", "ecg_fm", "signal_stats"]


def data_prep(work: Path, n: int) -> dict:
    root = ensure_demo("ptbxl", work / "demo", n, seed=0, progress=False)
    reader = PTBXLReader("perf", root, {"sampling_rate": 500})
    reader.index
    t = time.perf_counter()
    prepare(reader, PreprocessConfig(), work / "cache", progress=False)
    cold = time.perf_counter() - t
    t = time.perf_counter()
    prepare(reader, PreprocessConfig(), work / "cache", progress=False)
    warm = time.perf_counter() - t
    return {"records": n, "cold_s": cold, "cold_rec_per_s": n / cold, "warm_s": warm, "warm_rec_per_s": n / warm}


def _embed_child(name: str, n: int, queue) -> None:
    from bench.encoders import create_encoder

    torch.manual_seed(0)
    enc = create_encoder(name, preset="cpu_small", text={"kind": "none"}) if name in ("merl", "d_beta") else \
        create_encoder(name, preset="cpu_small", text={"kind": "hashing", "force_kind": True}) if name.startswith("merit") else create_encoder(name)
    enc.eval()
    spec = enc.spec
    x = torch.randn(n, 12, spec.n_samples)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    with torch.no_grad():
        for s in range(0, n, 128):
            enc.embed(x[s:s + 128])
    dt = time.perf_counter() - t
    queue.put({"encoder": name, "input": f"{spec.fs:g} Hz x {spec.seconds:g} s", "params_M": spec.n_params / 1e6,
               "rec_per_s": n / dt, "peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_before_MB": base})


def embeddings(n: int) -> list[dict]:
    out = []
    ctx = mp.get_context("spawn")
    for name in ENCODERS:
        q = ctx.Queue()
        p = ctx.Process(target=_embed_child, args=(name, n, q))
        p.start()
        out.append(q.get())
        p.join()
    return out


def linear_cost(epochs_naive: int, quick: bool) -> dict:
    from bench.config import load_config
    from bench.data.registry import open_from_config
    from bench.encoders.embeddings import encode_arrays
    from bench.encoders.loading import load_encoder
    from bench.suites.linear import HeadConfig, train_heads
    from bench.suites.protocols import protocol_splits

    dataset = "ptbxl_1819" if (ROOT.parent / "shared/data/ptbxl_1819").is_dir() else "demo_ptbxl"
    cfg = load_config(data=dataset)
    reader = open_from_config(cfg)
    index = reader.index
    pcfg = PreprocessConfig()
    with tempfile.TemporaryDirectory() as tmp:
        prepared = prepare(reader, pcfg, tmp, progress=False)
        signals = np.asarray(prepared.signals)
    handle = load_encoder("merit", {"preset": "cpu_small", "text": {"kind": "hashing", "force_kind": True}})
    head = HeadConfig(epochs=20 if quick else 100)
    tasks = ["super", "sub", "form", "rhythm"]
    where = {r: i for i, r in enumerate(prepared.record_ids)}
    # floor: one embedding pass, then the heads (timed separately)
    t = time.perf_counter()
    emb, _ = encode_arrays(handle, signals, index.units)
    t_embed = time.perf_counter() - t
    t = time.perf_counter()
    for task in tasks:
        labels = index.task(task).labels
        y = labels.reindex(prepared.record_ids, fill_value=0).to_numpy()
        splits = protocol_splits(index.records, labels, "cv10")
        train_heads(emb, y, [([where[r] for r in s.train], [where[r] for r in s.val]) for s in splits], head)
    t_heads = time.perf_counter() - t
    # the harness end to end: embed + write the embedding cache + heads + predictions
    t = time.perf_counter()
    emb2, _ = encode_arrays(handle, signals, index.units)
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "emb.npz", emb=emb2)
        emb2 = np.load(Path(tmp) / "emb.npz")["emb"]
    for task in tasks:
        labels = index.task(task).labels
        y = labels.reindex(prepared.record_ids, fill_value=0).to_numpy()
        splits = protocol_splits(index.records, labels, "cv10")
        trained = train_heads(emb2, y, [([where[r] for r in s.train], [where[r] for r in s.val]) for s in splits], head)
        for h, s in enumerate(splits):
            trained.predict(emb2[[where[r] for r in s.test]], h)
    t_harness = time.perf_counter() - t
    # naive: re-encode each batch every epoch, one fold at a time (a few epochs of fold 1 per task, scaled)
    enc = handle.encoder
    t = time.perf_counter()
    steps_measured = 0
    for task in tasks:
        labels = index.task(task).labels
        y = torch.tensor(labels.reindex(prepared.record_ids, fill_value=0).to_numpy(), dtype=torch.float32)
        split = protocol_splits(index.records, labels, "cv10")[0]
        rows = np.array([where[r] for r in split.train])
        lin = torch.nn.Linear(enc.spec.embed_dim, y.shape[1])
        opt = torch.optim.AdamW(lin.parameters(), lr=1e-3)
        for _ in range(epochs_naive):
            for s in range(0, len(rows), 64):
                idx = rows[s:s + 64]
                with torch.no_grad():
                    z = enc.embed(signals[idx])[0]
                loss = torch.nn.functional.binary_cross_entropy_with_logits(lin(z), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                steps_measured += 1
            with torch.no_grad():
                val = np.array([where[r] for r in split.val])
                enc.embed(signals[val])
    t_naive_measured = time.perf_counter() - t
    scale = (head.epochs / epochs_naive) * 10  # all epochs, all ten folds
    t_naive = t_naive_measured * scale
    return {"dataset": dataset, "records": len(prepared.record_ids), "head_epochs": head.epochs, "embed_s": t_embed,
            "heads_s": t_heads, "floor_s": t_embed + t_heads, "harness_s": t_harness, "harness_over_floor": t_harness / (t_embed + t_heads),
            "naive_measured_s": t_naive_measured, "naive_epochs_measured": epochs_naive, "naive_s_extrapolated": t_naive,
            "naive_over_harness": t_naive / t_harness}


def determinism(work: Path) -> dict:
    outs = []
    for k in range(2):
        store = work / f"store{k}"
        ov = [f"paths.results={store}", f"tracking.uri=sqlite:///{store}/mlflow.db", f"paths.cache={work}/detcache",
              "data.demo.n_records=300", "linear.epochs=20"]
        subprocess.run([sys.executable, "-m", "bench.cli", "run", "--suite", "linear", "--methods", "signal_stats,random",
                        "--tasks", "super,rhythm", *ov], check=True, capture_output=True, cwd=ROOT)
        subprocess.run([sys.executable, "-m", "bench.cli", "leaderboard", "--out", str(store / "lb.csv"), *ov], check=True,
                       capture_output=True, cwd=ROOT)
        outs.append((store / "lb.csv").read_text())
    return {"identical": outs[0] == outs[1], "rows": len(outs[0].splitlines()) - 1}


def _views_and_labels(dataset: str, cache: Path, n: int | None = None):
    """A dataset's prepared records as merit cpu_small's views, the super task's labels and its fixed split rows."""
    from bench.config import load_config
    from bench.data.registry import open_from_config
    from bench.encoders.loading import load_encoder
    from bench.suites.modes import views_of
    from bench.suites.protocols import protocol_splits

    cfg = load_config(data=dataset)
    reader = open_from_config(cfg)
    index = reader.index
    handle = load_encoder("merit", {"preset": "cpu_small", "text": {"kind": "hashing", "force_kind": True}})
    prepared = prepare(reader, PreprocessConfig(), cache, progress=False)
    labels = index.task("super").labels
    split = protocol_splits(index.records, labels, "fixed")[0]
    ids = (split.train[:n] if n else split.train) + split.val
    views = views_of(prepared.signals, handle.encoder.contract, prepared.rows(ids))
    y = labels.reindex(ids, fill_value=0).to_numpy().astype(np.int8)
    n_train = len(ids) - len(split.val)
    return handle, views, y, np.arange(n_train), np.arange(n_train, len(ids)), index, prepared


def modes_cost(work: Path, repeats: int = 3, epochs: int = 2) -> dict:
    """Fine-tuning: the harness's epoch against a bare loop over the same model, batches and optimizer; attentive: the
    harness against its floor. Each measured ``repeats`` times, the minimum kept (a noisy machine does not decide)."""
    import copy

    from bench.suites.modes import ModeConfig, Tuned, fit_attentive, fit_tuned, macro_auroc, param_groups, predict_tuned

    dataset = "ptbxl_1819" if (ROOT.parent / "shared/data/ptbxl_1819").is_dir() else "demo_ptbxl"
    handle, views, y, train, val, index, prepared = _views_and_labels(dataset, work / "modes-cache")
    cfg = ModeConfig("finetune", epochs=epochs)

    def harness() -> float:
        t = time.perf_counter()
        fit_tuned(handle.encoder, views, y, train, val, cfg, seed=0)
        return time.perf_counter() - t

    def bare() -> float:  # what a researcher's own loop does: the same model, batches, optimizer, and a val pass per epoch
        torch.manual_seed(0)
        model = Tuned(copy.deepcopy(handle.encoder), y.shape[1])
        opt = torch.optim.Adam(param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        t = time.perf_counter()
        for epoch in range(epochs):
            model.train()
            order = np.random.default_rng([0, epoch]).permutation(len(train))
            for s in range(0, len(train), cfg.batch_size):
                rows = train[order[s:s + cfg.batch_size]]
                loss = loss_fn(model(torch.as_tensor(views[rows, 0])), torch.as_tensor(y[rows], dtype=torch.float32))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            macro_auroc(y[val], predict_tuned(model, views, val))
        return time.perf_counter() - t

    t_harness = min(harness() for _ in range(repeats))
    t_bare = min(bare() for _ in range(repeats))
    # attentive: floor = one token pass + the head's training; harness = both through the cached token features
    from bench.encoders.embeddings import EncodeSettings, cached_token_features, _encode_tokens

    att = ModeConfig("attentive", epochs=epochs * 5)
    ids = prepared.record_ids
    rows = {r: i for i, r in enumerate(ids)}

    def floor() -> tuple[float, float]:
        t = time.perf_counter()
        x = np.asarray(prepared.signals)
        tokens = np.concatenate([_encode_tokens(handle.encoder, torch.as_tensor(handle.encoder.contract.views(x[s:s + 256])))
                                 .numpy().astype(np.float16) for s in range(0, len(x), 256)])
        t_tokens = time.perf_counter() - t
        labels = index.task("super").labels.reindex(ids, fill_value=0).to_numpy()
        t = time.perf_counter()
        fit_attentive(tokens, labels, np.array([rows[r] for r in ids[:len(train)]]), np.array([rows[r] for r in ids[len(train):]]),
                      att, 0)
        return t_tokens, time.perf_counter() - t

    def attentive_harness() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            feats = cached_token_features(handle, prepared, tmp, EncodeSettings(), progress=False)
            labels = index.task("super").labels.reindex(feats.record_ids, fill_value=0).to_numpy()
            fit_attentive(feats.tokens, labels, np.arange(len(train)), np.arange(len(train), len(ids)), att, 0)
            return time.perf_counter() - t

    floors = [floor() for _ in range(repeats)]
    t_floor = min(a + b for a, b in floors)
    t_att = min(attentive_harness() for _ in range(repeats))
    per_encoder = [_finetune_rate(name) for name in ("merit", "stmem", "ecgfounder", "ecg_fm", "hubert_ecg")]
    return {"dataset": dataset, "train_records": len(train), "val_records": len(val), "epochs": epochs, "repeats": repeats,
            "finetune_harness_s": t_harness, "finetune_bare_s": t_bare, "finetune_ratio": t_harness / t_bare,
            "finetune_harness_rec_per_s": epochs * len(train) / t_harness, "finetune_bare_rec_per_s": epochs * len(train) / t_bare,
            "attentive_floor_s": t_floor, "attentive_harness_s": t_att, "attentive_ratio": t_att / t_floor,
            "attentive_epochs": att.epochs, "finetune_rates": per_encoder}


def _finetune_rate(name: str, n: int = 256, batch: int = 32) -> dict:
    """Training records/s of one fine-tuning epoch of ``name`` at cpu_small (synthetic views, CPU, float32)."""
    from bench.encoders import create_encoder
    from bench.suites.modes import ModeConfig, Tuned, param_groups

    torch.manual_seed(0)
    enc = create_encoder(name, preset="cpu_small", **({"text": {"kind": "none"}} if name in ("merl", "d_beta", "melp") else
                                                      {"text": {"kind": "hashing", "force_kind": True}} if name.startswith("merit") else {}))
    c = enc.contract
    x = torch.as_tensor(c.views(np.random.default_rng(0).normal(size=(n, len(c.leads), c.n_samples)).astype(np.float32))[:, 0])
    model = Tuned(enc, 5)
    opt = torch.optim.Adam(param_groups(model, ModeConfig("finetune")))
    y = torch.zeros(n, 5)
    t = time.perf_counter()
    for s in range(0, n, batch):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x[s:s + batch]), y[s:s + batch])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return {"encoder": name, "params_M": enc.n_params() / 1e6, "rec_per_s": n / (time.perf_counter() - t)}


SECTIONS = ("prep", "embeddings", "linear", "determinism", "modes")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=500)
    ap.add_argument("--naive-epochs", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="20 head epochs instead of 100")
    ap.add_argument("--out", default=str(ROOT / "results" / "perf.md"))
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    args = ap.parse_args()
    from tabulate import tabulate

    from bench import code_version

    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    previous = Path(args.out).with_suffix(".json")
    figures = json.loads(previous.read_text()) if previous.is_file() else {}
    figures = {k: v if isinstance(v, dict) and "figures" in v else {"measured": "in an earlier round (git log results/perf.json)",
                                                                    "figures": v} for k, v in figures.items()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run = {"prep": lambda: data_prep(work, args.records), "embeddings": lambda: embeddings(512),
               "linear": lambda: linear_cost(args.naive_epochs, args.quick), "determinism": lambda: determinism(work),
               "modes": lambda: modes_cost(work)}
        for name in wanted:
            t0 = time.perf_counter()
            result = run[name]()
            figures[name] = {"measured": f"{time.strftime('%Y-%m-%d')} at {code_version()}, {time.perf_counter() - t0:.0f} s",
                             "figures": result}
    prep, emb, lin, det, modes = (figures.get(k, {}).get("figures") for k in SECTIONS)
    lines = ["# Performance (measured by `python benchmarks/perf.py`)", "",
             f"Machine: {os.cpu_count()} CPU cores, torch {torch.__version__}, CUDA {'yes' if torch.cuda.is_available() else 'no'}.", "", "## Data preparation (PTB-XL layout, 500 Hz WFDB -> 100 Hz cache)", "",
             tabulate([[prep["records"], f"{prep['cold_s']:.1f}", f"{prep['cold_rec_per_s']:.0f}", f"{prep['warm_s']:.3f}",
                        f"{prep['warm_rec_per_s']:.0f}"]], headers=["records", "cold s", "cold rec/s", "warm s", "warm rec/s"],
                      tablefmt="github"), "", "## Embeddings (cpu_small presets, 512 records, batch 128, fresh process each)", "",
             tabulate([[e["encoder"], e["input"], f"{e['params_M']:.2f}", f"{e['rec_per_s']:.0f}", f"{e['peak_rss_MB']:.0f}",
                        f"{e['rss_before_MB']:.0f}"] for e in emb],
                      headers=["encoder", "input", "params (M)", "records/s", "peak RSS MB", "RSS before encoding MB"], tablefmt="github"),
             "", f"## Linear suite: 10 folds x 4 tasks on {lin['dataset']} ({lin['records']} records), head {lin['head_epochs']} epochs, merit cpu_small", "",
             tabulate([["floor: one embedding pass", f"{lin['embed_s']:.1f}"], ["floor: heads (batched over folds)", f"{lin['heads_s']:.1f}"],
                       ["floor total", f"{lin['floor_s']:.1f}"], ["harness end to end", f"{lin['harness_s']:.1f}"],
                       [f"naive, measured ({lin['naive_epochs_measured']} epochs x fold 1 x 4 tasks)", f"{lin['naive_measured_s']:.1f}"],
                       ["naive, scaled to all epochs and folds", f"{lin['naive_s_extrapolated']:.0f}"]], headers=["what", "seconds"],
                      tablefmt="github"), "",
             f"- harness / floor = **{lin['harness_over_floor']:.2f}x** (target <= 1.5x)",
             f"- naive / harness = **{lin['naive_over_harness']:.0f}x** (the naive cost is scaled linearly from the measured epochs)", "",
             "## Determinism", "", f"- the same `bench run` twice into two stores: leaderboard rows identical = **{det['identical']}** "
             f"({det['rows']} rows)", ""]
    if modes:
        lines += [f"## Evaluation modes on {modes['dataset']} super ({modes['train_records']} training / {modes['val_records']} "
                  f"validation records, merit cpu_small; minimum of {modes['repeats']} repeats)", "",
                  tabulate([["fine-tuning, bare PyTorch loop", f"{modes['finetune_bare_s']:.1f}", f"{modes['finetune_bare_rec_per_s']:.0f}"],
                            ["fine-tuning, harness (fit_tuned)", f"{modes['finetune_harness_s']:.1f}",
                             f"{modes['finetune_harness_rec_per_s']:.0f}"],
                            ["attentive, floor (token pass + head)", f"{modes['attentive_floor_s']:.1f}", ""],
                            ["attentive, harness (cached tokens + head)", f"{modes['attentive_harness_s']:.1f}", ""]],
                           headers=["what", f"seconds ({modes['epochs']} fine-tuning / {modes['attentive_epochs']} head epochs)",
                                    "training records/s"], tablefmt="github"), "",
                  f"- fine-tuning harness / bare loop = **{modes['finetune_ratio']:.2f}x** (goal <= 1.15x)",
                  f"- attentive harness / floor = **{modes['attentive_ratio']:.2f}x** (goal <= 1.5x)", "",
                  "Fine-tuning throughput at cpu_small on this CPU (one epoch of 256 synthetic records, batch 32, float32):", "",
                  tabulate([[r["encoder"], f"{r['params_M']:.2f}", f"{r['rec_per_s']:.0f}"] for r in modes["finetune_rates"]],
                           headers=["encoder", "params (M)", "training records/s"], tablefmt="github"), "",
                  "No GPU was lent to this run: the official presets in bf16 on CUDA were not measured.", ""]
    lines += ["Sections measured: " + "; ".join(f"{k} {v['measured']}" for k, v in figures.items()), ""]
    text = "\n".join(lines)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    previous.write_text(json.dumps(figures, indent=1, default=float))


if __name__ == "__main__":
    main()
