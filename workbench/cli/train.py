"""`workbench train`: a fusion teacher or a dual student on hard labels."""

from __future__ import annotations

import argparse

from workbench.cli.common import add_train_options, answer_datasets, train_config
from workbench.errors import WorkbenchError

NAME = "train"
HELP = "train a fusion teacher or a dual student on hard labels"


def add_parser(sub) -> argparse.ArgumentParser:
    from workbench.models import MODELS

    p = sub.add_parser(
        NAME,
        help=HELP,
        description="Train a model on hard labels with accelerate (runs under `accelerate launch` too). Writes "
        "OUT/train_config.json, OUT/metrics.jsonl, an atomic checkpoint OUT/state each epoch, and the final "
        "checkpoint OUT/model. The shipped teachers' settings are in workbench/configs/teachers.py.",
    )
    # retrieval datasets: `workbench distill-retrieval`
    add_train_options(p, skip=("recipe", "teacher"), choices={"model": list(MODELS), "dataset": answer_datasets()})
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> None:
    from workbench.train import TrainConfig, train

    cfg = train_config(args)
    if cfg.recipe != TrainConfig.recipe:  # --config of a distillation run: this command trains on hard labels
        raise WorkbenchError(
            f"{args.config} is a {cfg.recipe!r} run: rerun it with `workbench distill` (or distill-retrieval) --config"
        )
    train(cfg, resume=args.resume, progress=not args.no_progress)
