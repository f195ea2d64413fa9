"""Comparative sentences of the publication as data: a claim names two cells, and its words come from its test.

In a README template (bench/publish/readme.py) ``{{ claim("linear/ptbxl_1819/rhythm/fixed/1/heartlang",
"linear/ptbxl_1819/rhythm/fixed/1/stmem") }}`` is one claim. Every claim of a page is one family: each is a paired
bootstrap of macro AUROC (``compare.compare_methods``: the same seed draws and test resamples for both cells; the
cells over their seeds where both have several, else seed 0 of each), Holm-adjusted over the family. It renders as

- ``A leads B (Δ A − B +5.8 points [95% CI +1.2, +9.9], Holm p 0.010; S = 3 seeds)`` where the adjusted p is below
  ``ALPHA`` (the leader named first whichever side it is), and
- ``A and B are not told apart (Δ A − B +5.8 points [95% CI −3.1, +14.4], Holm p 0.41; S = 3 seeds)`` otherwise.

A claim on a continuous target (two regression cells) is the paired test of MAE in the target's unit: ``A leads B (Δ MAE
A − B −3.53 years [95% CI −4.90, −2.20], ...)``, the cell with the smaller error leading.

More than two cells are only ever put in order as estimates (``order_words``: "by estimate, not tested"). No other
comparative word may be typed in a template: ``typed_comparatives`` finds them, and publishing (so `bench verify` too)
refuses a template that has one. A plugin suite's cells are claimed the same way: any leaderboard row can be a side.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

ALPHA = 0.05

# words that rank or compare, refused in a template's typed prose (a claim or an ordering renders them instead)
TYPED_COMPARATIVES = re.compile(  # "leads" as a verb: followed by a name, not by a lead's name (I, II, aVR, V1, ...)
    r"\b(leads?(?=\s+(?-i:[`A-Z]))(?!\s+(?:I|II|III|aVR|aVL|aVF|V[1-6])\b)|leading|above|below|higher|highest|lower|lowest|best|worst|better|worse|outperform\w*|beats?|beating|"
    r"exceed\w*|surpass\w*|ahead|behind|more than|less than|told apart|agree most|falls?|rises?|lifts?|lowers?|"
    r"collapses?|worth more|superior|inferior|dominat\w*|wins?|tops?|trails?)\b", re.IGNORECASE)


class ClaimError(LookupError):
    """A claim that cannot be tested as declared (unlike cells, a degenerate cell, a row that does not exist)."""


@dataclass(frozen=True)
class Cell:
    """A leaderboard row by its name ``suite/dataset/task/protocol/fraction/method[:mode]``."""

    suite: str
    dataset: str
    task: str
    protocol: str
    fraction: float
    method: str
    mode: str = "linear"

    @classmethod
    def parse(cls, name: str) -> "Cell":
        parts = name.split("/")
        if len(parts) != 6:
            raise ClaimError(f"{name!r} is not a cell name suite/dataset/task/protocol/fraction/method[:mode]")
        method, _, mode = parts[5].partition(":")
        try:
            fraction = float(parts[4])
        except ValueError as exc:
            raise ClaimError(f"{name!r}: the fraction {parts[4]!r} is not a number") from exc
        return cls(*parts[:4], fraction, method, mode or "linear")

    @property
    def label(self) -> str:
        return f"`{self.method}`" + ("" if self.mode == "linear" else f" ({self.mode})")


def claim_job(a: Cell, b: Cell, n_boot: int, boot_seed: int) -> dict:
    """The paired test of a claim (``compare.compare_methods`` keywords); cells on two evaluation sets are refused."""
    if (a.dataset, a.task, a.protocol, a.fraction) != (b.dataset, b.task, b.protocol, b.fraction):
        raise ClaimError(f"{a.label} on {a.dataset}/{a.task} ({a.protocol}, {a.fraction:g}) and {b.label} on "
                         f"{b.dataset}/{b.task} ({b.protocol}, {b.fraction:g}) are not scored on one evaluation set; a "
                         f"claim compares cells on the same test records")
    if a == b:
        raise ClaimError(f"a claim compares two cells; {a.label} is named twice")
    return dict(a=a.method, b=b.method, suite=a.suite, suite_b=b.suite, dataset=a.dataset, task=a.task,
                protocol=a.protocol, fraction=a.fraction, mode_a=a.mode, mode_b=b.mode, n_boot=n_boot, boot_seed=boot_seed)


def holds(test: dict, alpha: float = ALPHA) -> bool:
    """A claim's test says the two cells differ: its Holm-adjusted p is below ``alpha``."""
    return float(test["p_holm"]) < alpha


def claim_words(a: Cell, b: Cell, test: dict, alpha: float = ALPHA) -> str:
    """The sentence a claim's test allows (module docstring); on a continuous target the difference is of MAE in the
    target's unit, and the cell with the smaller error leads."""
    from bench.suites.metrics import format_p

    continuous = test.get("metric") == "MAE"
    scale, unit, digits = (1, f" {test.get('unit') or ''}".rstrip(), 2) if continuous else (100, " points", 1)
    what = "Δ MAE" if continuous else "Δ"
    diff, lo, hi = (scale * float(test[k]) for k in ("diff", "ci_low", "ci_high"))
    seeds = f"S = {int(test['n_seeds'])} seeds" if str(test.get("seed")) == "all" else "seed 0 of each"
    p = format_p(float(test["p_holm"]), float(test["p_floor"]))
    if holds(test, alpha):
        a_leads = diff < 0 if continuous else diff > 0
        first, second = (a, b) if a_leads else (b, a)
        if not a_leads:
            diff, lo, hi = -diff, -hi, -lo
        return (f"{first.label} leads {second.label} ({what} {first.label} − {second.label} {diff:+.{digits}f}{unit} "
                f"[95% CI {lo:+.{digits}f}, {hi:+.{digits}f}], Holm p {p}; {seeds})")
    return (f"{a.label} and {b.label} are not told apart ({what} {a.label} − {b.label} {diff:+.{digits}f}{unit} "
            f"[95% CI {lo:+.{digits}f}, {hi:+.{digits}f}], Holm p {p}; {seeds})")


def order_words(cells: Sequence[tuple[Cell, float, float, float]]) -> str:
    """Cells ``(cell, estimate, ci_low, ci_high)`` in the order of their estimates, said to be untested."""
    ranked = sorted(cells, key=lambda c: -c[1])
    shown = [f"{c.label} {100 * v:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]" for c, v, lo, hi in ranked if np.isfinite(v)]
    return "by estimate, not tested: " + ", ".join(shown)


def typed_comparatives(template: str) -> list[str]:
    """Comparative words typed in a template's prose (outside ``{{ }}`` and ``{# #}``), each with its line."""
    prose = re.sub(r"\{\{.*?\}\}|\{#.*?#\}", lambda m: " " * len(m.group()), template, flags=re.DOTALL)
    found = []
    for m in TYPED_COMPARATIVES.finditer(prose):
        line = prose.count("\n", 0, m.start()) + 1
        found.append(f"line {line}: {m.group()!r}")
    return found
