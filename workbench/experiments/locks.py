"""Run folders shared by several workers: a run is claimed with a lock file next to its folder.

The claim is a kernel lock (`fcntl.flock`) on the lock file, held for the whole run: two workers never train the
same run, and when a worker dies the kernel drops its lock, so the next worker takes the run over and it resumes
from its last checkpoint. The pid in the file only says who holds it. (Before, the pid was the lock: a worker
that read a lock still being written, or two workers taking over the same dead worker's lock, could both train
one run.)
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

_HELD: dict[str, int] = {}  # lock file -> the open descriptor whose lock this process holds


def is_done(run_dir: Path) -> bool:
    """The run wrote its final model (the trainer writes `model/workbench.json` last)."""
    return (Path(run_dir) / "model" / "workbench.json").exists()


def lock_path(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    return run_dir.with_name(run_dir.name + ".lock")


def claim(run_dir: Path) -> bool:
    """Take the run's lock; False while another worker (or this one, through another claim) holds it. A lock
    file left by a dead worker holds no kernel lock any more and is taken over."""
    lock = lock_path(run_dir)
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(5):
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        if _same_file(fd, lock):
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            _HELD[str(lock)] = fd
            return True
        os.close(fd)  # its holder released it (removing the file) between our open and our lock: again
    return False


def release(run_dir: Path) -> None:
    """Remove the lock file, then drop the kernel lock (so no one locks a file that is about to go)."""
    lock = lock_path(run_dir)
    fd = _HELD.pop(str(lock), None)
    lock.unlink(missing_ok=True)
    if fd is not None:
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False
