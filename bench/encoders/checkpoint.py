"""Checkpoint files: read without running their code, identified by their weights, loaded strictly.

A checkpoint file is something a user hands in, so reading it must not execute anything it carries. Every torch
file is read with ``torch.load(weights_only=True)``: tensors, containers, numbers and strings only. The few other
objects released files pickle beside their weights (HuBERT-ECG's config class, fairseq's argparse namespace and
numpy scalars in its meters) are read only where the encoder's model card names them (``checkpoint_objects``), and
then into inert stand-ins that hold their attributes (``SAFE_OBJECTS``); numpy's own array and scalar rebuilding is
the one real code path allowed. A file that needs anything else is refused naming the file and the object; a user
who trusts it can pass ``--trust-checkpoint-code`` (never the default; the rows then say so). ``.safetensors`` files
are read with ``safetensors``.

A checkpoint is identified by its weights (``weights_hash``: sorted names, dtypes, shapes and bytes of the state's
tensors), not by the bytes of its file, which carry a temporary name, a code version and a training history.
"""

from __future__ import annotations

import collections
import hashlib
import pickle
import re
import types
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from bench.errors import CheckpointError, UnsafeCheckpoint


class ForeignObject:
    """Stands in for a pickled object (an upstream config class, an argparse namespace): keeps its state as
    attributes, runs nothing of the file's choosing."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], (dict, type(None))):
            state = {**(state[0] or {}), **(state[1] or {})}  # (dict, slots) form
        self.__dict__.update(state if isinstance(state, dict) else {"state": state})


def _stand_in(qualified: str) -> type:
    module, _, name = qualified.rpartition(".")
    return type(name, (ForeignObject,), {"__module__": "bench.encoders.checkpoint.foreign." + module})


def _numpy_objects() -> dict[str, Any]:
    """numpy's own array, dtype and scalar rebuilding (the objects torch's documentation allows for numpy data),
    under both module paths numpy has pickled them with (``numpy.core`` before 2.0, ``numpy._core`` since)."""
    multiarray = (getattr(np, "_core", None) or np.core).multiarray
    out: dict[str, Any] = {}
    for prefix in ("numpy.core", "numpy._core"):
        out[f"{prefix}.multiarray.scalar"] = multiarray.scalar
        out[f"{prefix}.multiarray._reconstruct"] = multiarray._reconstruct
    out["numpy.ndarray"] = np.ndarray
    out["numpy.dtype"] = np.dtype
    for name in dir(np.dtypes):
        if name.endswith("DType"):
            out[f"numpy.dtypes.{name}"] = getattr(np.dtypes, name)
    return out


#: every object a model card may allow (``checkpoint_objects``), by the name the pickle gives it -> what reads it.
#: Stand-ins keep attributes only; the numpy entries rebuild arrays and scalars, nothing else.
SAFE_OBJECTS: dict[str, Any] = {
    "hubert_ecg.HuBERTECGConfig": _stand_in("hubert_ecg.HuBERTECGConfig"),
    "argparse.Namespace": _stand_in("argparse.Namespace"),
    "omegaconf.dictconfig.DictConfig": _stand_in("omegaconf.dictconfig.DictConfig"),
    "omegaconf.listconfig.ListConfig": _stand_in("omegaconf.listconfig.ListConfig"),
    "omegaconf.base.ContainerMetadata": _stand_in("omegaconf.base.ContainerMetadata"),
    "omegaconf.base.Metadata": _stand_in("omegaconf.base.Metadata"),
    "omegaconf.nodes.AnyNode": _stand_in("omegaconf.nodes.AnyNode"),
    "omegaconf.nodes.StringNode": _stand_in("omegaconf.nodes.StringNode"),
    "omegaconf.nodes.IntegerNode": _stand_in("omegaconf.nodes.IntegerNode"),
    "omegaconf.nodes.FloatNode": _stand_in("omegaconf.nodes.FloatNode"),
    "omegaconf.nodes.BooleanNode": _stand_in("omegaconf.nodes.BooleanNode"),
    "omegaconf.nodes.EnumNode": _stand_in("omegaconf.nodes.EnumNode"),
    "omegaconf.nodes.BytesNode": _stand_in("omegaconf.nodes.BytesNode"),
    "omegaconf.nodes.PathNode": _stand_in("omegaconf.nodes.PathNode"),
    **{f"typing.{name}": _stand_in(f"typing.{name}") for name in ("Any", "List", "Dict", "Tuple", "Optional", "Union")},
    "lightning.fabric.utilities.data.AttributeDict": _stand_in("lightning.fabric.utilities.data.AttributeDict"),
    "pytorch_lightning.utilities.parsing.AttributeDict": _stand_in("pytorch_lightning.utilities.parsing.AttributeDict"),
    **_numpy_objects(),
    # the types omegaconf's metadata names (object_type, key_type, element_type, the flags' defaultdict): plain
    # containers and scalars, which build data only
    **{f"builtins.{t.__name__}": t for t in (dict, list, int, float, str, bool)},
    "collections.defaultdict": collections.defaultdict,
}
OMEGACONF_TYPES = [f"builtins.{t}" for t in ("dict", "list", "int", "float", "str", "bool")] + ["collections.defaultdict"]
#: names of groups a card may list instead of each object
OBJECT_GROUPS = {
    "numpy": sorted(_numpy_objects()),
    "omegaconf": sorted(k for k in SAFE_OBJECTS if k.startswith(("omegaconf.", "typing."))) + OMEGACONF_TYPES,
}
#: modules whose classes no card may stand in for: their names belong to the readers above or to code execution
_NEVER_STANDED_IN = ("builtins", "numpy", "torch", "os", "sys", "subprocess", "posix", "nt", "importlib", "pickle",
                     "runpy", "shutil", "socket", "operator", "_operator", "functools", "types", "codecs", "io")
_MODULE_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\.\*$")


def _stand_in_modules(names: Iterable[str]) -> tuple[str, ...]:
    """The ``module.*`` entries of a card: every class pickled from that module tree (a Hydra structured config's
    dataclasses behind a ``DictConfig``) is read into an inert stand-in."""
    out = []
    for name in names:
        if not name.endswith(".*"):
            continue
        module = name[:-2]
        if not _MODULE_PATTERN.match(name) or module.split(".")[0] in _NEVER_STANDED_IN:
            raise ValueError(f"checkpoint object pattern {name!r}: a card may stand in for the classes of a model's own "
                             f"package ('clinical_ts.*'), not of {module.split('.')[0]!r}")
        out.append(module)
    return tuple(out)


def expand_allowed(names: Iterable[str]) -> set[str]:
    """A card's ``checkpoint_objects`` (object names or group names) as object names; unknown names are refused,
    so a card cannot allow something bench has no safe reader for."""
    out: set[str] = set()
    names = list(names)
    _stand_in_modules(names)
    for name in names:
        if name.endswith(".*"):
            continue
        if name in OBJECT_GROUPS:
            out |= set(OBJECT_GROUPS[name])
        elif name in SAFE_OBJECTS:
            out.add(name)
        else:
            raise ValueError(f"checkpoint object {name!r} has no safe reader in bench.encoders.checkpoint.SAFE_OBJECTS "
                             f"(groups: {sorted(OBJECT_GROUPS)})")
    return out


def _damaged(path: Path, exc: Exception) -> CheckpointError:
    return CheckpointError(f"{path}: not a readable checkpoint: truncated, damaged or not a torch / safetensors file "
                           f"({type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}) "
                           f"(fix: copy or download the file again; a bench checkpoint: delete it and re-run, bench "
                           f"pretrains it again)")


def pickled_objects(path: Path) -> list[str]:
    """The objects beyond torch's own safe set that reading the file would build or call (read from the pickle's
    opcodes; nothing is executed)."""
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception as exc:
        raise _damaged(path, exc) from exc


class _TolerantUnpickler(pickle.Unpickler):
    """The unpickler of a trusted file (--trust-checkpoint-code): classes of packages that are not installed become
    stand-ins, so the tensors around them still load."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return _stand_in(f"{module}.{name}")


_TOLERANT_PICKLE = types.SimpleNamespace(Unpickler=_TolerantUnpickler, load=pickle.load, __name__="tolerant_pickle")


def read_checkpoint(path: str | Path, allowed: Iterable[str] = (), trust_code: bool = False, owner: str = "") -> Any:
    """A torch or safetensors file's content, read without running code from it.

    ``allowed``: object names (or groups) the file may pickle besides tensors, from the encoder's model card;
    ``owner`` names that card in the refusal. ``trust_code``: the user's explicit opt-in to unpickle anything.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found (fix: pass an existing file with --ckpt NAME=PATH "
                              f"or drop it to pretrain the small preset)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except Exception as exc:
            raise _damaged(path, exc) from exc
    if trust_code:
        try:
            try:
                return torch.load(path, map_location="cpu", weights_only=False)
            except (ModuleNotFoundError, AttributeError):
                return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_TOLERANT_PICKLE)
        except Exception as exc:
            raise _damaged(path, exc) from exc
    allowed = list(allowed)
    needed = pickled_objects(path)
    readers = {name: SAFE_OBJECTS[name] for name in expand_allowed(allowed)}
    modules = _stand_in_modules(allowed)
    readers.update({name: _stand_in(name) for name in needed
                    if name not in readers and any(name.startswith(m + ".") for m in modules)})
    refused = [name for name in needed if name not in readers]
    if refused:
        raise _unsafe(path, refused, owner)
    try:
        # every object the card allows, not only the pickle's globals: numpy's dtype classes are reached through
        # numpy.dtype's reconstruction, never named by an opcode
        with torch.serialization.safe_globals([(reader, name) for name, reader in readers.items()]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if found:
            raise _unsafe(path, [found.group(1)], owner) from exc
        raise _damaged(path, exc) from exc
    except Exception as exc:
        raise _damaged(path, exc) from exc


def _unsafe(path: Path, refused: list[str], owner: str) -> UnsafeCheckpoint:
    card = f"configs/cards/{owner}.yaml checkpoint_objects" if owner else "the encoder's model card (checkpoint_objects)"
    return UnsafeCheckpoint(
        f"{path}: refused: reading it would build or call {', '.join(refused)}, which {card} does not allow; "
        f"loading it could run code from the file (fix: use a file from the model's official source; if you trust "
        f"this file, pass --trust-checkpoint-code and its rows record trust_checkpoint_code=yes)")


def unwrap(blob) -> dict:
    """The state dict inside a checkpoint file ({'model': ...}, {'model_state_dict': ...}, {'state_dict': ...} or bare;
    ECGFM-KED's training file keeps the ECG encoder under 'ecg_model' beside its query transformer under 'model')."""
    if isinstance(blob, Mapping):
        for key in ("ecg_model", "model", "model_state_dict", "state_dict"):
            if key in blob and isinstance(blob[key], Mapping):
                return dict(blob[key])
    return dict(blob)


def weights_hash(state: Mapping[str, Any], n: int = 16) -> str:
    """Content address of a set of weights: sha256 over the sorted names, dtypes, shapes and bytes of the tensors
    (non-tensor entries by their repr). The same weights give the same hash whatever file, process or commit
    wrote them."""
    h = hashlib.sha256()
    for name in sorted(state):
        value = state[name]
        if isinstance(value, torch.Tensor):
            t = value.detach().to("cpu").contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(f"{name}|{type(value).__name__}|{value!r}|".encode())
    return h.hexdigest()[:n]


def file_hash(path: str | Path, n: int = 16) -> str:
    """sha256 of a file's bytes (the first ``n`` hex digits; 64 is the whole digest): bundle files and the digest
    a released file's model card names."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:n]


def _short(keys: list[str], n: int = 12) -> str:
    return ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def load_state_dict_checked(model: nn.Module, state: Mapping[str, Any], source: str,
                            expected: Iterable[str] | None = None, hint: Callable[[list[str]], str] | None = None,
                            shape_hint: Callable[[dict[str, tuple]], str] | None = None) -> None:
    """Load ``state`` into ``model``; any missing, unexpected or mis-shaped key is an error listing them.

    ``expected``: the keys that must be present (e.g. without pretraining-only heads or a frozen text
    tower); keys of ``model`` outside it keep their values. ``hint`` says what the missing keys mean,
    ``shape_hint`` which option builds the file's shapes.
    """
    own = model.state_dict()
    expected = set(expected) if expected is not None else set(own)
    missing = sorted(k for k in expected if k not in state)
    unexpected = sorted(k for k in state if k not in own)
    mismatched = {k: (tuple(state[k].shape), tuple(own[k].shape)) for k in state
                  if k in own and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)}
    shapes = sorted(f"{k} (checkpoint {c}, model {m})" for k, (c, m) in mismatched.items())
    problems = []
    if shapes:
        problems.append(f"shape mismatch: {_short(shapes)}")
    if missing:
        problems.append(f"missing keys: {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_short(unexpected)}")
    if problems:
        fix = ((shape_hint(mismatched) if shape_hint and mismatched else "") or (hint(missing) if hint and missing else "")
               or "use a checkpoint of this encoder and preset, or the matching preset")
        raise CheckpointError(f"{source}: checkpoint does not fit {type(model).__name__}: " + "; ".join(problems)
                              + f" (fix: {fix})")
    not_finite = sorted(k for k, v in state.items() if k in own and isinstance(v, torch.Tensor) and v.is_floating_point()
                        and not bool(torch.isfinite(v).all()))
    if not_finite:
        raise CheckpointError(f"{source}: {len(not_finite)} weight tensor(s) hold NaN or infinite values ({_short(not_finite, 4)}); "
                              f"every embedding would be NaN (fix: a checkpoint saved before training diverged, or the "
                              f"file again from its source)")
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
