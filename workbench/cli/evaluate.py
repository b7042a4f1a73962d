"""`workbench eval`: a checkpoint's accuracy on a split, overall and per question type."""

from __future__ import annotations

import argparse
from pathlib import Path

from workbench.errors import WorkbenchError

NAME = "eval"
HELP = "accuracy overall and per question type of a checkpoint"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(NAME, help=HELP, description="Evaluate a checkpoint folder on a split; prints and writes JSON.")
    p.add_argument("checkpoint", help="checkpoint folder (ours, or a Hugging Face ViLT folder with --dataset)")
    p.add_argument("--dataset", default=None, help="dataset name (default: the one the checkpoint was trained on)")
    p.add_argument("--split", default="test", choices=["train", "val", "test", "compositional"])
    p.add_argument("--size", type=int, default=None, help="number of examples (default: the whole split)")
    p.add_argument("--out", default=None, help="JSON file (default: CHECKPOINT/eval-DATASET-SPLIT.json)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> None:
    from workbench.data import Collator, load_dataset
    from workbench.evaluate import evaluate, format_metrics, write_metrics
    from workbench.models.io import load_checkpoint

    ck = load_checkpoint(args.checkpoint, device=args.device)
    dataset = args.dataset or ck.meta.get("dataset")
    if dataset is None:
        raise WorkbenchError("this checkpoint does not say which dataset it was trained on: pass --dataset")
    data = load_dataset(dataset, args.split, args.size)
    metrics = evaluate(ck.model, data, Collator.for_model(ck.model, ck.tokenizer), progress=True)
    metrics.update({"checkpoint": str(args.checkpoint), "dataset": dataset, "split": args.split})
    print(format_metrics(metrics))
    out = Path(args.out) if args.out else Path(args.checkpoint) / f"eval-{dataset}-{args.split}.json"
    write_metrics(metrics, out)
    print(f"wrote {out}")
