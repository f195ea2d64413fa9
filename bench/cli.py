"""The `bench` command line: it only composes configs and wires the packages together."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer
from tabulate import tabulate

from bench.config import ConfigError, available, cache_dir, load_config
from bench.data.errors import DataError
from bench.encoders.checkpoint import CheckpointError
from bench.registry import UnknownNameError

app = typer.Typer(help="Reproducible benchmark harness for ECG representation learning.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Datasets: list, prepare (cache), verify, download.", no_args_is_help=True)
app.add_typer(data_app, name="data")
encoders_app = typer.Typer(help="Encoders: the registry of methods behind the Encoder interface.", no_args_is_help=True)
app.add_typer(encoders_app, name="encoders")

OVERRIDES = {"allow_extra_args": True, "ignore_unknown_options": True}
OVERRIDE_HELP = "Extra KEY=VALUE arguments override any config value (e.g. data.root=/path preprocess.target_fs=250)."


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
        except (DataError, ConfigError, UnknownNameError, CheckpointError) as exc:
            _fail(exc)

    return wrapper


@data_app.command("list", help="List the datasets bench knows (configs/data/*.yaml) and whether their files are present.")
@_guarded
def data_list() -> None:
    from pathlib import Path

    rows = []
    for name in available("data"):
        cfg = load_config(data=name)
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

    cfg = load_config(ctx.args, data=dataset)
    reader = open_from_config(cfg)
    prepared = prepare(reader, PreprocessConfig.from_mapping(cfg.preprocess), cache_dir(cfg),
                       on_error=on_error or cfg.data.get("on_error", "raise"))
    m = prepared.manifest
    typer.echo(f"{dataset}: {m['n_records']} records prepared as {prepared.signals.shape} float32 "
               f"({m['units']}{', prefiltered' if m['prefiltered'] else ''}) at {prepared.path}")
    if m["n_skipped"]:
        typer.secho(f"skipped {m['n_skipped']} bad record(s):", fg=typer.colors.YELLOW)
        for s in m["skipped"][:20]:
            typer.echo(f"  {s['problem']}")


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
def encoders_list(ctx: typer.Context) -> None:
    from omegaconf import OmegaConf

    from bench.encoders import create_encoder, encoder_names

    cfg = load_config(ctx.args)
    rows = []
    for name in encoder_names():
        try:
            options = OmegaConf.to_container(cfg.encoder, resolve=True)
            spec = create_encoder(name, **options).spec
        except Exception as exc:  # a plugin or tower that cannot be built is listed, not hidden
            rows.append([name, "-", "-", "-", "-", "-", f"unavailable: {exc}"])
            continue
        rows.append([name, spec.embed_dim, f"{spec.fs:g} Hz x {spec.seconds:g} s", len(spec.leads),
                     f"{spec.n_params / 1e6:.2f}M", "yes" if spec.has_text_tower else "no", spec.normalisation])
    typer.echo(tabulate(rows, headers=["encoder", "dim", "input", "leads", "params", "zero-shot", "normalisation"]))


@app.command("pretrain", context_settings=OVERRIDES,
             help=f"Pretrain METHOD on DATASET's pretraining pool (pretrain_pool.folds) with checkpoints and resume. {OVERRIDE_HELP}")
@_guarded
def pretrain_cmd(ctx: typer.Context, method: str = typer.Option(..., help="encoder name (bench encoders list)"),
                 dataset: str = typer.Option("demo_ptbxl", help="dataset name (bench data list)")) -> None:
    from bench.pretrain import run_pretraining

    cfg = load_config(ctx.args, data=dataset)
    result = run_pretraining(cfg, method)
    h = result.history
    if result.resumed_from_epoch:
        typer.echo(f"resumed from epoch {result.resumed_from_epoch}")
    if h:
        typer.echo(f"{method}: loss {h[0]['loss']:.4f} (epoch 1) -> {h[-1]['loss']:.4f} (epoch {h[-1]['epoch']}); "
                   f"{result.seconds:.1f} s, {result.samples_per_s:.0f} samples/s")
    typer.echo(f"checkpoint: {result.checkpoint}")


@app.command("demo", context_settings=OVERRIDES, help=f"The main job on the built-in demo data: generate, prepare and verify the three demo datasets. {OVERRIDE_HELP}")
@_guarded
def demo(ctx: typer.Context) -> None:
    for name in ("demo_ptbxl", "demo_cpsc2018", "demo_csn"):
        data_prepare(ctx, name, on_error=None)
        data_verify(ctx, name, read=False)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
