"""Resident memory that follows the live tensors.

glibc raises its mmap threshold each time a large block is freed, after which blocks of that size come
from the heap and stay resident after they are freed: a training loop whose activations are allocated
and freed every step then holds several times its live memory (the text-generation suite: 7.5 GB
peak RSS instead of 1.9 GB). Fixing the threshold returns large blocks to the OS when they are freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
THRESHOLD_BYTES = 128 * 1024  # glibc's initial default, no longer raised dynamically


def return_freed_memory() -> bool:
    """Fix glibc's mmap threshold for this process; False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES))
    except (OSError, AttributeError):
        return False
