"""Errors for bad input: each names the file or record, what is wrong, and how to fix it."""

from __future__ import annotations

from bench.errors import BenchError


class DataError(BenchError):
    """A record or dataset file that cannot be used as it is."""

    def __init__(self, where: str, problem: str, fix: str = ""):
        self.where = str(where)
        self.problem = problem
        self.fix = fix
        msg = f"{self.where}: {problem}"
        if fix:
            msg += f" (fix: {fix})"
        super().__init__(msg)

    def __reduce__(self):
        """Rebuilt from its parts, so it crosses process boundaries (parallel preparation) intact."""
        return type(self), (self.where, self.problem, self.fix)


class DatasetNotFound(DataError):
    """The dataset's root or an index file is missing."""
