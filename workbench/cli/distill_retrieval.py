"""`workbench distill-retrieval`: a dual encoder for image-text retrieval, by a registered retrieval method."""

from __future__ import annotations

import argparse

from workbench.cli.common import (
    add_method_options,
    add_train_options,
    method_config,
    method_list,
    retrieval_datasets,
    train_config,
)

NAME = "distill-retrieval"
HELP = "train a dual encoder for image-text retrieval: CLIP-style, or distilled with MCAD or a baseline"
DEFAULT_RECIPE = "mcad"


def add_parser(sub) -> argparse.ArgumentParser:
    from workbench.data import RETRIEVAL_DATASETS
    from workbench.methods import method_names

    names = method_names(task="retrieval")
    p = sub.add_parser(
        NAME,
        help=HELP,
        description="Train a dual encoder on shapes retrieval captions with a registered retrieval method "
        "(workbench/methods/mcad.py): "
        + method_list(names)
        + ". Metrics: R@1/5/10 both ways, median rank, index time, query latency, size.",
    )
    add_method_options(p, names, DEFAULT_RECIPE)
    add_train_options(
        p,
        skip=("model", "recipe", "teacher"),
        defaults={"dataset": RETRIEVAL_DATASETS[0]},  # the hard gallery
        choices={"dataset": retrieval_datasets()},  # coco-karpathy: with --data-root
        sizes=("hidden_size", "num_layers", "num_heads", "patch_size", "embed_dim"),
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> None:
    from workbench.methods import distill

    cfg, config = method_config(args, train_config(args))
    distill(cfg, config, resume=args.resume, progress=not args.no_progress)
