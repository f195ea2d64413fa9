"""One generic registry, reused for datasets and encoders.

Modelled on lm-evaluation-harness's registry: decorator registration, lazy ``"module:attr"``
placeholders so start-up stays fast, plugin discovery through a Python entry-point group, a
base-class check, and a lookup error that lists what *is* available.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Callable, Generic, Iterator, TypeVar

from bench.errors import BenchError

T = TypeVar("T")


class UnknownNameError(BenchError, KeyError):
    """A name that is not registered; the message lists the registered names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, kind: str, base: type | None = None, entry_point_group: str | None = None):
        self.kind = kind
        self.base = base
        self.entry_point_group = entry_point_group
        self._items: dict[str, T | str] = {}
        self._plugins_loaded = False

    def register(self, name: str, obj: T | str | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; use as ``@registry.register("name")`` or directly.

        ``obj`` may be a ``"module:attr"`` string that is imported on first use.
        """
        if obj is not None:
            self._add(name, obj)
            return obj

        def decorator(o: T) -> T:
            self._add(name, o)
            return o

        return decorator

    def _add(self, name: str, obj: T | str) -> None:
        if name in self._items and self._items[name] is not obj:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        if not isinstance(obj, str):
            self._check(name, obj)
        self._items[name] = obj

    def _check(self, name: str, obj: object) -> None:
        if self.base is not None and isinstance(obj, type) and not issubclass(obj, self.base):
            raise TypeError(f"{self.kind} '{name}' must subclass {self.base.__name__}, got {obj!r}")

    def _load_plugins(self) -> None:
        if self._plugins_loaded or not self.entry_point_group:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.entry_point_group):
            if ep.name not in self._items:
                self._items[ep.name] = ep.value

    def get(self, name: str) -> T:
        self._load_plugins()
        if name not in self._items:
            raise UnknownNameError(
                f"Unknown {self.kind} '{name}'. Available: {', '.join(sorted(self._items)) or '(none)'}"
            )
        obj = self._items[name]
        if isinstance(obj, str):
            module, _, attr = obj.partition(":")
            loaded = getattr(importlib.import_module(module), attr) if attr else importlib.import_module(module)
            self._check(name, loaded)
            self._items[name] = obj = loaded
        return obj

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._load_plugins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
