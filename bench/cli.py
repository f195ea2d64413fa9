"""The `bench` command line: it only composes configs and wires the packages together."""

from __future__ import annotations

import math
import sys
from typing import List, Optional

import typer

# light imports only: each command imports what it uses (torch, MLflow, Hydra's composition load on first use)
from bench.config import ConfigError, available, cache_dir, encoder_options, load_config, normalise_overrides, workspace
from bench.data.errors import DataError
from bench.errors import BenchError
from bench.files import atomic_path

def tabulate(*args, **kwargs) -> str:
    """tabulate's table, imported by the commands that print one."""
    from tabulate import tabulate as table

    return table(*args, **kwargs)


app = typer.Typer(help="Reproducible benchmark harness for ECG representation learning.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Datasets: list, prepare (cache), verify, download.", no_args_is_help=True)
app.add_typer(data_app, name="data")
runs_app = typer.Typer(help="What the MLflow store holds.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
encoders_app = typer.Typer(help="Encoders: the registry of methods behind the Encoder interface.", no_args_is_help=True)
app.add_typer(encoders_app, name="encoders")
models_app = typer.Typer(help="Released weights: where each model card says they are published, and pulling them into the cache.",
                         no_args_is_help=True)
app.add_typer(models_app, name="models")
suites_app = typer.Typer(help="Suites: the registry of evaluations `bench run --suite` runs (plugins: entry-point group bench.suites).",
                         no_args_is_help=True)
app.add_typer(suites_app, name="suites")
splits_app = typer.Typer(help="Splits: each task's record ids per split, fold and label draw, as files with their hashes.",
                         no_args_is_help=True)
app.add_typer(splits_app, name="splits")


OVERRIDES = {"allow_extra_args": True, "ignore_unknown_options": True}
OVERRIDE_HELP = "Extra KEY=VALUE arguments override any config value (e.g. data.root=/path preprocess.target_fs=250)."
TRUST_HELP = ("unpickle checkpoint files that hold objects outside their model card's allow-list, which can run code "
              "from the file: only for files you trust; every row then records trust_checkpoint_code=yes")


def _say_workspace(cfg) -> None:
    """Where this command's runs and outputs go (never the publication in results/); an unusable one stops here."""
    from bench.config import check_workspace

    check_workspace(cfg)
    typer.secho(f"workspace: {workspace(cfg)} (BENCH_HOME moves it)", fg=typer.colors.BRIGHT_BLACK, err=True)


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _guarded(fn):
    """Turn the harness's own errors into one clear line and exit code 2 (no traceback)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (BenchError, FloatingPointError) as exc:
            _fail(exc)
        except OSError as exc:  # a full disk, a read-only folder, a permission: one line naming the file
            import errno

            fix = {errno.ENOSPC: "free some disk space, or point BENCH_CACHE / BENCH_HOME at a larger disk",
                   errno.EROFS: "point BENCH_CACHE / BENCH_HOME at a writable folder",
                   errno.EACCES: "point BENCH_CACHE / BENCH_HOME at a folder you may write"}.get(exc.errno, "check the path")
            _fail(DataError(exc.filename or "bench", exc.strerror or str(exc), fix))

    return wrapper


@data_app.command("list", help="List the datasets bench knows (configs/data/*.yaml) and whether their files are present.")
@_guarded
def data_list() -> None:
    from pathlib import Path

    from bench.config import dataset_configs

    rows = []
    for name, cfg in dataset_configs().items():
        root = Path(cfg.data.root)
        state = "demo (generated on first use)" if cfg.data.get("demo") else ("present" if root.exists() else "missing")
        rows.append([name, cfg.data.reader, state, str(root)])
    typer.echo(tabulate(rows, headers=["dataset", "reader", "files", "root"]))


@data_app.command("prepare", context_settings=OVERRIDES, help=f"Preprocess DATASET into the prepared-array cache. {OVERRIDE_HELP}")
@_guarded
def data_prepare(ctx: typer.Context, dataset: str = typer.Argument(..., help="dataset name (bench data list)"),
                 on_error: Optional[str] = typer.Option(None, help="raise (default) or skip-and-report bad records")) -> None:
    from bench.data.cache import prepare
    from bench.data.preprocess import PreprocessConfig
    from bench.data.registry import open_from_config

    cfg = load_config([*ctx.args, *([f"data.on_error={on_error}"] if on_error else [])], data=dataset)  # the reader's index too
    reader = open_from_config(cfg)
    prepared = prepare(reader, PreprocessConfig.from_mapping(cfg.preprocess), cache_dir(cfg),
                       on_error=cfg.data.get("on_error", "raise"), workers=cfg.data.get("workers"))
    m = prepared.manifest
    typer.echo(f"{dataset}: {m['n_records']} records prepared as {prepared.signals.shape} float32 "
               f"({m['units']}{', prefiltered' if m['prefiltered'] else ''}) at {prepared.path}")
    from bench.data.cache import report_lines

    for line in report_lines(m):
        typer.secho(f"note: {line}", fg=typer.colors.YELLOW)


@splits_app.command("export", context_settings=OVERRIDES,
                    help=f"Write DATASET's splits per task (fixed train/val/test, the cv10 folds, each label-fraction draw of "
                         f"run.fractions x run.seeds) as CSV under OUT/DATASET/ with splits.json: sha256 of each file and "
                         f"the task versions. {OVERRIDE_HELP}")
@_guarded
def splits_export(ctx: typer.Context, dataset: str = typer.Argument(..., help="a dataset of `bench data list`"),
                  out: str = typer.Option(..., help="the folder to write OUT/DATASET/ into (replaced whole)"),
                  tasks: Optional[str] = typer.Option(None, help="comma-separated tasks (default: every task of the dataset)"),
                  fractions: Optional[str] = typer.Option(None, help="label fractions whose training draws to write, e.g. "
                                                                     "0.01,0.1 (default: run.fractions)"),
                  seeds: Optional[str] = typer.Option(None, help="the seeds of those draws (default: run.seeds)")) -> None:
    from pathlib import Path

    from bench.data.registry import open_from_config
    from bench.suites.split_files import export_splits

    cfg = load_config(ctx.args, data=dataset)
    index = open_from_config(cfg).index
    names = _csv(tasks) or list(index.tasks)
    unknown = [t for t in names if t not in index.tasks]
    if unknown:
        raise ConfigError(f"{dataset} has no task {', '.join(unknown)} (its tasks: {', '.join(index.tasks)})")
    manifest = export_splits(index, dataset, Path(out), names, _fractions(fractions) or [float(f) for f in cfg.run.fractions],
                             _seeds(seeds) or [int(s) for s in cfg.run.seeds])
    for name, task in manifest["tasks"].items():
        typer.echo(f"{task['version']}: {task['n_records']} records, {len(task['files'])} file(s)")
    typer.echo(f"-> {Path(out) / dataset} (splits.json: each file's sha256 and the task versions)")


@app.command("submit", context_settings=OVERRIDES,
             help=f"Pack your runs of METHODS under the published protocol into a submission folder (their units, predictions, "
                  f"task and split versions, code version, model cards and this command), refused with one line when a run "
                  f"cannot count beside the publication. {OVERRIDE_HELP}")
@_guarded
def submit_cmd(ctx: typer.Context, methods: str = typer.Option(..., help="comma-separated encoders whose runs to submit"),
               out: str = typer.Option(..., help="the submission folder to write (must not exist)"),
               results: str = typer.Option("results", help="the publication the runs must match (its bundle)"),
               submitter: str = typer.Option("", help="who submits (default: git config user.name)"),
               tracking_uri: Optional[str] = typer.Option(None, help="MLflow tracking URI of your runs")) -> None:
    import shlex
    import subprocess
    from pathlib import Path

    from bench.publish.submission import pack
    from bench.run.store import ResultStore

    cfg = load_config(_tracking(ctx.args, tracking_uri))
    if not submitter:
        named = subprocess.run(["git", "config", "user.name"], capture_output=True, text=True)
        submitter = named.stdout.strip() or "anonymous"
    command = shlex.join(["bench", "submit", *sys.argv[2:]]) if sys.argv[1:2] == ["submit"] else f"bench submit --methods {methods}"
    pack(ResultStore.from_config(cfg), _csv(methods), Path(out), Path(results), command, submitter, echo=typer.echo)


@data_app.command("verify", context_settings=OVERRIDES, help=f"Count records, labels per task, folds and splits of DATASET and report problems. {OVERRIDE_HELP}")
@_guarded
def data_verify(ctx: typer.Context, dataset: str = typer.Argument(..., help="dataset name (bench data list)"),
                read: bool = typer.Option(True, help="read every record's signal and report unreadable ones")) -> None:
    from bench.data.registry import open_from_config
    from bench.data.verify import verify

    cfg = load_config(ctx.args, data=dataset)
    report = verify(open_from_config(cfg), read_signals=read)
    typer.echo(report.render())
    if report.problems:
        raise typer.Exit(1)


@data_app.command("download", context_settings=OVERRIDES, help="Download DATASET (ptbxl, cpsc2018, csn) from PhysioNet into its data.root.")
@_guarded
def data_download(ctx: typer.Context, dataset: str = typer.Argument(..., help="ptbxl | cpsc2018 | csn")) -> None:
    from bench.data.download import download

    cfg = load_config(ctx.args, data=dataset)
    if not cfg.data.get("download"):
        raise ConfigError(f"dataset '{dataset}' has no download source (it is local or needs credentialed access)")
    root = download(cfg.data.download, cfg.data.root)
    typer.echo(f"{dataset} is in {root}")


@encoders_app.command("list", context_settings=OVERRIDES,
                      help=f"Every registered encoder (built-in and plugins) with its metadata at the configured preset. {OVERRIDE_HELP}")
@_guarded
def encoders_list(ctx: typer.Context, released: bool = typer.Option(
        False, "--released", help="one row per preset of a released file (bench models list) with its exact parameter count")) -> None:
    import json

    cfg = load_config(ctx.args)
    listing = cache_dir(cfg) / "encoders_list" / f"{_listing_key(encoder_options(cfg))}{'-released' if released else ''}.json"
    if listing.is_file():  # the same code, cards, plugins and options: the same rows, without building twenty encoders
        rows = json.loads(listing.read_text())
    else:
        rows = _released_rows() if released else _encoder_rows(cfg)
        if not any(str(r[-1]).startswith("unavailable") for r in rows):  # what a missing file hides is looked at again
            listing.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(listing) as tmp:
                tmp.write_text(json.dumps(rows))
    headers = (["encoder", "preset", "files", "params", "dim", "input", "leads", "corpora"] if released else
               ["kind", "encoder", "dim", "input", "leads", "params", "zero-shot", "input contract"])
    typer.echo(tabulate(rows, headers=headers))


def _released_rows() -> list[list]:
    """Each preset a model card's released files load into, built on torch's meta device (no memory for the weights; a
    296M-parameter model counts in a second), its ECG side only (``encoder.text.kind=none``)."""
    import torch

    from bench.encoders import create_encoder, encoder_names
    from bench.encoders.cards import load_card
    from bench.encoders.weights import released_files

    rows = []
    for name in encoder_names():
        forms: dict[str, list[str]] = {}
        for f in released_files(name):
            forms.setdefault(f.preset, []).append(f.form)
        for preset, names in forms.items():
            corpora = ",".join(((load_card(name).get("presets") or {}).get(preset) or {}).get("corpora") or []) or "-"
            try:
                with torch.device("meta"):
                    spec = create_encoder(name, preset=preset, text={"kind": "none"}).spec
            except Exception as exc:  # listed, not hidden
                rows.append([name, preset, ",".join(names), "-", "-", "-", "-", f"unavailable: {exc}"])
                continue
            rows.append([name, preset, ",".join(names), f"{spec.n_params:,}", spec.embed_dim, f"{spec.fs:g} Hz x {spec.seconds:g} s",
                         ",".join(spec.leads) if len(spec.leads) < 12 else len(spec.leads), corpora])
    return rows


def _listing_key(options: dict) -> str:
    """What `bench encoders list` shows depends on: bench's code and configs, the plugins' entry points and files, the
    encoder options and the torch / transformers versions. Their names, sizes and modification times (no import, no
    hashing of contents) key the listing."""
    import hashlib
    import json
    from importlib.metadata import entry_points, version
    from pathlib import Path

    from bench import REPO_ROOT

    h = hashlib.sha256(json.dumps([options, version("torch"), version("transformers")], sort_keys=True, default=str).encode())
    files = [p for top in ("bench", "merit", "baselines", "configs") for p in sorted((REPO_ROOT / top).rglob("*"))
             if p.suffix in (".py", ".yaml")]
    for ep in sorted(entry_points(group="bench.encoders"), key=lambda e: e.name):
        h.update(f"{ep.name}={ep.value}\n".encode())
        module = ep.value.split(":")[0].replace(".", "/")
        files += [Path(root) / f for root in sys.path if root for f in (f"{module}.py", f"{module}/__init__.py")
                  if (Path(root) / f).is_file()][:1]
    for p in files:
        st = p.stat()
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _encoder_rows(cfg) -> list[list]:
    """Each registered encoder built at the configured preset, as a row of `bench encoders list`."""
    from bench.encoders import create_encoder, encoder_names
    from bench.encoders.base import has_objective
    from bench.encoders.cards import card_kind

    rows = []
    for name in encoder_names():
        try:
            options = encoder_options(cfg)
            encoder = create_encoder(name, **options)
            spec = encoder.spec
        except Exception as exc:  # a plugin or tower that cannot be built is listed, not hidden
            rows.append([card_kind(name), name, "-", "-", "-", "-", "-", f"unavailable: {exc}"])
            continue
        kind = card_kind(name)
        if kind == "method":
            kind = "ECG-text" if spec.has_text_tower else "self-supervised" if has_objective(encoder) else "as-built"
        rows.append([kind, name, spec.embed_dim, f"{spec.fs:g} Hz x {spec.seconds:g} s", len(spec.leads),
                     f"{spec.n_params / 1e6:.2f}M", "yes" if spec.has_text_tower else "no", spec.normalisation])
    order = {"self-supervised": 0, "ECG-text": 1, "supervised": 2, "as-built": 3, "control": 4}
    rows.sort(key=lambda r: (order.get(r[0], 4), r[1]))
    return rows


@encoders_app.command("show", context_settings=OVERRIDES,
                      help=f"Print NAME's model card (source, paper, licence, file forms, corpora) and its input contract. {OVERRIDE_HELP}")
@_guarded
def encoders_show(ctx: typer.Context, name: str = typer.Argument(..., help="an encoder of `bench encoders list`")) -> None:
    import yaml

    from bench.encoders import create_encoder, encoder_names
    from bench.encoders.cards import load_card

    if name not in encoder_names():
        raise ConfigError(f"unknown encoder '{name}'; choose from {', '.join(encoder_names())}")
    cfg = load_config(ctx.args)
    options = encoder_options(cfg)
    card = dict(load_card(name))
    try:
        spec = create_encoder(name, **options).spec
        card["at this preset"] = {"preset": options.get("preset", ""), "embedding dim": spec.embed_dim,
                                  "parameters": spec.n_params, "zero-shot": spec.has_text_tower,
                                  "input contract": spec.contract.describe()}
    except Exception as exc:  # e.g. a text tower whose local files are absent: the card still shows
        card["at this preset"] = f"cannot be built here: {exc}"
    typer.echo(yaml.safe_dump(card, sort_keys=False, allow_unicode=True, width=110).rstrip())


@models_app.command("list", context_settings=OVERRIDES,
                    help=f"The released weight files every model card lists: form, preset, location, sha256, and whether the "
                         f"cache holds them. {OVERRIDE_HELP}")
@_guarded
def models_list(ctx: typer.Context) -> None:
    from bench.encoders import encoder_names
    from bench.encoders.weights import released_files

    rows = [[f.encoder, f.form, f.preset, f.where, f.sha256[:16] or "(not recorded)", f.note]
            for name in encoder_names() for f in released_files(name)]
    typer.echo(tabulate(rows, headers=["encoder", "form", "preset", "where", "sha256", "note"]))
    typer.echo("\npull one: bench models pull ENCODER[:FORM]; or pass --ckpt ENCODER=hf:ORG/REPO/FILE@REV to any command")


@models_app.command("pull", context_settings=OVERRIDES,
                    help=f"Download ENCODER[:FORM]'s released file into the cache (resumed if stopped, sha256 checked). {OVERRIDE_HELP}")
@_guarded
def models_pull(ctx: typer.Context, name: str = typer.Argument(..., help="ENCODER or ENCODER:FORM (bench models list)")) -> None:
    from bench.encoders.weights import pull

    cfg = load_config(ctx.args)
    released, path = pull(name, cache_dir(cfg))
    typer.echo(f"{released.encoder}:{released.form} ({released.where}) -> {path}")
    from bench.encoders.checkpoint import file_hash

    typer.echo(f"sha256 {file_hash(path, 64)}")
    typer.echo(f"use it: --ckpt {released.encoder}={released.where} encoder.preset={released.preset}")


@app.command("embed", context_settings=OVERRIDES,
             help=f"Embed ECGs with any encoder through the benchmark's own path: your arrays (--signals X.npy --fs HZ, [N, 12, S] "
                  f"in mV, standard lead order), a configured dataset (--dataset NAME) or any folder of WFDB records (--wfdb DIR). "
                  f"{OVERRIDE_HELP}")
@_guarded
def embed_cmd(ctx: typer.Context,
              method: str = typer.Option(..., help="encoder name (bench encoders list)"),
              out: str = typer.Option(..., help="--signals: OUT.npz (record_ids, embedding [N, D], aligned [N, D'], text [M, D']) "
                                                "or OUT.parquet (a row per record); "
                                                "--dataset / --wfdb: OUT.parquet (record_id, split, labels, embedding, provenance)"),
              signals: Optional[str] = typer.Option(None, help="X.npy, float [N, 12, samples] in millivolts, leads I, II, III, aVR, "
                                                               "aVL, aVF, V1-V6"),
              fs: Optional[float] = typer.Option(None, help="--signals: their sampling rate in Hz"),
              ids: Optional[str] = typer.Option(None, help="--signals: the records' ids, one per line in the arrays' order (a "
                                                           "text file, or a CSV whose record_id column, else first column, holds "
                                                           "them); default X.npy[i]"),
              dataset: Optional[str] = typer.Option(None, help="a dataset of `bench data list` (its options as KEY=VALUE, e.g. "
                                                               "data.root=/path)"),
              wfdb: Optional[str] = typer.Option(None, help="a folder of WFDB records (.hea + .mat/.dat; CinC sources recognised, "
                                                            "SNOMED-CT #Dx labels read)"),
              mat: Optional[str] = typer.Option(None, help="a folder of CPSC2018 records as first released (A0001.mat with "
                                                           "struct ECG; REFERENCE.csv read when present, else unlabelled)"),
              ckpt: Optional[str] = typer.Option(None, help="checkpoint: a file (released or from bench pretrain), hf:ORG/REPO/FILE@REV "
                                                            "or url:https://..."),
              untrained: bool = typer.Option(False, "--untrained", help="embed with the encoder's seeded random weights (no --ckpt)"),
              texts: Optional[str] = typer.Option(None, help="T.txt, one text per line, embedded by the encoder's text path"),
              skip_signal_checks: bool = typer.Option(False, "--skip-signal-checks",
                                                      help="--signals: embed records that fail the checks (NaN or flat leads, "
                                                           "amplitudes not in mV, records under 2 s)"),
              trust_checkpoint_code: bool = typer.Option(False, "--trust-checkpoint-code", help=TRUST_HELP)) -> None:
    from pathlib import Path

    from bench.encoders.loading import load_encoder
    from bench.encoders.weights import resolve_checkpoint

    if sum(v is not None for v in (signals, dataset, wfdb, mat)) != 1:
        raise ConfigError("bench embed: give one input, --signals X.npy --fs HZ, --dataset NAME, --wfdb DIR or --mat DIR")
    if ckpt is not None and untrained:
        raise ConfigError("bench embed: --ckpt and --untrained exclude each other")
    cfg = load_config(ctx.args)
    _say_workspace(cfg)  # where bench's runs go; embedding writes only OUT (and the caches)
    x = _checked_arrays(signals, fs, skip_signal_checks) if signals is not None else None  # bad input first, then weights
    handle = load_encoder(method, encoder_options(cfg), resolve_checkpoint(ckpt, cache_dir(cfg)), trust_code=trust_checkpoint_code)
    from bench.encoders.base import needs_pretraining

    if ckpt is None and needs_pretraining(handle.encoder) and not untrained:
        raise ConfigError(f"{method} needs weights: pass --ckpt (a file, hf:ORG/REPO/FILE@REV or url:...), or --untrained to embed "
                          f"with its seeded random initial weights (a control, not the method)")
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    if x is not None:
        written = _embed_arrays(cfg, handle, x, _record_ids(ids, signals, len(x)), fs, texts, target)
    else:
        if texts:
            raise ConfigError("--texts goes with --signals (embed your prompts beside your arrays)")
        folder = wfdb or mat
        if folder is not None and not Path(folder).is_dir():
            raise ConfigError(f"{folder}: not a folder (fix: --{'wfdb' if wfdb else 'mat'} takes the folder holding the records)")
        if wfdb is not None and not any(Path(wfdb).rglob("*.hea")) and any(Path(wfdb).glob("*.mat")):
            raise ConfigError(f"{wfdb}: .mat files without .hea headers (fix: --mat {wfdb} reads CPSC2018 records as first "
                              f"released)")
        name = dataset or ("wfdb" if wfdb else "cpsc2018_original")
        written = _embed_dataset(ctx.args, handle, name, [f"data.root={Path(folder).resolve()}"] if folder else [], target)
    typer.echo(f"{target}: {written} ({method}, {handle.checkpoint_hash}; input: {handle.encoder.contract.describe()})")


def _checked_arrays(signals: str, fs: float | None, skip_checks: bool):
    """`--signals X.npy` read and checked (NaN or flat leads, units, length) before anything else happens."""
    from bench.encoders.embed import check_signals, read_signals

    if fs is None:
        raise ConfigError("--signals needs --fs, the sampling rate of the arrays in Hz")
    if not math.isfinite(fs) or fs <= 0:
        raise ConfigError(f"--fs {fs:g}: a sampling rate is a positive number of Hz (fix: the rate the arrays were recorded "
                          f"at, e.g. --fs 500)")
    x = read_signals(signals)
    if not skip_checks:
        check_signals(x, fs, signals)
    return x


def _record_ids(ids: str | None, signals: str, n: int) -> list[str]:
    """`--ids FILE` read and checked (one unique, non-empty id per array row), or ``X.npy[i]``."""
    from pathlib import Path

    if ids is None:
        return [f"{Path(signals).name}[{i}]" for i in range(n)]
    path = Path(ids)
    if not path.is_file():
        raise ConfigError(f"{ids}: ids file not found (fix: one id per line, in the order of the arrays' rows)")
    if path.suffix.lower() == ".csv":
        import pandas as pd

        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        values = list(frame["record_id"] if "record_id" in frame.columns else frame.iloc[:, 0])
    else:
        values = path.read_text(encoding="utf-8").splitlines()
        while values and not values[-1].strip():
            values.pop()
    values = [v.strip() for v in values]
    if len(values) != n:
        raise ConfigError(f"{ids}: {len(values)} ids for {n} records in {signals} (fix: one id per array row)")
    blank = [i for i, v in enumerate(values) if not v]
    twice = sorted({v for v in values if values.count(v) > 1})
    if blank or twice:
        raise ConfigError(f"{ids}: " + (f"empty id on line(s) {[i + 1 for i in blank][:5]}" if blank else
                                         f"ids occur more than once: {twice[:5]}") + " (fix: one unique id per record)")
    return values


def _embed_arrays(cfg, handle, x, record_ids: list[str], fs: float, texts: str | None, target) -> str:
    """`bench embed --signals`: the arrays through the encoder's contract into OUT.npz, or OUT.parquet (one row per
    record: record_id, embedding, aligned), rows named by ``record_ids``."""
    from pathlib import Path

    import numpy as np
    from omegaconf import OmegaConf

    from bench.encoders.embed import embed_signals

    parquet = Path(target).suffix == ".parquet"
    if parquet and texts:
        raise ConfigError("--texts embeds reports beside the records: they do not fit a table of records (fix: --out OUT.npz)")
    lines = [t.strip() for t in Path(texts).read_text().splitlines() if t.strip()] if texts else None
    arrays = embed_signals(handle, x, fs, lines, base=OmegaConf.to_container(cfg.preprocess, resolve=True))
    arrays = {"record_ids": np.array(record_ids), **arrays}
    with atomic_path(target) as tmp:  # never a half-written OUT
        if parquet:
            import pandas as pd

            pd.DataFrame({"record_id": arrays["record_ids"].astype(str),
                          **{k: list(v) for k, v in arrays.items() if k != "record_ids"}}).to_parquet(tmp, index=False)
        else:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
    return ", ".join(f"{k} {list(v.shape)}" for k, v in arrays.items())


def _embed_dataset(args: list[str], handle, dataset: str, extra: list[str], target) -> str:
    """`bench embed --dataset / --wfdb`: every record through the prepared-array and embedding caches into a parquet
    table of record ids, splits, labels, embeddings and provenance."""
    from bench.encoders.embed import embedding_table
    from bench.run.runner import Runner

    runner = Runner([*args, *extra])
    cfg = runner.dataset_cfg(dataset)
    emb, reader = runner.embeddings(cfg, handle)
    for line in [n for n in reader.index.notes if n.lstrip().startswith("skipped")] + list(reader.index.problems):
        typer.echo(f"note: {line}")  # every record left out, with its reason, and the findings of the folder
    from bench.data.cache import report_lines

    for line in report_lines(runner.prepared(cfg, handle).manifest):
        typer.echo(f"note: {line}")
    table = embedding_table(emb, reader.index, {"method": handle.method, "dataset": cfg.data.name,
                                                **runner.provenance(cfg, handle, reader.index)})
    with atomic_path(target) as tmp:
        table.to_parquet(tmp, index=False)
    return f"{len(table)} records x {len(table['embedding'].iloc[0]) if len(table) else 0} dims, with ids, splits and labels"


@app.command("pretrain", context_settings=OVERRIDES,
             help=f"Pretrain METHOD on DATASET's pretraining pool (pretrain_pool.folds) with checkpoints and resume. {OVERRIDE_HELP}")
@_guarded
def pretrain_cmd(ctx: typer.Context, method: str = typer.Option(..., help="encoder name (bench encoders list)"),
                 dataset: str = typer.Option("demo_ptbxl", help="dataset name (bench data list)")) -> None:
    from bench.encoders.pretrain import run_pretraining

    cfg = load_config(ctx.args, data=dataset)
    _say_workspace(cfg)
    result = run_pretraining(cfg, method)
    h = result.history
    if result.resumed_from_epoch:
        typer.echo(f"resumed from epoch {result.resumed_from_epoch}")
    if h:
        typer.echo(f"{method}: loss {h[0]['loss']:.4f} (epoch 1) -> {h[-1]['loss']:.4f} (epoch {h[-1]['epoch']}); "
                   f"{result.seconds:.1f} s, {result.samples_per_s:.0f} samples/s")
    typer.echo(f"checkpoint: {result.checkpoint}")


def _csv(value: Optional[str]) -> Optional[list[str]]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _fractions(value: Optional[str]) -> Optional[list[float]]:
    """--fractions as label fractions in (0, 1], or one clear error before anything runs."""
    out = []
    for item in _csv(value) or []:
        try:
            f = float(item)
        except ValueError:
            raise ConfigError(f"--fractions {value!r}: {item!r} is not a number (fix: fractions of the training labels, "
                              f"e.g. --fractions 0.01,0.1,1)") from None
        if not 0 < f <= 1:
            raise ConfigError(f"--fractions {value!r}: {item} is outside (0, 1] (fix: a fraction of the training labels, "
                              f"e.g. 0.01 for 1 %, 1 for all)")
        out.append(f)
    return out or None


def _seeds(value: Optional[str]) -> Optional[list[int]]:
    try:
        return [int(x) for x in _csv(value) or []] or None
    except ValueError:
        raise ConfigError(f"--seeds {value!r}: seeds are whole numbers (fix: e.g. --seeds 0,1,2)") from None


def _protocols(value: Optional[str]) -> Optional[list[str]]:
    from bench.suites.protocols import PROTOCOLS

    unknown = [p for p in _csv(value) or [] if p not in PROTOCOLS]
    if unknown:
        raise ConfigError(f"--protocols {value!r}: unknown protocol(s) {unknown} (fix: choose from {', '.join(PROTOCOLS)})")
    return _csv(value)


def _modes(value: Optional[str], suite: str) -> Optional[list[str]]:
    from bench.suites.base import get_suite
    from bench.suites.modes import MODES

    unknown = [m for m in _csv(value) or [] if m not in MODES]
    if unknown:
        raise ConfigError(f"--modes {value!r}: unknown mode(s) {unknown} (fix: choose from {', '.join(MODES)})")
    if value and _csv(value) != ["linear"] and not getattr(get_suite(suite), "takes_modes", False):
        raise ConfigError(f"--modes: the {suite} suite reads the linear probe only (fix: run the modes with --suite linear, "
                          f"or audit them with --suite subgroup)")
    return _csv(value)


def _tracking(ctx_args: list[str], uri: Optional[str]) -> list[str]:
    return [*ctx_args, f"tracking.uri={uri}"] if uri else list(ctx_args)


@app.command("run", context_settings=OVERRIDES,
             help=f"Run a suite (bench suites list) for some methods; units already FINISHED in MLflow under the same key are "
                  f"skipped. {OVERRIDE_HELP}")
@_guarded
def run_cmd(ctx: typer.Context,
            suite: str = typer.Option("linear", help="a suite of `bench suites list`: linear | zero_shot | transfer | textgen | "
                                                     "subgroup | robustness | regression | plugins"),
            methods: str = typer.Option(..., help="comma-separated encoder names (bench encoders list)"),
            datasets: Optional[str] = typer.Option(None, help="comma-separated datasets (default: data=... of the config, demo_ptbxl)"),
            tasks: Optional[str] = typer.Option(None, help="comma-separated tasks (default: the dataset's default_tasks)"),
            protocols: Optional[str] = typer.Option(None, help="fixed,cv10 (default: run.protocols)"),
            fractions: Optional[str] = typer.Option(None, help="label fractions, e.g. 0.01,0.1,1 (default: run.fractions)"),
            seeds: Optional[str] = typer.Option(None, help="seeds, e.g. 0,1,2 (default: run.seeds)"),
            directions: Optional[str] = typer.Option(None, help="transfer only: SOURCE:TARGET,... (default: all six)"),
            modes: Optional[str] = typer.Option(None, help="evaluation modes of the linear and subgroup suites, comma-separated: "
                                                             "linear, attentive, finetune, scratch (their settings: the modes "
                                                             "protocol in configs/protocols; "
                                                             "default: run.modes)"),
            leads: Optional[str] = typer.Option(None, help="linear suite: evaluation lead sets, comma-separated: 12, 6, 4, 3, 2 "
                                                             "(CinC 2021) or one lead (I, II, ...); the other leads are "
                                                             "zeros, or not encoded at all for an encoder that takes a subset "
                                                             "natively (ST-MEM, HeartLang) (default: 12)"),
            ckpt: List[str] = typer.Option([], help="METHOD=PATH, METHOD=hf:ORG/REPO/FILE@REV or METHOD=url:https://... (repeatable)"),
            allow_contamination: bool = typer.Option(False, "--allow-contamination",
                                                     help="score released checkpoints on datasets inside their declared "
                                                          "training corpora; such rows are tagged contaminated=yes"),
            trust_checkpoint_code: bool = typer.Option(False, "--trust-checkpoint-code", help=TRUST_HELP),
            allow_label_text: bool = typer.Option(False, "--allow-label-text",
                                                  help="zero-shot with encoders pretrained on label descriptions "
                                                       "(pretrain_pool.text = label_text); their rows say pretrain_text = labels"),
            tracking_uri: Optional[str] = typer.Option(None, help="MLflow tracking URI (default: tracking.uri, a SQLite file in "
                                                                  "the workspace)"),
            quiet: bool = typer.Option(False, "--quiet", help="no progress bars and no line per unit (for scripts)"),
            launcher: Optional[str] = typer.Option(None, help="inprocess, or a Hydra launcher that runs each unit as a job: joblib "
                                                                "(local pool), submitit_local, submitit_slurm, ray; hydra.launcher.* "
                                                                "overrides configure it (default: run.launcher)")) -> None:
    import time

    from bench.suites.base import Request

    ckpts = {}
    for item in ckpt:
        name, sep, path = item.partition("=")
        if not sep:
            raise ConfigError(f"--ckpt expects METHOD=PATH, got {item!r}")
        ckpts[name] = path
    start = time.perf_counter()
    overrides = (_tracking(ctx.args, tracking_uri) + (["run.allow_contamination=true"] if allow_contamination else [])
                 + (["run.allow_label_text=true"] if allow_label_text else [])
                 + (["run.trust_checkpoint_code=true"] if trust_checkpoint_code else []))
    hydra_args = [o for o in overrides if o.lstrip("+~").startswith("hydra")]
    request = Request(_csv(methods), _csv(datasets), _csv(tasks), _protocols(protocols), _fractions(fractions), _seeds(seeds),
                      _csv(directions), _modes(modes, suite))
    config_args = [o for o in overrides if o not in hydra_args]
    for part, part_request in _task_kinds(suite, request, config_args):
        routed = part != suite  # continuous targets routed from the linear suite: on the full record only
        for lead_set in _lead_sets(None if routed else leads):  # one run per evaluation lead set, the full record's under the plain keys
            _run_once(part, part_request, config_args, hydra_args, ckpts, launcher, quiet, start, lead_set)


def _task_kinds(suite: str, request, config_args: list[str]) -> list[tuple[str, object]]:
    """`--suite linear --tasks age,sex`: the label tasks to the linear suite, the continuous targets of
    configs/protocols/regression.yaml to the regression suite (the same methods, datasets, seeds and modes; 12 leads)."""
    from dataclasses import replace

    if suite != "linear" or not request.tasks:
        return [(suite, request)]
    from bench.config import load_config

    targets = set(load_config([a for a in config_args if a.startswith("regression.")]).regression.targets)  # not data.*: checked per dataset
    continuous = [t for t in request.tasks if t in targets]
    if not continuous:
        return [(suite, request)]
    labels = [t for t in request.tasks if t not in targets]
    typer.echo(f"{', '.join(continuous)}: continuous target(s), run by the regression suite (bench table regression)")
    return ([("linear", replace(request, tasks=labels))] if labels else []) + [("regression", replace(request, tasks=continuous))]


def _lead_sets(value: str | None) -> list[str]:
    from bench.data.leads import FULL_SET, lead_set_name

    return [lead_set_name(v) for v in _csv(value)] if value else [FULL_SET]


def _run_once(suite: str, request, config_args: list[str], hydra_args: list[str], ckpts: dict, launcher, quiet: bool,
              start: float, lead_set: str) -> None:
    """`bench run` on one evaluation lead set: plan, launch (in process or as jobs), collect and aggregate."""
    import time

    from bench.data.leads import FULL_SET
    from bench.run.launch import IN_PROCESS, run_multirun, unit_sweeps
    from bench.run.runner import Runner
    from bench.suites.base import get_suite

    if lead_set != FULL_SET:
        config_args = [*config_args, f"preprocess.lead_set={lead_set}"]

    planner = Runner(config_args, ckpts=ckpts, progress=not quiet)
    _say_workspace(planner.base)
    launcher = launcher or planner.base.run.launcher
    if hydra_args and launcher == IN_PROCESS:
        raise ConfigError(f"{' '.join(hydra_args)}: hydra.* overrides configure a launcher (fix: add --launcher joblib or another)")
    if launcher != IN_PROCESS:
        for sweep in unit_sweeps(suite, planner, request):
            run_multirun(launcher, sweep, normalise_overrides(config_args) + hydra_args, ckpts, typer.echo)
        typer.echo(f"{launcher}: jobs done in {time.perf_counter() - start:.1f} s; collecting and aggregating")
    runner = planner if launcher == IN_PROCESS else Runner(config_args, ckpts=ckpts, compute=False, progress=not quiet)
    summary = runner.execute(get_suite(suite), request)
    reduced = lead_set != FULL_SET
    typer.echo(f"{suite}{f' (lead set {lead_set})' if reduced else ''}: {summary.units_total} units ({summary.units_run} run, "
               f"{summary.units_skipped} already in MLflow) in {time.perf_counter() - start:.1f} s"
               + (f"; not applicable: {', '.join(sorted(set(summary.not_applicable)))}" if summary.not_applicable else ""))
    typer.echo(f"next: bench table {'leads' if reduced else suite}")


@app.command("table", context_settings=OVERRIDES,
             help=f"Regenerate a table from MLflow: linear | zero_shot | transfer | ablation | textgen, or any suite's own "
                  f"(subgroup, robustness, plugins). {OVERRIDE_HELP}")
@_guarded
def table_cmd(ctx: typer.Context, kind: str = typer.Argument(..., help="linear | zero_shot | transfer | ablation | textgen | modes | leads | summary | "
                                                                       "subgroup | robustness | a plugin suite"),
              format: str = typer.Option("md", "--format", help="md | latex | csv"),
              with_paper: bool = typer.Option(False, "--with-paper", help="put the MERIT paper's numbers beside ours"),
              protocol: Optional[str] = typer.Option(None, help="linear: fixed or cv10 (default: fixed when present)"),
              fraction: Optional[float] = typer.Option(None, help="linear: label fraction (default: the largest)"),
              methods: Optional[str] = typer.Option(None, help="comma-separated methods (and their order)"),
              dataset: Optional[str] = typer.Option(None, help="modes, leads: the dataset (default: data=... of the config)"),
              with_reference: bool = typer.Option(False, "--with-reference",
                                                  help="modes: the reality check's published numbers beside ours, labelled"),
              out: Optional[str] = typer.Option(None, help="also write the table to this file"),
              tracking_uri: Optional[str] = typer.Option(None, help="MLflow tracking URI")) -> None:
    from pathlib import Path

    from bench.run.store import ResultStore
    from bench.suites.base import suite_names
    from bench.publish.tables import KINDS, EmptyStore, build_table, suite_table

    if kind in ("modes", "leads", "summary"):
        make = {"modes": _modes_table, "leads": _leads_table, "summary": _summary_table}[kind]
        text = make(ctx, dataset, protocol, fraction, with_reference, format, tracking_uri)
        typer.echo(text)
        if out:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text(text)
        return
    if kind not in KINDS and kind not in suite_names():
        raise ConfigError(f"unknown table '{kind}'. Available: {', '.join(sorted(set(KINDS) | set(suite_names())))}")
    if format not in ("md", "latex", "csv"):
        raise ConfigError(f"--format must be md, latex or csv, got {format!r}")
    cfg = load_config(_tracking(ctx.args, tracking_uri))
    _say_workspace(cfg)
    store = ResultStore.from_config(cfg)
    names = {n: load_config(data=n).data.get("paper_name") for n in available("data")}
    try:
        text = (build_table(store.aggregates(KINDS[kind]), kind, protocol=protocol, fraction=fraction, methods=_csv(methods),
                            with_paper=with_paper, fmt=format, paper_names=names) if kind in KINDS
                else suite_table(store.aggregates([kind]), kind, format, _csv(methods)))
    except EmptyStore:
        suite = "linear" if kind == "ablation" else kind
        typer.secho(f"no {kind} results in {cfg.tracking.uri}. Run a suite first, e.g.\n"
                    f"  bench run --suite {suite} --methods merit,merit_mse{',merit_cma,merit_ib' if kind == 'ablation' else ''}",
                    fg=typer.colors.YELLOW)
        raise typer.Exit(1)
    typer.echo(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)


def _leads_table(ctx, dataset, protocol, fraction, _with_reference: bool, fmt: str, tracking_uri) -> str:
    """`bench table leads`: methods x evaluation lead sets, and each method's paired difference to its 12-lead cell."""
    from bench.publish.leads import leads_table

    return _linear_store_table(leads_table, ctx, dataset, protocol, fraction, fmt, tracking_uri)


def _summary_table(ctx, dataset, protocol, fraction, _with_reference: bool, fmt: str, tracking_uri) -> str:
    """`bench table summary`: per task category, the methods' mean rank over its tasks with a bootstrap interval."""
    from bench.publish.summary import summary_table

    return _linear_store_table(summary_table, ctx, dataset, protocol, fraction, fmt, tracking_uri)


def _linear_store_table(make, ctx, dataset, protocol, fraction, fmt: str, tracking_uri) -> str:
    """A table computed from the store's linear aggregates and predictions (leads, summary)."""
    from bench.run.store import ResultStore

    cfg = load_config(_tracking(ctx.args, tracking_uri))
    _say_workspace(cfg)
    store = ResultStore.from_config(cfg)
    try:
        return make(store, store.aggregates(["linear"]), cache_dir(cfg), dataset or str(cfg.data.name),
                    protocol=protocol or "fixed", fraction=1.0 if fraction is None else fraction,
                    n_boot=int(cfg.run.n_boot), boot_seed=int(cfg.run.bootstrap_seed), fmt=fmt)
    except (LookupError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc


def _modes_table(ctx, dataset, protocol, fraction, with_reference: bool, fmt: str, tracking_uri) -> str:
    """`bench table modes`: methods x modes, paired mode differences and rank correlations between modes."""
    from omegaconf import OmegaConf

    from bench.publish.modes import modes_table
    from bench.run.store import ResultStore

    cfg = load_config(_tracking(ctx.args, tracking_uri))
    _say_workspace(cfg)
    dcfg = load_config(_tracking(ctx.args, tracking_uri), data=dataset or cfg.data.name)
    store = ResultStore.from_config(cfg)
    reference = OmegaConf.to_container(cfg.modes.reference, resolve=True) if with_reference else None
    try:
        return modes_table(store, store.aggregates(["linear"]), cache_dir(cfg), dcfg.data.name, protocol=protocol or "fixed",
                           fraction=1.0 if fraction is None else fraction, n_boot=int(cfg.run.n_boot),
                           boot_seed=int(cfg.run.bootstrap_seed), reference=reference,
                           identity=str(dcfg.data.get("identity", dcfg.data.name)), fmt=fmt)
    except LookupError as exc:
        raise ConfigError(str(exc)) from exc


@app.command("leaderboard", context_settings=OVERRIDES,
             help=f"Write <workspace>/leaderboard.csv from MLflow (byte-identical when nothing new ran); `bench leaderboard add DIR "
                  f"[--results results]`: verify a submission (`bench submit`) against the publication (every number from its "
                  f"predictions; task and split versions, test records, provenance, contamination) and add its rows, marked "
                  f"submitted, to the publication, written again and swapped in whole; refused with one line naming the first "
                  f"problem, and then nothing changes. {OVERRIDE_HELP}")
@_guarded
def leaderboard_cmd(ctx: typer.Context, action: Optional[str] = typer.Argument(None, help="add: add the submission DIR"),
                    submission: Optional[str] = typer.Argument(None, help="with add: a folder `bench submit` wrote"),
                    results: str = typer.Option("results", help="with add: the publication to add to"),
                    out: Optional[str] = typer.Option(None, help="default: <workspace>/leaderboard.csv"),
                    tracking_uri: Optional[str] = typer.Option(None, help="MLflow tracking URI")) -> None:
    from pathlib import Path

    from bench.publish.publication import leaderboard_frame, write_leaderboard
    from bench.run.store import ResultStore

    args = list(ctx.args)
    if action is not None and action != "add":
        if "=" not in action:
            raise ConfigError(f"bench leaderboard {action}: no such action (fix: `bench leaderboard` writes the workspace's "
                              f"leaderboard, `bench leaderboard add DIR` adds a submission)")
        args = [action, *([submission] if submission else []), *args]  # KEY=VALUE overrides, not an action
        action = None
    if action == "add":
        if not submission:
            raise ConfigError("bench leaderboard add: name the submission folder (fix: `bench leaderboard add DIR`)")
        return _add_submission(Path(submission), Path(results), load_config(args))
    cfg = load_config(_tracking(args, tracking_uri))
    board = leaderboard_frame(ResultStore.from_config(cfg))
    if board.empty:
        typer.secho(f"no results in {cfg.tracking.uri}: run `bench run --suite linear --methods merit,merit_mse` first",
                    fg=typer.colors.YELLOW)
        raise typer.Exit(1)
    _say_workspace(cfg)
    path = Path(out or workspace(cfg) / "leaderboard.csv")
    write_leaderboard(board, path)
    typer.echo(f"{len(board)} rows -> {path}")


def _add_submission(submission, results_dir, cfg) -> None:
    from dataclasses import replace
    from pathlib import Path

    from bench.files import swapped_folder
    from bench.publish.bundle import PUBLISHED, BundleStore
    from bench.publish.publication import PublishSettings, write_publication
    from bench.publish.submission import check, merged_bundle

    house, sub, meta = check(submission, results_dir)
    keep = tuple(sorted(p.name for p in results_dir.iterdir() if p.name not in PUBLISHED))
    with swapped_folder(results_dir, keep=keep) as staged:
        merged_bundle(house, sub, meta, staged)
        store = BundleStore.open(staged)
        settings = PublishSettings.from_mapping(store.manifest["settings"])
        if settings.readme:
            settings = replace(settings, readme=str(store.root / settings.readme))
        write_publication(store, staged, settings, Path(cfg.paths.cache) / "bootstrap", echo=typer.echo)
    typer.echo(f"added {len(sub.manifest['units'])} units and {len(sub.manifest['aggregates'])} aggregates of "
               f"{', '.join(meta.get('methods', []))} (submitted by {meta.get('submitter', '?')}) to {results_dir} (swapped in whole)")


@app.command("plot", context_settings=OVERRIDES,
             help=f"Figures: efficiency (AUC vs label fraction), forest (AUC with 95% CI), regression (each continuous target's "
                  f"MAE in its unit and R² with 95% CI), umap (embeddings by rhythm class). {OVERRIDE_HELP}")
@_guarded
def plot_cmd(ctx: typer.Context, kind: str = typer.Argument(..., help="efficiency | forest | regression | umap"),
             dataset: str = typer.Option("ptbxl_1819", help="dataset"), protocol: str = typer.Option("fixed", help="fixed | cv10"),
             fraction: float = typer.Option(1.0, help="forest: label fraction"),
             methods: Optional[str] = typer.Option(None, help="umap: comma-separated methods"),
             out: Optional[str] = typer.Option(None, help="folder (default: <workspace>/figures)"),
             tracking_uri: Optional[str] = typer.Option(None, help="MLflow tracking URI")) -> None:
    from pathlib import Path

    from bench.publish import plots
    from bench.run.store import ResultStore

    cfg = load_config(_tracking(ctx.args, tracking_uri))
    _say_workspace(cfg)
    folder = Path(out or workspace(cfg) / "figures")
    folder.mkdir(parents=True, exist_ok=True)
    if kind in ("efficiency", "forest", "regression"):
        suite = "regression" if kind == "regression" else "linear"
        aggregates = ResultStore.from_config(cfg).aggregates([suite])
        if aggregates.empty:
            raise ConfigError(f"no {suite} results in {cfg.tracking.uri}: run `bench run --suite {suite} ...` first")
        try:
            path = (plots.label_efficiency(aggregates, dataset, protocol, folder) if kind == "efficiency"
                    else plots.forest(aggregates, dataset, protocol, fraction, folder) if kind == "forest"
                    else plots.regression_forest(aggregates, dataset, folder))
        except LookupError as exc:
            raise ConfigError(str(exc)) from exc
    elif kind == "umap":
        from bench.run.runner import Runner

        runner = Runner(_tracking(ctx.args, tracking_uri), progress=False)
        dcfg = runner.dataset_cfg(dataset)
        embeddings, labels = {}, None
        for method in _csv(methods) or ["merit", "merit_mse", "merit_cma", "merit_ib", "random"]:
            emb, reader = runner.embeddings(dcfg, runner.scorers(dcfg, method, "fixed")[0].handle)
            rhythm = reader.index.task("rhythm").labels
            single = rhythm[rhythm.sum(axis=1) == 1]
            test = [r for r in single.index if reader.index.records.at[r, "split"] in ("val", "test")]
            embeddings[method] = emb.emb[emb.rows(test)]
            labels = [single.columns[single.loc[r].to_numpy().argmax()] for r in test]
        path = plots.umap_grid(embeddings, labels, f"{dataset}: val+test records with one rhythm label", folder)
    else:
        raise ConfigError(f"unknown plot '{kind}': efficiency, forest, regression or umap")
    typer.echo(f"wrote {path}")


@app.command("publish", context_settings=OVERRIDES,
             help=f"Regenerate results/ from MLflow: tables/*.md (with the paper's numbers), leaderboard.csv, the paired tests, the "
                  f"page index.html, the results bundle (bundle/) and the figures. {OVERRIDE_HELP}")
@_guarded
def publish_cmd(ctx: typer.Context, dataset: str = typer.Option("ptbxl_1819", help="dataset of the paired table and the figures"),
                umap_methods: str = typer.Option("merit,merit_mse,merit_cma,merit_ib,stmem,merl,d_beta,ecg_fm,random",
                                                 show_default=False,
                                                 help="methods in the UMAP figure (default: MERIT, its three ablations, "
                                                      "ST-MEM, MERL, D-BETA, ECG-FM and random)"),
                paired_n_boot: int = typer.Option(10000, help="resamples B of the paired table: with m comparisons the smallest "
                                                              "Holm p is m x 2/(B+1), so B must be large for any gap to survive"),
                figures: bool = typer.Option(True, help="also draw the figures (the UMAP one re-encodes records)"),
                readme: str = typer.Option("configs/publication/results_readme.md", show_default=False,
                                           help="the template of results/README.md, relative to the repository (its numbers are "
                                                "references into the results; default: results_readme.md in "
                                                "configs/publication); '' for none"),
                out: Optional[str] = typer.Option(None, help="the publication folder (default: paths.results, the repository's results/)"),
                from_bundle: Optional[str] = typer.Option(None, help="publish from a results folder's bundle instead of an MLflow "
                                                                     "store: its units as run, every aggregate, table and test "
                                                                     "recomputed by this code (the figures drawn from "
                                                                     "the aggregates again, the UMAP one kept as it is)"),
                with_runs: List[str] = typer.Option([], help="with --from-bundle: the MLflow tracking URI of a store of cells run "
                                                             "again at one clean commit (repeatable, applied in order); each "
                                                             "replaces the bundle's cell of the same key (suite, method, dataset, "
                                                             "task, protocol, fraction, seed, mode, lead set) with its units"),
                tracking_uri: Optional[str] = typer.Option(None, help="MLflow tracking URI of the store to publish")) -> None:
    import shutil
    import tempfile
    from pathlib import Path

    from bench.publish.bundle import export_bundle
    from bench.publish.publication import PublishSettings, write_publication
    from bench.run.store import ResultStore
    from bench.suites.base import suite_names

    from bench.files import swapped_folder
    from bench.publish.bundle import PUBLISHED

    cfg = load_config(_tracking(ctx.args, tracking_uri))
    results = Path(out or cfg.paths.results)
    if with_runs and not from_bundle:
        raise ConfigError("--with-runs replaces cells of a bundle: give the publication with --from-bundle results")
    workdir = Path(ctx.with_resource(tempfile.TemporaryDirectory(prefix="bench-publish-")))  # lives until the command ends
    if from_bundle:
        from bench.publish.bundle import BundleError, BundleStore, superseding_store

        try:
            if with_runs:
                reruns = [ResultStore.from_config(load_config(_tracking(ctx.args, uri))) for uri in with_runs]
                store = superseding_store(Path(from_bundle), reruns, suite_names(), workdir, echo=typer.echo)
            else:
                store = BundleStore.recomputed(Path(from_bundle), progress=True)
        except BundleError as exc:
            raise ConfigError(str(exc)) from exc
    else:
        store = ResultStore.from_config(cfg)
    if store.unit_counts(suite_names()).empty:
        raise ConfigError(f"{store.uri}: the store holds no results, so there is nothing to publish (fix: name the store "
                          f"of your runs with --tracking-uri or tracking.uri=...; `bench runs list` shows what a store holds)")
    settings = PublishSettings(dataset=dataset, paired_n_boot=paired_n_boot, bootstrap_seed=int(cfg.run.bootstrap_seed), readme=readme)
    written = PUBLISHED + (("figures",) if figures else ())
    keep = tuple(sorted(p.name for p in results.iterdir() if p.name not in written)) if results.is_dir() else ()
    # the whole new publication is built beside the old one and swapped in at once: a kill leaves one or the other
    with swapped_folder(results, keep=keep) as staged:
        write_publication(store, staged, settings, Path(cfg.paths.cache) / "bootstrap", echo=typer.echo)
        export_bundle(store, staged, suite_names(), settings, echo=typer.echo)
        if figures:
            from bench.publish.plots import UMAP_FIGURE, aggregate_figures

            for path in aggregate_figures(store, dataset, staged / "figures"):
                typer.echo(f"wrote {path}")
            if from_bundle:  # the UMAP figure re-encodes records: a bundle has none, so the published one stays
                if (results / "figures" / UMAP_FIGURE).is_file():
                    shutil.copy2(results / "figures" / UMAP_FIGURE, staged / "figures" / UMAP_FIGURE)
            else:
                plot_cmd(ctx, "umap", dataset=dataset, protocol="fixed", fraction=1.0, methods=umap_methods,
                         out=str(staged / "figures"), tracking_uri=tracking_uri)
    typer.echo(f"published {results} (swapped in whole)")


@app.command("verify", help="Recompute every unit metric, aggregate, leaderboard row, table and the page of a results folder from "
                            "its bundle (results/bundle) and fail, naming the row, on any difference. Needs no MLflow, models or data.")
@_guarded
def verify_cmd(results: str = typer.Argument("results", help="the results folder (with bundle/manifest.json)"),
               only: Optional[str] = typer.Option(None, help="check one part: a suite, a unit or aggregate key, or a published "
                                                             "file (tables/linear_fixed_1.md)"),
               workers: Optional[int] = typer.Option(None, help="processes (default: the cores available)"),
               quiet: bool = typer.Option(False, help="no progress bars"),
               replay: int = typer.Option(0, help="instead: run N units drawn at random again from scratch (data, "
                                                  "pretraining, heads) at this commit and compare their metrics"),
               replay_seed: int = typer.Option(0, help="the draw of --replay"),
               replay_settings: Optional[str] = typer.Option(None, help="the run settings --replay tries (default: "
                                                                          "configs/publication/replay.yaml)")) -> None:
    from pathlib import Path

    from bench.publish.bundle import BundleError, verify

    if replay:
        _replay(Path(results), replay, replay_seed, Path(replay_settings) if replay_settings else None)
        return
    try:
        problems = verify(Path(results), echo=typer.echo, only=only, workers=workers, progress=not quiet)
    except BundleError as exc:
        raise ConfigError(str(exc)) from exc
    if problems:
        for p in problems[:50]:
            typer.secho(f"MISMATCH {p}", fg=typer.colors.RED, err=True)
        more = " (first 50 shown)" if len(problems) > 50 else ""
        typer.secho(f"verify: {len(problems)} difference(s){more}; these results are not what their bundle gives", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.echo(f"verify: {results} holds: " + (f"what --only {only} names is recomputed from its bundle" if only
                                                else "every number is recomputed from its bundle"))


def _replay(results, n: int, seed: int, settings) -> None:
    from bench.publish.bundle import BundleError
    from bench.publish.replay import replay

    if n < 0:
        raise ConfigError(f"--replay {n}: a number of units to replay is 0 or more")
    try:
        done = replay(results, n, seed, echo=typer.echo, settings_file=settings)
    except BundleError as exc:
        raise ConfigError(str(exc)) from exc
    bad = [r for r in done if r.problem]
    for r in bad:
        typer.secho(f"MISMATCH {r.label} (unit {r.key}): {r.problem}", fg=typer.colors.RED, err=True)
    minutes = sum(r.seconds for r in done) / 60
    if bad:
        typer.secho(f"verify --replay: {len(bad)} of {len(done)} unit(s) differ at this commit ({minutes:.1f} min)",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.echo(f"verify --replay: {len(done)} unit(s) of {results} run again from scratch at this commit give the published "
               f"metrics ({minutes:.1f} min; largest relative difference {max((r.max_rel_diff for r in done), default=0):.1e})")


@app.command("sweep", context_settings=OVERRIDES,
             help=f"Optuna sweep of the linear head or of pretraining (lr, weight decay, epochs), selected on validation only; "
                  f"resumable. {OVERRIDE_HELP}")
@_guarded
def sweep_cmd(ctx: typer.Context, method: str = typer.Option(..., help="encoder name"),
              target: str = typer.Option("linear", help="linear (the probe on fixed embeddings) | pretrain (each trial pretrains)"),
              dataset: str = typer.Option("demo_ptbxl", help="dataset"), task: str = typer.Option("super", help="task"),
              trials: int = typer.Option(20, help="number of COMPLETE trials to reach"),
              protocol: str = typer.Option("fixed", help="the protocol the chosen settings are for; refused when the "
                                                         "selection split is one of its test folds (cv10)"),
              storage: Optional[str] = typer.Option(None, help="Optuna RDB URL (default: sqlite in the workspace)"),
              study: Optional[str] = typer.Option(None, help="study name (default: derived from method/dataset/task/checkpoint)"),
              tracking_uri: Optional[str] = typer.Option(None, help="MLflow tracking URI")) -> None:
    from pathlib import Path

    from bench.run.runner import Runner
    from bench.run.sweep import sweep_linear, sweep_pretraining

    sweeps = {"linear": sweep_linear, "pretrain": sweep_pretraining}
    if target not in sweeps:
        raise ConfigError(f"--target must be linear or pretrain, got {target!r}")
    runner = Runner(_tracking(ctx.args, tracking_uri))
    _say_workspace(runner.base)
    storage = storage or f"sqlite:///{workspace(runner.base) / 'optuna.db'}"
    from bench.run.sweep import SelectionLeak

    try:
        result = sweeps[target](runner, dataset, method, task, trials, storage, study, protocol=protocol)
    except SelectionLeak as exc:
        raise ConfigError(str(exc)) from exc
    typer.echo(f"study {result['study']} ({result['completed_trials']} complete trials in {storage}): best validation "
               f"macro AUROC {result['best_val_auroc']:.4f} with {result['best_params']}")
    typer.echo("use them with: " + ("bench run --suite linear --methods " if target == "linear" else
                                    f"bench pretrain --dataset {dataset} --method ") + method + " " + " ".join(result["overrides"]))


@app.command("compare", context_settings=OVERRIDES,
             help=f"Paired bootstrap test of macro AUROC (of MAE on a continuous target, --suite regression) between two "
                  f"methods on the same records and resamples. {OVERRIDE_HELP}")
@_guarded
def compare_cmd(ctx: typer.Context, method_a: str = typer.Argument(..., help="first method"),
                method_b: str = typer.Argument(..., help="second method"),
                suite: str = typer.Option("linear", help="a suite of `bench suites list`: linear | zero_shot | transfer | textgen | "
                                                     "subgroup | robustness | regression | plugins"),
                dataset: str = typer.Option("ptbxl_1819", help="dataset (transfer: source family)"),
                task: str = typer.Option("super", help="task"), protocol: str = typer.Option("fixed", help="fixed | cv10"),
                fraction: float = typer.Option(1.0, help="label fraction"),
                seed: str = typer.Option("auto", help="auto (the cells over all their seeds where a run had several, else "
                                                      "seed 0) | all | a seed"),
                tracking_uri: Optional[str] = typer.Option(None, help="MLflow tracking URI")) -> None:

    from bench.publish.compare import compare_methods
    from bench.run.store import ResultStore

    cfg = load_config(_tracking(ctx.args, tracking_uri))
    store = ResultStore.from_config(cfg)
    try:
        r = compare_methods(store, cfg.paths.cache, method_a, method_b, suite=suite, dataset=dataset, task=task, protocol=protocol,
                            fraction=fraction, seed=int(seed) if seed.isdigit() else seed, n_boot=int(cfg.run.n_boot),
                            boot_seed=int(cfg.run.bootstrap_seed))
    except (LookupError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc
    over = f"mean over S = {r['n_seeds']} seeds, two-level bootstrap" if r["n_seeds"] > 1 else f"seed {r['seed']}"
    if r["metric"] == "MAE":
        where, unit = f"regression, {over}, n={r['n']}", f" {r['unit']}" if r["unit"] else ""
        difference = (f"observed MAE difference {r['diff']:+.3g}{unit} (negative: {method_a} errs less), 95% CI "
                      f"[{r['ci_low']:+.3g}, {r['ci_high']:+.3g}] ({r['n_boot']:.0f} paired resamples of the test records)")
    else:
        where = f"{suite}, {protocol}, {100 * fraction:g}% labels, {over}, n={r['n']}"
        difference = (f"observed macro AUROC difference {100 * r['diff']:+.2f} points, 95% CI [{100 * r['ci_low']:+.2f}, "
                       f"{100 * r['ci_high']:+.2f}] ({r['n_boot']:.0f} paired stratified resamples)")
    typer.echo(f"{method_a} - {method_b} on {dataset}/{task} ({where}): {difference}, two-sided paired bootstrap p "
               + (f"≤ {r['p_floor']:.2g} (the smallest {r['n_boot']:.0f} resamples can show)" if r["p_value"] <= r["p_floor"]
                  else f"= {r['p_value']:.4f}"))


@suites_app.command("list", help="The registered suites (built in and plugins), their version and what each measures.")
@_guarded
def suites_list() -> None:
    from bench.suites.base import SUITES

    rows = [[name, SUITES.get(name).version, SUITES.get(name).description] for name in SUITES.names()]
    typer.echo(tabulate(rows, headers=["suite", "version", "what it measures"], tablefmt="github"))


@runs_app.command("list", context_settings=OVERRIDES,
                  help=f"Summarise the units stored in MLflow per suite, method and dataset, and the pretrained checkpoints of the "
                       f"cache with the settings that made them. {OVERRIDE_HELP}")
@_guarded
def runs_list(ctx: typer.Context, tracking_uri: Optional[str] = typer.Option(None, help="MLflow tracking URI")) -> None:
    from bench.encoders.pretrain import cached_checkpoints
    from bench.run.store import ResultStore
    from bench.suites.base import suite_names

    cfg = load_config(_tracking(ctx.args, tracking_uri))
    _say_workspace(cfg)
    counts = ResultStore.from_config(cfg).unit_counts(suite_names())
    if counts.empty:
        typer.echo(f"no units in {cfg.tracking.uri}")
    else:
        summary = counts.groupby(["suite", "method", "dataset", "protocol", "status"]).size().reset_index(name="units")
        typer.echo(tabulate(summary, headers="keys", showindex=False))
    checkpoints = cached_checkpoints(cfg.paths.cache)
    typer.echo(f"\npretrained checkpoints in {cache_dir(cfg) / 'checkpoints'}: {len(checkpoints)}")
    if checkpoints:
        rows = [[c["method"], c["encoder"].get("preset", ""), c["pool"]["dataset"], c["pool"].get("folds"), c["pool"]["n"],
                 c["pool"].get("text", "none"), c["pretrain"]["epochs"], c["pretrain"]["batch_size"], c["pretrain"]["lr"],
                 c["pretrain"]["seed"], f"{c['state']} ({c['epochs_done'] or 0}/{c['pretrain']['epochs']} epochs)", c["folder"]]
                for c in checkpoints]
        typer.echo(tabulate(rows, headers=["method", "preset", "pool", "folds", "records", "text", "epochs", "batch", "lr", "seed",
                                           "state", "folder"]))


@runs_app.command("repool", context_settings=OVERRIDES,
                  help=f"Rewrite aggregates whose provenance tags (code version, checkpoint, ...) differ from their units' (a "
                       f"store re-aggregated by an older bench); metrics are untouched. {OVERRIDE_HELP}")
@_guarded
def runs_repool(ctx: typer.Context, tracking_uri: Optional[str] = typer.Option(None, help="MLflow tracking URI")) -> None:
    from bench.run.runner import repool_provenance
    from bench.run.store import ResultStore
    from bench.suites.base import suite_names

    cfg = load_config(_tracking(ctx.args, tracking_uri))
    _say_workspace(cfg)
    fixed = repool_provenance(ResultStore.from_config(cfg), suite_names())
    typer.echo(f"{len(fixed)} aggregate(s) given their units' provenance" + (f", e.g. {fixed[0]}" if fixed else ""))


@app.command("demo", context_settings=OVERRIDES,
             help=f"The first run, on built-in synthetic data (under 2 minutes on 2 cores): generate and prepare the demo dataset, "
                  f"pretrain merit and merit_mse with a tiny budget (config demo.*), run the linear suite with the two controls, and "
                  f"print macro AUROC with intervals per task. {OVERRIDE_HELP}")
@_guarded
def demo(ctx: typer.Context, methods: Optional[str] = typer.Option(None, help="methods to evaluate (default: demo.methods)")) -> None:
    import time
    from pathlib import Path

    from bench.publish.page import write_page
    from bench.publish.publication import leaderboard_frame
    from bench.run.runner import Runner
    from bench.publish.tables import compact_table

    start = time.perf_counter()
    base = load_config(ctx.args)
    _say_workspace(base)
    d = base.demo
    method_list = _csv(methods) or list(d.methods)
    given = {o.split("=")[0].lstrip("+") for o in ctx.args}
    budget = [f"{k}={v}" for k, v in {"pretrain.epochs": d.pretrain_epochs, "linear.epochs": d.linear_epochs,
                                       "data.demo.n_records": d.n_records}.items() if k not in given]
    overrides = [*budget, *ctx.args]
    typer.secho(f"demo budget (tiny on purpose: it shows the pipeline, not a result): {', '.join(budget) or 'as overridden'}; "
                f"a real run pretrains for pretrain.epochs={base.pretrain.epochs} or more", fg=typer.colors.CYAN)
    runner = Runner(overrides)
    summary = runner.run("linear", method_list, [d.dataset])
    store = runner.store
    aggregates = store.aggregates(["linear"])
    typer.echo(compact_table(aggregates[aggregates["dataset"] == d.dataset], method_list))
    from bench.publish.publication import PublishSettings, column_leaders

    board = leaderboard_frame(store)
    leaders = column_leaders(store, board, PublishSettings(paired_n_boot=int(base.run.n_boot)), cache_dir(base))
    page = write_page(board, workspace(base) / "demo" / "index.html", leaders)
    typer.echo(f"linear: {summary.units_total} units ({summary.units_run} run, {summary.units_skipped} already in MLflow) "
               f"in {time.perf_counter() - start:.0f} s")
    typer.echo(f"explore the runs:  .venv/bin/mlflow ui --backend-store-uri {base.tracking.uri}")
    typer.echo(f"open the page:     {page.resolve().as_uri()}")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
