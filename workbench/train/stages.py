"""A run in stages: `dide-pt` trains its matching stage in `<out>/pretrain`, then the task from that stage's model.

The final model records the earlier stage's training time (`earlier_stage_seconds`), so the model alone (a shipped
copy in assets/, without the run folder) still says what the whole run took. One place reads it: the results
files, `workbench report` and `workbench rebuild` all count a run's time with `whole_run_seconds`.
"""

from __future__ import annotations

import json
from pathlib import Path

STAGE_DIR = "pretrain"  # a run's own earlier stage: <out>/pretrain


def _stage_meta(run_folder: Path) -> dict | None:
    path = Path(run_folder) / STAGE_DIR / "model" / "workbench.json"
    return json.loads(path.read_text()) if path.exists() else None


def earlier_stage_seconds(cfg) -> float:
    """The training time of the stage a run started from when that stage is part of the run itself (its
    `init_from` is `<out>/pretrain/model`), with that stage's own earlier stages; 0 otherwise (a run that starts
    from another run's checkpoint does not count that run's time)."""
    if not cfg.init_from or Path(cfg.init_from).resolve() != (Path(cfg.out) / STAGE_DIR / "model").resolve():
        return 0.0
    stage = _stage_meta(cfg.out)
    return whole_run_seconds(stage) if stage else 0.0


def stage_seconds(meta: dict, run_folder: Path | None = None) -> float:
    """The earlier stages' time of a final model: the model's own record, else (a run from before models recorded
    it) its run folder's stage model's, else 0."""
    if "earlier_stage_seconds" in meta:
        return meta["earlier_stage_seconds"]
    stage = _stage_meta(run_folder) if run_folder is not None else None
    return stage.get("train_seconds", 0.0) if stage else 0.0


def whole_run_seconds(meta: dict, run_folder: Path | None = None) -> float:
    """A final model's training time with its run's earlier stages."""
    return meta.get("train_seconds", 0.0) + stage_seconds(meta, run_folder)
