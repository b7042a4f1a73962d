"""Whether a trained model is a grid run as the grid defines it now: its saved `train_config` against the run's
`TrainConfig` and method config, field by field (paths aside). A run folder or a shipped model that fails this is
of an earlier recipe (`measure.why_earlier`), whatever its digest would say."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from workbench.experiments.grid import Run

# where things are, not how the run trains: the teacher's weights are checked by their fingerprint instead, a
# stage's start (dide-pt's `init_from`) by the stage's own fields
PATH_FIELDS = frozenset(
    {"out", "teacher", "init_from", "warm_start", "student_init", "image_init", "text_init", "tokenizer_from",
     "data_root"}
)  # fmt: skip


def _same(a, b) -> bool:
    return json.loads(json.dumps(a, default=str)) == json.loads(json.dumps(b, default=str))  # tuples as lists


def same_recipe(run: Run, saved: dict, student: str) -> bool:
    """Whether `saved` (a checkpoint's `train_config`) trained `run`: every TrainConfig field but the paths equal
    (a field the saved config predates counts at its default), the model size the grid sets among the saved size
    (the rest is the model's default, filled in when it was built), and every method-config field but the paths
    among the saved `recipe_args` (every method records them; the plain training loop records none)."""
    from workbench.train import TrainConfig

    want = dataclasses.asdict(run.train_config(Path("."), Path("."), student))
    defaults = dataclasses.asdict(TrainConfig(out="."))
    skip = PATH_FIELDS | set(run.paths) | {"size", "recipe_args"}
    for name, value in want.items():
        if name not in skip and not _same(saved.get(name, defaults[name]), value):
            return False
    size = saved.get("size") or {}
    if not all(_same(size.get(k), v) for k, v in want["size"].items()):
        return False
    args = saved.get("recipe_args")
    if not args:  # trained by the plain loop, which records no method config: nothing to compare
        return True
    config = dataclasses.asdict(run.method_config(Path("."), Path(".")))
    return all(_same(args.get(k), v) for k, v in config.items() if k not in set(run.paths) | PATH_FIELDS)
