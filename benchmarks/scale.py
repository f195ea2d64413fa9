"""Paper-scale data path, measured in one run on this machine; writes results/scale.md and results/scale.json.
Not a test: `python benchmarks/scale.py [--pools 10000,50000,200000] [--steps 200] [--prep-records 5000]`.

1. Pretraining (merit, cpu_small, batch 128) streamed from synthetic prepared pools written straight into
   the cache's memmap format: samples/s and peak RSS of a fresh process per pool, the same number of
   steps from each, in two rounds of opposite order (small->large, large->small; throughput on a shared
   2-core machine drifts by several percent between processes); ratios largest/smallest pool.
2. Preparation of a generated PTB-XL-layout WFDB tree (500 Hz -> 100 Hz) with 1 and 2 workers (records/s,
   byte-identity of the two results) and the warm-cache time.
3. The encoding pass: records/s per cpu_small encoder (random weights; throughput does not depend on them).
4. Text generation (default CPU preset, SmolLM2): peak RSS and seconds of one training epoch (two steps of
   batch 16) plus generation, with the LLM's own full-logits ``labels=`` loss as before this change
   (no activation checkpointing, glibc's default malloc) against the bounded-memory loss now.
5. With CUDA: the same pretraining and encoding figures for the methods' largest presets, with GPU memory.
Every figure comes from a fresh subprocess so peak RSS is that measurement's own.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CPU_SMALL = ["merit", "merit_mse", "merit_cma", "merit_ib", "stmem", "merl", "d_beta", "ecg_fm", "ecgfounder", "ecgjepa", "hubert_ecg",
             "melp", "signal_stats"]
PHRASES = ["sinus rhythm", "atrial fibrillation", "left bundle branch block", "normal ECG", "ST elevation", "sinus bradycardia"]


def peak_rss_gb() -> float:
    """Peak resident memory of this process image (VmHWM). Not ``ru_maxrss``: Linux carries the parent's
    high-water mark across fork and exec into it, so a child started by a parent that had just written a
    pool would report the parent's peak."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


# ---- children (each runs in its own process) ------------------------------------------------------------
def synthetic_pool(folder: Path, n: int, n_samples: int = 1000) -> Path:
    """[n, 12, n_samples] float32 written block by block into ``folder/signals.npy`` (the prepared-cache format)."""
    done = folder / "DONE"
    if done.is_file():
        return folder / "signals.npy"
    folder.mkdir(parents=True, exist_ok=True)
    out = np.lib.format.open_memmap(folder / "signals.npy", mode="w+", dtype=np.float32, shape=(n, 12, n_samples))
    rng = np.random.default_rng(n)
    for s in range(0, n, 2000):
        block = rng.standard_normal((min(2000, n - s), 12, n_samples), dtype=np.float32)
        out[s:s + len(block)] = block * 0.3
    out.flush()
    del out
    done.write_text(str(n))
    return folder / "signals.npy"


def child_pretrain(pool_file: Path, steps: int, method: str, preset: str, batch: int) -> dict:
    import torch

    from bench.data.loader import Rows, Texts
    from bench.encoders import create_encoder
    from bench.encoders.pretrain import PretrainConfig, PretrainPool, pretrain

    rows = Rows(pool_file)
    n = len(rows)
    texts = Texts([f"{PHRASES[i % 6]}, {PHRASES[(i * 7) % 6]}" for i in range(n)])
    torch.manual_seed(0)
    model = create_encoder(method, preset=preset)
    stamps: list[float] = []

    class Enough(Exception):
        pass

    def on_step(step: int) -> None:
        stamps.append(time.perf_counter())
        if step + 1 >= steps:
            raise Enough

    rss_before = peak_rss_gb()
    with tempfile.TemporaryDirectory() as out:
        try:
            epochs = -(-steps // max(1, n // batch))  # enough epochs for ``steps`` (the schedule does not change the speed)
            pretrain(model, rows, texts, PretrainConfig(epochs=epochs, batch_size=batch), out, pool=PretrainPool("synthetic", [str(i) for i in range(n)]),
                     encoder_config={"name": method, "preset": preset}, progress=False, on_step=on_step)
        except Enough:
            pass
    timed = np.diff(stamps[9:])  # steps 10.. (warm-up excluded)
    out = {"pool": n, "pool_GB": round(n * 12 * rows.row_shape[-1] * 4 / 1e9, 2), "steps": len(stamps), "batch": batch,
           "samples_per_s": batch / float(timed.mean()), "peak_rss_GB": peak_rss_gb(), "rss_after_setup_GB": rss_before}
    if torch.cuda.is_available():
        out["gpu_peak_GB"] = torch.cuda.max_memory_allocated() / 1e9
    return out


def child_prepare(root: Path, cache: Path, workers: int) -> dict:
    from bench.data.cache import prepare
    from bench.data.preprocess import PreprocessConfig
    from bench.data.ptbxl import PTBXLReader

    reader = PTBXLReader("scale", root, {"sampling_rate": 500})
    n = len(reader.index.records)  # the index is read before the clock starts
    t = time.perf_counter()
    prepared = prepare(reader, PreprocessConfig(), cache, progress=False, workers=workers)
    cold = time.perf_counter() - t
    digest = hashlib.sha256((prepared.path / "signals.npy").read_bytes()).hexdigest()[:16]
    t = time.perf_counter()
    again = prepare(PTBXLReader("scale", root, {"sampling_rate": 500}), PreprocessConfig(), cache, progress=False, workers=workers)
    warm = time.perf_counter() - t
    assert again.path == prepared.path
    return {"workers": workers, "records": n, "cold_s": cold, "rec_per_s": n / cold, "warm_s": warm, "signals_sha256": digest,
            "peak_rss_GB": peak_rss_gb()}


def child_embed(method: str, preset: str, n: int, scratch: Path) -> dict:
    import torch

    from bench.data.loader import Rows
    from bench.encoders.embeddings import EncodeSettings, encode_arrays
    from bench.encoders.loading import load_encoder

    options = {"preset": preset} if method != "signal_stats" else {}
    handle = load_encoder(method, options)
    spec = handle.encoder.spec
    rows = Rows(synthetic_pool(scratch / f"embed-{n}-{spec.n_samples}", n, spec.n_samples))
    settings = EncodeSettings()
    encode_arrays(handle, Rows(rows.path, np.arange(64)), "mV", settings)  # warm-up
    t = time.perf_counter()
    emb, _ = encode_arrays(handle, rows, "mV", settings)
    dt = time.perf_counter() - t
    out = {"encoder": method, "preset": preset or "-", "input": f"{spec.fs:g} Hz x {spec.seconds:g} s", "params_M": spec.n_params / 1e6,
           "records": n, "rec_per_s": n / dt, "loader_workers": settings.loader.n_workers(), "precision": settings.precision,
           "peak_rss_GB": peak_rss_gb()}
    if torch.cuda.is_available():
        out["gpu_peak_GB"] = torch.cuda.max_memory_allocated() / 1e9
    return out


def child_textgen(mode: str) -> dict:
    from omegaconf import OmegaConf

    from bench.suites import textgen

    if mode == "full_logits":  # the loss as it was: the LLM's own labels= loss, activations stored, default malloc
        import bench.memory

        bench.memory.return_freed_memory = lambda: False

        class FullLogits(textgen.PrefixLM):
            def __init__(self, *a, **k):
                super().__init__(*a, **k)
                self.llm.get_base_model().gradient_checkpointing_disable()

            def loss(self, examples, emb, max_length):
                inputs, mask, labels = self.batch(examples, emb, max_length)
                return self.llm(inputs_embeds=inputs, attention_mask=mask, labels=labels).loss

        textgen.PrefixLM = FullLogits
    cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "configs/protocols/textgen.yaml"))
    cfg["epochs"] = 1
    answer = ("Rhythm: sinus rhythm. Conduction: normal. Morphology: non-specific ST changes, left ventricular hypertrophy. "
              "Impression: abnormal ECG: hypertrophy, ST/T change.")
    train = [textgen.Example(str(i), cfg["instructions"][i % 4], answer) for i in range(2 * cfg["batch_size"])]
    test = [textgen.Example(f"t{i}", cfg["instructions"][i % 4], answer) for i in range(4)]
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    _, losses = textgen.train_and_generate(cfg, rng.normal(size=(len(train), 128)).astype(np.float32), train,
                                           rng.normal(size=(4, 128)).astype(np.float32), test, seed=0)
    return {"mode": mode, "peak_rss_GB": peak_rss_gb(), "seconds": time.perf_counter() - t, "losses": losses,
            "batch": cfg["batch_size"], "llm": cfg["llm"]["kind"]}


CHILDREN = {"pretrain": child_pretrain, "prepare": child_prepare, "embed": child_embed, "textgen": child_textgen}


def run_child(kind: str, **kwargs) -> dict:
    """One measurement in a fresh interpreter; its JSON result is the last line it prints."""
    args = json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in kwargs.items()})
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, __file__, "--child", kind, "--args", args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} {kwargs} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  {kind}: {result}", flush=True)
    return result


# ---- report ---------------------------------------------------------------------------------------------
def table(rows: list[dict], cols: list[tuple[str, str, str]]) -> str:
    from tabulate import tabulate

    return tabulate([[format(r.get(k, float("nan")), f) if f else r.get(k, "") for _, k, f in cols] for r in rows],
                    headers=[h for h, _, _ in cols], tablefmt="github")


def pretrain_section(pre: list[dict], res: dict) -> list[str]:
    small, large = pre[0], pre[-1]
    return [
        f"## Pretraining streamed from the prepared cache (merit, cpu_small, batch {small['batch']}, {small['steps']} steps per pool)",
        "",
        "Synthetic pools written straight into the cache's memmap format (12 leads x 1,000 samples, float32); texts",
        "are looked up per index. Samples/s over steps 10 onward, two rounds (small->large, then large->small);",
        "peak RSS of the whole process. The pool files total more than half the machine's memory, so not all of",
        "the largest stays in the OS page cache.",
        "",
        table([{**r, "rounds": " / ".join(f"{v:.1f}" for v in r.get("samples_per_s_rounds", []))} for r in pre],
              [("pool records", "pool", ",d"), ("pool on disk (GB)", "pool_GB", ".2f"), ("samples/s (mean)", "samples_per_s", ".1f"),
               ("samples/s per round", "rounds", ""), ("peak RSS (GB, max)", "peak_rss_GB", ".2f")]),
        "",
        f"- RSS ratio {large['pool']:,}/{small['pool']:,}: **{large['peak_rss_GB'] / small['peak_rss_GB']:.2f}** (goal <= 1.3)",
        f"- samples/s ratio {large['pool']:,}/{small['pool']:,}: **{large['samples_per_s'] / small['samples_per_s']:.2f}** (goal >= 0.9)",
        f"- the {large['pool']:,}-record pool ({large['pool_GB']:.1f} GB of signals) trains in {large['peak_rss_GB']:.2f} GB RSS (goal < 4 GB)",
    ]


def prepare_section(prep: list[dict], res: dict) -> list[str]:
    return [
        f"## Preparation ({prep[0]['records']:,} generated WFDB records, PTB-XL layout, 500 Hz -> 100 Hz)",
        "",
        "Cold = no prepared cache (the WFDB files are in the OS page cache after generation; the index is read before",
        "the clock starts); warm = a fresh reader finding the finished entry (index read included).",
        "",
        table(prep, [("workers", "workers", "d"), ("records/s", "rec_per_s", ".1f"), ("cold (s)", "cold_s", ".1f"),
                     ("warm (s)", "warm_s", ".2f"), ("signals.npy sha256", "signals_sha256", "")]),
        "",
        f"- speed-up with 2 workers on {res['cores']} cores: **{prep[1]['rec_per_s'] / prep[0]['rec_per_s']:.2f}x** (goal >= 1.7x); "
        f"outputs byte-identical: {'yes' if prep[0]['signals_sha256'] == prep[1]['signals_sha256'] else 'NO'}",
    ]


def embed_section(emb: list[dict], res: dict) -> list[str]:
    return [
        f"## Encoding pass (cpu_small presets, random weights, {emb[0]['records']:,} records, batch 256)",
        "",
        table(emb, [("encoder", "encoder", ""), ("input", "input", ""), ("params (M)", "params_M", ".2f"),
                    ("records/s", "rec_per_s", ".0f"), ("loader workers", "loader_workers", "d"), ("precision", "precision", ""),
                    ("peak RSS (GB)", "peak_rss_GB", ".2f")]),
    ]


def textgen_section(rows: list[dict], res: dict) -> list[str]:
    tg = {r["mode"]: r for r in rows}
    before, after = tg["full_logits"], tg["bounded"]
    return [
        f"## Text generation, default CPU preset ({after['llm']}, batch {after['batch']}, one epoch of two steps + generation)",
        "",
        table([before, after], [("loss computation", "mode", ""), ("peak RSS (GB)", "peak_rss_GB", ".2f"), ("seconds", "seconds", ".0f")]),
        "",
        f"- step losses before {[round(x, 5) for x in before['losses']]}, after {[round(x, 5) for x in after['losses']]}",
        "- full_logits = the LLM's own `labels=` loss over [batch, sequence, vocabulary] logits with stored activations and",
        "  glibc's default malloc (the suite before this change); bounded = answer positions only, chunked and checkpointed",
        "  cross-entropy, decoder layers recomputed in the backward pass, glibc's mmap threshold fixed (bench/memory.py).",
    ]


def gpu_section(gpu: dict | None, res: dict) -> list[str]:
    if not gpu:
        return ["## GPU", "", "No GPU was available to this run; the official-preset figures on a GPU are not measured here."]
    return [f"## GPU: {gpu['device']}", "",
            table(gpu["pretrain"], [("method", "method", ""), ("preset", "preset", ""), ("samples/s", "samples_per_s", ".1f"),
                                    ("GPU peak (GB)", "gpu_peak_GB", ".2f")]), "",
            table(gpu["embed"], [("encoder", "encoder", ""), ("preset", "preset", ""), ("records/s", "rec_per_s", ".0f"),
                                 ("precision", "precision", ""), ("GPU peak (GB)", "gpu_peak_GB", ".2f")])]


SECTIONS = {"pretrain": pretrain_section, "prepare": prepare_section, "embed": embed_section, "textgen": textgen_section}


def write_report(res: dict, out: Path) -> None:
    lines = ["# Scale: streaming pretraining, parallel preparation, encoding, bounded text generation", "",
             f"Measured by `python benchmarks/scale.py` on {res['machine']} at commit `{res['code_version']}` "
             f"({res['date']}); each figure from a fresh process. Regenerate with the same command.", ""]
    for name, section in SECTIONS.items():
        if name in res:
            lines += section(res[name], res) + [""]
    lines += gpu_section(res.get("gpu"), res) + [""]
    out.write_text("\n".join(lines))
    out.with_suffix(".json").write_text(json.dumps(res, indent=1))


GPU_PRESETS = {"merit": "paper", "stmem": "official", "merl": "official", "d_beta": "official", "ecg_fm": "official"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child")
    ap.add_argument("--args", default="{}")
    ap.add_argument("--pools", default="10000,50000,200000")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--prep-records", type=int, default=5000)
    ap.add_argument("--embed-records", type=int, default=2048)
    ap.add_argument("--scratch", default=os.environ.get("BENCH_SCALE_SCRATCH", "/tmp/bench-scale"))
    ap.add_argument("--out", default=str(ROOT / "results" / "scale.md"))
    ap.add_argument("--skip", default="", help="comma list of sections to skip (trial runs; the report needs all four)")
    a = ap.parse_args()
    if a.child:
        kwargs = json.loads(a.args)
        kwargs = {k: Path(v) if k in ("pool_file", "root", "cache", "scratch") else v for k, v in kwargs.items()}
        print(json.dumps(CHILDREN[a.child](**kwargs)))
        return
    import torch

    from bench import code_version
    from bench.data.cache import default_workers

    scratch = Path(a.scratch)
    skip = set(filter(None, a.skip.split(",")))
    res = {"machine": f"{platform.machine()}, {default_workers()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
                      f"torch {torch.__version__}", "cores": default_workers(), "code_version": code_version(),
           "date": time.strftime("%Y-%m-%d")}
    if "pretrain" not in skip:
        print("pretraining", flush=True)
        pools = list(map(int, a.pools.split(",")))
        files = {n: synthetic_pool(scratch / f"pool-{n}", n) for n in pools}
        rounds = {n: [] for n in pools}
        for n in pools + pools[::-1]:
            rounds[n].append(run_child("pretrain", pool_file=files[n], steps=a.steps, method="merit", preset="cpu_small", batch=128))
        res["pretrain"] = [{**runs[0], "samples_per_s": float(np.mean([r["samples_per_s"] for r in runs])),
                            "samples_per_s_rounds": [r["samples_per_s"] for r in runs],
                            "peak_rss_GB": max(r["peak_rss_GB"] for r in runs)} for runs in rounds.values()]
    if "prepare" not in skip:
        print("preparation", flush=True)
        from bench.data.demo import ensure_demo

        root = ensure_demo("ptbxl", scratch / f"wfdb-{a.prep_records}", a.prep_records, seed=0, progress=False)
        res["prepare"] = []
        for workers in (1, 2):
            cache = scratch / f"prep-cache-{workers}"
            subprocess.run(["rm", "-rf", str(cache)], check=True)
            res["prepare"].append(run_child("prepare", root=root, cache=cache, workers=workers))
    if "embed" not in skip:
        print("encoding", flush=True)
        res["embed"] = [run_child("embed", method=m, preset="cpu_small" if m != "signal_stats" else "", n=a.embed_records, scratch=scratch)
                        for m in CPU_SMALL]
    if "textgen" not in skip:
        print("text generation", flush=True)
        res["textgen"] = [run_child("textgen", mode=m) for m in ("full_logits", "bounded")]
    if torch.cuda.is_available():
        print("GPU", flush=True)
        res["gpu"] = {"device": torch.cuda.get_device_name(0),
                      "pretrain": [{"method": m, "preset": p, **run_child("pretrain", pool_file=synthetic_pool(scratch / "pool-10000", 10000),
                                                                          steps=50, method=m, preset=p, batch=128)}
                                   for m, p in GPU_PRESETS.items() if m == "merit"],
                      "embed": [run_child("embed", method=m, preset=p, n=a.embed_records, scratch=scratch) for m, p in GPU_PRESETS.items()]}
    write_report(res, Path(a.out))
    print(Path(a.out).read_text())


if __name__ == "__main__":
    main()
