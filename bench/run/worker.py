"""One unit of `bench run` as a Hydra job: ``python -m bench.run.worker unit.method=... unit.task=...``.

Launchers run it (``--multirun hydra/launcher=joblib|submitit_slurm|...``); `bench run --launcher`
writes the sweep. The job composes the same config as the driver (every non-``unit.`` override is
passed on), computes its units and logs them, but leaves the aggregates to the driver's collect pass.
"""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from bench.config import CONFIG_DIR, ConfigError


def _unit_overrides(overrides: list[str]) -> list[str]:
    return [o for o in overrides if not o.lstrip("+~").startswith("unit.")]


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base=None)
def main(cfg: DictConfig) -> dict[str, int]:
    from bench.run.runner import Runner

    unit = cfg.unit
    if unit.method is None:
        raise ConfigError("bench.run.worker needs unit.method (and the other unit.* keys); `bench run --launcher` writes them")
    listed = lambda v: None if v is None else [v]
    ckpts = OmegaConf.to_container(unit.checkpoints, resolve=True)
    runner = Runner(_unit_overrides(list(HydraConfig.get().overrides.task)), ckpts=ckpts, progress=False,
                    folds=listed(None if unit.fold is None else str(unit.fold)), aggregate=False)
    summary = runner.run(unit.suite, [unit.method], listed(unit.dataset), listed(unit.task), listed(unit.protocol),
                         listed(None if unit.fraction is None else float(unit.fraction)), listed(unit.seed), listed(unit.direction),
                         listed(unit.mode))
    return {"units_run": summary.units_run, "units_skipped": summary.units_skipped}


if __name__ == "__main__":
    main()
