"""Run folders shared by several workers: a run is claimed with a lock file next to its folder.

The lock holds the worker's pid and appears atomically with it (written to a file of the worker's own, then
hard-linked to the lock's name, which fails if the lock exists), so two workers never train the same run, and
no worker ever sees a lock without its pid (an empty lock, read between a create and a write, once looked
stale to a second worker started at the same moment, and both trained one run). A lock whose process is gone
is taken over, and the run resumes from its last checkpoint.
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
    mine = lock.with_name(f"{lock.name}.{os.getpid()}")
    mine.write_text(str(os.getpid()))
    try:
        for _ in range(2):
            try:
                os.link(mine, lock)  # atomic, and the lock is born with its pid in it
                return True
            except FileExistsError:
                try:
                    pid = int(lock.read_text() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and _alive(pid):
                    return False
                lock.unlink(missing_ok=True)  # stale: its worker died; the run resumes from its state
        return False
    finally:
        mine.unlink(missing_ok=True)


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
