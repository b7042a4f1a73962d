"""`workbench paraphrase-results`: the shipped checkpoints on the test split and on its held-out rewording."""

from __future__ import annotations

import argparse

from workbench.cli.common import add_publish_option, publish

NAME = "paraphrase-results"
HELP = "accuracy of the shipped checkpoints on test vs the same examples reworded in held-out families"


def add_parser(sub) -> argparse.ArgumentParser:
    from workbench.paraphrase_results import DEFAULT_CHECKPOINTS

    p = sub.add_parser(
        NAME,
        help=HELP,
        description="Evaluate each checkpoint on the first --size examples of its dataset's test split and of "
        "test-paraphrase (the same images and answers, every question, hypothesis or statement in a held-out "
        "wording: workbench/data/paraphrase.py), overall, per question type and per held-out template; write "
        "OUT (JSON) and print the table.",
    )
    p.add_argument("--assets", default="assets", help="folder holding the checkpoint folders")
    p.add_argument("--checkpoints", nargs="+", default=list(DEFAULT_CHECKPOINTS), metavar="NAME",
                   help="checkpoint folders under --assets (default: the shipped easy-VQA, shapes-vqa, -ve and -nlvr "
                   "teachers and students)")  # fmt: skip
    p.add_argument("--size", type=int, default=1000, help="test examples per split (default 1000)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--out", default="assets/results/paraphrase.json", help="write the results as JSON here")
    add_publish_option(p, "the table")
    p.add_argument(
        "--summary",
        default=None,
        metavar="FILE",
        help="also write the short per-task table into FILE's 'reworded' section (e.g. README.md)",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> None:
    from pathlib import Path

    from workbench.models.io import write_json_atomic
    from workbench.paraphrase_results import measure, paraphrase_table

    results = measure(args.assets, tuple(args.checkpoints), args.size, args.batch_size, not args.no_progress)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(args.out), results)
    publish(paraphrase_table(results), args.out, args.readme, "paraphrase")
    if args.summary:
        from workbench.paraphrase_results import readme_table
        from workbench.report import replace_section

        replace_section(args.summary, "reworded", readme_table(results))
        print(f"wrote the short table into {args.summary}")
