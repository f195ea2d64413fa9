"""Checkpoint reading and strict loading with errors that list the offending keys."""

from __future__ import annotations

import hashlib
import pickle
import types
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or does not fit the model."""


class ForeignObject:
    """Stands in for a pickled object of a class that is not installed (e.g. an upstream config class inside
    a released checkpoint); keeps its state as attributes so the tensors around it still load."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.__dict__.update(state if isinstance(state, dict) else {"state": state})


class _TolerantUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return type(name, (ForeignObject,), {"__module__": "bench.encoders.checkpoint.foreign." + module})


_TOLERANT_PICKLE = types.SimpleNamespace(Unpickler=_TolerantUnpickler, load=pickle.load, __name__="tolerant_pickle")


def read_checkpoint(path: str | Path) -> Any:
    """A torch file, a safetensors file, or a torch file pickling classes of a package that is not installed."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found (fix: pass an existing file with --ckpt NAME=PATH "
                              f"or drop it to pretrain the small preset)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(path)
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except (ModuleNotFoundError, AttributeError):
            return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_TOLERANT_PICKLE)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({exc})") from exc


def unwrap(blob) -> dict:
    """The state dict inside a checkpoint file ({'model': ...}, {'model_state_dict': ...}, {'state_dict': ...} or bare)."""
    if isinstance(blob, Mapping):
        for key in ("model", "model_state_dict", "state_dict"):
            if key in blob and isinstance(blob[key], Mapping):
                return dict(blob[key])
    return dict(blob)


def file_hash(path: str | Path, n: int = 16) -> str:
    """sha256 of a file's bytes (the first ``n`` hex digits; 16 name a checkpoint, 64 is the whole digest)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:n]


def _short(keys: list[str], n: int = 12) -> str:
    return ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def load_state_dict_checked(model: nn.Module, state: Mapping[str, Any], source: str,
                            expected: Iterable[str] | None = None, hint: Callable[[list[str]], str] | None = None) -> None:
    """Load ``state`` into ``model``; any missing, unexpected or mis-shaped key is an error listing them.

    ``expected``: the keys that must be present (e.g. without pretraining-only heads or a frozen text
    tower); keys of ``model`` outside it keep their values. ``hint`` says what the missing keys mean.
    """
    own = model.state_dict()
    expected = set(expected) if expected is not None else set(own)
    missing = sorted(k for k in expected if k not in state)
    unexpected = sorted(k for k in state if k not in own)
    shapes = sorted(f"{k} (checkpoint {tuple(state[k].shape)}, model {tuple(own[k].shape)})"
                    for k in state if k in own and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape))
    problems = []
    if shapes:
        problems.append(f"shape mismatch: {_short(shapes)}")
    if missing:
        problems.append(f"missing keys: {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_short(unexpected)}")
    if problems:
        fix = (hint(missing) if hint and missing else "") or "use a checkpoint of this encoder and preset, or the matching preset"
        raise CheckpointError(f"{source}: checkpoint does not fit {type(model).__name__}: " + "; ".join(problems)
                              + f" (fix: {fix})")
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
