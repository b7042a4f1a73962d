"""Keep freed memory in the process, so large forward passes do not pay the kernel for fresh pages each time.

glibc's malloc serves a large request with its own `mmap` and unmaps it again on `free`; its threshold for that
grows only after the first such free, and the heap's top is given back to the kernel above 128 KiB. A forward pass
of a ViLT-B-sized model over a batch of perturbed images allocates and frees activations of tens of MB per layer,
so every pass faulted in (and the kernel zeroed) fresh pages: measured on the 2-core AMD EPYC CI machine, the
first batch-32 bf16 forward of the ViLT-B/32-sized teacher took 4.3 s and the next 1.9 s; with the two settings
below 1.6-1.7 s and 1.5-1.7 s (docs/results.md, "How long an explanation takes"). The price is that the process
keeps its peak memory instead of returning it between passes, which a command that runs one job and exits does
not mind.

`keep_freed_memory()` is called by the entry points (the `workbench` command and the app), never on import of the
library. It does nothing off glibc (macOS, Windows, musl) and leaves alone a setting the user made with glibc's
own environment variables (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# the largest mmap threshold glibc accepts on 64-bit (HEAP_MAX_SIZE / 2); larger blocks are still mmapped
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 2**31 - 1  # give the heap's top back to the kernel only above 2 GiB free (the largest C int)

_SETTINGS = {
    "MALLOC_MMAP_THRESHOLD_": (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
    "MALLOC_TRIM_THRESHOLD_": (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
}


def _glibc():
    """The running process's C library if it is glibc (the only one with these `mallopt` parameters), else None."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        # glibc exports gnu_get_libc_version; musl and others do not
        if not (hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt")):
            return None
    except OSError:
        return None
    return libc


def keep_freed_memory() -> dict[str, bool]:
    """Raise glibc's mmap and trim thresholds (see the module docstring). Returns {environment variable name:
    whether this call set it}; an empty dict off glibc."""
    libc = _glibc()
    if libc is None:
        return {}
    done = {}
    for env, (param, value) in _SETTINGS.items():
        done[env] = env not in os.environ and bool(libc.mallopt(param, ctypes.c_int(value)))
    return done
