"""The folders show the flow: data -> encoders -> suites -> run -> publish <- cli. No module imports a later stage (at
module level, inside a function or for type checking), no modules import each other in a cycle, and every folder says
what it holds. Methods (merit/, baselines/) know nothing of suites, runs or publication."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import bench

ROOT = Path(bench.__file__).resolve().parents[1]
#: stages in the order data flows; the utilities every stage may use come first, the command line last
STAGES = ["bench", "bench.data", "bench.encoders", "bench.suites", "bench.run", "bench.publish", "bench.cli"]
METHOD_PACKAGES = ("merit", "baselines")


def _modules(package: str) -> dict[str, Path]:
    root = ROOT / package
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = {**_modules("bench"), **{m: p for pkg in METHOD_PACKAGES for m, p in _modules(pkg).items()}}


def _imports(path: Path) -> set[str]:
    """Every project module ``path`` imports, wherever the import statement is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found |= {n for n in names if n in MODULES}
    return found


def stage(module: str) -> int:
    if module.split(".")[0] in METHOD_PACKAGES:
        return STAGES.index("bench.encoders")  # methods sit beside the encoder interface they implement
    best = 0
    for i, prefix in enumerate(STAGES):
        if module == prefix or module.startswith(prefix + "."):
            best = i
    return best


def test_every_module_imports():
    for info in pkgutil.walk_packages(bench.__path__, "bench."):
        importlib.import_module(info.name)


def test_no_module_imports_a_later_stage():
    upward = [f"{m} (stage {STAGES[stage(m)]}) imports {t} (stage {STAGES[stage(t)]})"
              for m, path in MODULES.items() for t in sorted(_imports(path)) if stage(t) > stage(m)]
    assert not upward, "\n".join(upward)


def test_methods_know_nothing_of_suites_runs_or_publication():
    for m, path in MODULES.items():
        if m.split(".")[0] in METHOD_PACKAGES:
            assert all(stage(t) <= STAGES.index("bench.encoders") for t in _imports(path)), m


def test_no_import_cycle():
    graph = {m: {t for t in _imports(p) if t != m and not m.startswith(t + ".")} for m, p in MODULES.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(trail[trail.index(nxt):] + [nxt]) if nxt in trail else nxt)
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize("package", sorted({str(p.parent.relative_to(ROOT)) for p in ROOT.glob("bench/**/__init__.py")}
                                           | {"merit", "baselines"}))
def test_every_folder_says_what_it_holds(package):
    init = ROOT / package / "__init__.py"
    assert init.is_file() and ast.get_docstring(ast.parse(init.read_text())), f"{package}/__init__.py has no docstring"


def test_the_public_plugin_names_still_import():
    from bench.encoders import ENCODERS, Encoder, EncoderSpec  # noqa: F401
    from bench.suites import SUITES, Group, RunContext, Suite, Unit, UnitResult  # noqa: F401
    from bench.suites.base import Aggregate, frame_hash  # noqa: F401  (what tests/plugins/bench_toy_encoder uses)

    assert ENCODERS.entry_point_group == "bench.encoders" and SUITES.entry_point_group == "bench.suites"
