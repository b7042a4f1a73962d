"""`workbench report`: the table of the shipped checkpoints, made from their own workbench.json."""

from __future__ import annotations

import argparse

from workbench.cli.common import add_publish_option

NAME = "report"
HELP = "print the results table of the shipped checkpoints (or write it into docs/results.md)"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME,
        help=HELP,
        description="Make the markdown table of measured results from ASSETS/*/workbench.json; print it, or write "
        "it into a Markdown file's results section.",
    )
    p.add_argument("--assets", default="assets")
    add_publish_option(p, "the table (instead of printing it)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> None:
    from workbench.report import teacher_table, update_readme

    if args.readme:
        changed = update_readme(args.readme, args.assets)
        print(f"{'updated' if changed else 'unchanged'}: {args.readme}")
    else:
        print(teacher_table(args.assets))
