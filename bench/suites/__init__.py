"""Stage 3 of the flow: suite plugins (what a unit of work computes on embeddings and labels) and the metric and
statistics definitions; suites reach encoders and data only through the RunContext the executor gives them."""

from bench.suites.base import SUITES, Aggregate, Group, Request, RunContext, Suite, Unit, UnitResult, get_suite, suite_names

__all__ = ["SUITES", "Aggregate", "Group", "Request", "RunContext", "Suite", "Unit", "UnitResult", "get_suite", "suite_names"]
