"""The teachers a run started against (`<out>/teachers.json`), so that a run whose teacher was rebuilt while it
was unfinished is not resumed as if nothing had changed: its saved state learned from the earlier weights.

Written when a run starts from scratch: {field: {"path": folder, "fingerprint": its weights' hash}} for the
student's teacher (`teacher`) and every teacher its method's config names (`*_teacher`: MCAD's dual and fusion
teachers, DiDE's matching teacher); empty for a run that learns from no teacher (`hard`, and `none`, which takes
only the teacher's tokenizer and size). Only teachers that are checkpoint folders with weight files are
recorded (MAD's MiniLM text teacher comes from an installed package, not a folder). `train --resume` refuses a run
whose teachers now differ from the record (a folder rebuilt since, or another folder named); the experiment
runner sets such an unfinished folder aside and starts the run again. A folder started before this file existed
has none and is not checked; a recorded teacher folder that is gone is not a change (loading it will say so).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from workbench.errors import CheckpointError, WorkbenchError
from workbench.models.io import weights_fingerprint, write_json_atomic

FILE = "teachers.json"
NO_TEACHER = ("hard", "none")  # recipes that learn nothing from a teacher's weights


class Changed(NamedTuple):
    field: str  # "teacher" or a method's `*_teacher` field
    path: str
    seen: str  # the fingerprint the run started against
    now: str  # the folder's fingerprint today


def teachers_of(cfg, recipe: str) -> dict[str, dict]:
    """{field: {"path", "fingerprint"}} of the teachers a run of `cfg` with objective `recipe` learns from."""
    if recipe in NO_TEACHER:
        return {}
    named = {"teacher": cfg.teacher, **{k: v for k, v in sorted(cfg.recipe_args.items()) if k.endswith("_teacher")}}
    hashed: dict[str, str | None] = {}  # one folder named twice (MCAD's student teacher is its dual teacher)
    seen = {}
    for field, folder in named.items():
        if not folder:
            continue
        path = str(Path(folder).absolute())  # not resolved: a link repointed to other weights is a change
        if path not in hashed:
            hashed[path] = weights_fingerprint(path)
        if hashed[path]:
            seen[field] = {"path": path, "fingerprint": hashed[path]}
    return seen


def record_teachers(out: Path, seen: dict[str, dict]) -> None:
    write_json_atomic(Path(out) / FILE, seen)


def started_against(out: Path) -> dict[str, dict] | None:
    """The teachers `out` was started against, or None for a folder without the record."""
    path = Path(out) / FILE
    if not path.exists():
        return None
    try:
        seen = json.loads(path.read_text())
        return {field: {"path": str(e["path"]), "fingerprint": str(e["fingerprint"])} for field, e in seen.items()}
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise CheckpointError(f"{path} is damaged ({e!r}); it names the teachers the run started against") from e


def changed_teachers(out: Path, now: dict[str, dict] | None = None) -> list[Changed]:
    """How the teachers `out` started against differ from `now` (`teachers_of` the run as it is resumed: another
    folder named, a teacher added or dropped, or rebuilt), or, without `now`, which of the recorded folders hold
    other weights today. A field missing on one side is "none" there."""
    seen = started_against(out)
    if seen is None:
        return []
    if now is None:
        now = {}
        for field, entry in seen.items():
            fingerprint = weights_fingerprint(entry["path"]) if Path(entry["path"]).is_dir() else None
            now[field] = {"path": entry["path"], "fingerprint": fingerprint or entry["fingerprint"]}
    changed = []
    for field in sorted(set(seen) | set(now)):
        before, after = seen.get(field, {}), now.get(field, {})
        if before.get("fingerprint") != after.get("fingerprint"):
            path = after.get("path") or before["path"]
            changed.append(Changed(field, path, before.get("fingerprint", "none"), after.get("fingerprint", "none")))
    return changed


def changed_in_run(run_dir: Path) -> list[Changed]:
    """`changed_teachers` of a run folder and of its stages' folders (DiDE's `pretrain`)."""
    run_dir = Path(run_dir)
    stages = sorted(p for p in run_dir.iterdir() if p.is_dir() and (p / FILE).exists()) if run_dir.is_dir() else []
    return [c for folder in (run_dir, *stages) for c in changed_teachers(folder)]


def refuse_changed(out: Path, changed: list[Changed]) -> None:
    """A clear error for a run whose teacher was rebuilt since it started, naming what to do."""
    if changed:
        c = changed[0]
        raise WorkbenchError(
            f"{out} was started against other {c.field.replace('_', ' ')} weights than it would resume with "
            f"({c.path}: {c.seen} then, {c.now} now), so the run's saved state learned from the earlier ones. "
            f"Train in a new --out (or move {out} aside to keep it)"
        )
