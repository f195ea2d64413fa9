"""The generic registry: lazy placeholders, base-class check, helpful unknown-name error."""

from __future__ import annotations

import pytest

from bench.data.base import DatasetReader
from bench.data.registry import READERS
from bench.registry import Registry, UnknownNameError


def test_lazy_registration_and_lookup():
    reg: Registry = Registry("thing")
    reg.register("ordered", "collections:OrderedDict")
    from collections import OrderedDict

    assert reg.get("ordered") is OrderedDict
    with pytest.raises(UnknownNameError, match="Unknown thing 'x'. Available: ordered"):
        reg.get("x")


def test_base_class_is_enforced():
    reg: Registry = Registry("reader", base=DatasetReader)
    with pytest.raises(TypeError, match="must subclass DatasetReader"):
        reg.register("bad", dict)


def test_builtin_readers_are_registered():
    assert {"ptbxl", "ptbxl_1819", "cinc", "cpsc2018_original", "mimic_iv_ecg"} <= set(READERS.names())
    assert issubclass(READERS.get("cinc"), DatasetReader)
