"""Run folders shared by several workers: a run is claimed with a lock file next to its folder.

The lock holds the worker's pid and is created atomically, so two workers never train the same run; a lock
whose process is gone is taken over, and the run resumes from its last checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path


def is_done(run_dir: Path) -> bool:
    """The run wrote its final model (the trainer writes `model/workbench.json` last)."""
    return (Path(run_dir) / "model" / "workbench.json").exists()


def lock_path(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    return run_dir.with_name(run_dir.name + ".lock")


def claim(run_dir: Path) -> bool:
    """Take the run's lock (atomic create). A lock left by a dead process is taken over."""
    lock = lock_path(run_dir)
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _alive(pid):
                return False
            lock.unlink(missing_ok=True)  # stale: its worker died; the run resumes from its state
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


def release(run_dir: Path) -> None:
    lock_path(run_dir).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
