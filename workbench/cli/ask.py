"""`workbench ask`: one question about one image, answered by a checkpoint."""

from __future__ import annotations

import argparse
import json

NAME = "ask"
HELP = "ask a checkpoint a question about an image"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME, help=HELP, description="Answer a question (VQA) or judge a hypothesis (entailment) about one image."
    )
    p.add_argument("checkpoint", help="checkpoint folder")
    p.add_argument("image", help="image file (any size, mode; it is converted to RGB and resized)")
    p.add_argument("question")
    p.add_argument("--top-k", type=int, default=5)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> None:
    from workbench.api import ask, load_model

    model = load_model(args.checkpoint)
    print(json.dumps(ask(model, args.image, args.question, top_k=args.top_k), indent=2))
