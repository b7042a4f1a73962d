"""`workbench distill`: a student trained by one of the registered answer-task methods (DiDE, MAD, baselines)."""

from __future__ import annotations

import argparse

from workbench.cli.common import (
    add_method_options,
    add_train_options,
    answer_datasets,
    method_config,
    method_list,
    train_config,
)
from workbench.errors import WorkbenchError

NAME = "distill"
HELP = "distill a fusion teacher into a dual-encoder student, or unimodal teachers into a fusion student (MAD)"
DEFAULT_RECIPE = "dide"


def add_parser(sub) -> argparse.ArgumentParser:
    from workbench.methods import method_names

    names = method_names(task="answer")
    p = sub.add_parser(
        NAME,
        help=HELP,
        description="Train a student with a registered method (workbench/methods/): "
        + method_list(names)
        + ". A dual student takes its fusion teacher's (--teacher) tokenizer, width, depth, heads and patch "
        "size; a fusion (MAD) student learns from frozen unimodal teachers instead (--text-teacher, "
        "--vision-teacher; no --teacher). Low-shot runs: --train-size 1280 (1%) or 12800 (10%).",
    )
    add_method_options(p, names, DEFAULT_RECIPE)
    add_train_options(
        p,
        skip=("model", "recipe"),
        choices={"dataset": answer_datasets()},  # retrieval: `workbench distill-retrieval`
        sizes=("hidden_size", "num_layers", "num_heads", "patch_size", "conv_stem", "text_layers", "image_layers"),
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> None:
    from workbench.methods import distill, get_method

    cfg, config = method_config(args, train_config(args))
    if get_method(cfg.recipe).student == "dual" and not cfg.teacher:  # answer-task dual students learn from one
        raise WorkbenchError(f"recipe {cfg.recipe!r} trains a dual student from a fusion teacher: pass --teacher")
    distill(cfg, config, resume=args.resume, progress=not args.no_progress)
