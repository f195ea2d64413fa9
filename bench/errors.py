"""The harness's own errors, in one light module: each is a problem with the user's input or setup that the command
line reports as one line naming the file and the fix (``BenchError``), never a traceback. Importing this module
imports nothing else, so the command line can catch them without loading torch, Hydra or MLflow."""

from __future__ import annotations


class BenchError(Exception):
    """An input or setup problem the user can fix; its message names the source and the fix."""


class ConfigError(BenchError, ValueError):
    """A config that does not compose: unknown group option, misspelt key, bad value."""


class CheckpointError(BenchError, ValueError):
    """A checkpoint that is missing, unreadable, or does not fit the model."""


class UnsafeCheckpoint(CheckpointError):
    """A checkpoint whose pickle would call or build an object outside its encoder's allow-list."""


class LeakageError(BenchError, ValueError):
    """A test record is in the pretraining pool of the encoder that would score it, or the dataset is in
    the declared training corpora of the released checkpoint (contamination)."""


class MissingUnits(BenchError, RuntimeError):
    """Collecting a launcher's results found units that no job logged."""
