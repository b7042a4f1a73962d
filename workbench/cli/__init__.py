"""`workbench` command line: one module per subcommand, each with `add_parser(sub)` and `run(args)`.

The options of the training commands are made from the config dataclasses (`workbench.cli.options`): a
`TrainConfig` field or a method's `Config` field is an option, with its default and help, without being
typed again here; `--config FILE` starts from a saved run's config. Recipe choices come from the method
registry (`workbench.methods`). The library never imports this package.
"""

from __future__ import annotations

import argparse
import sys

from workbench.allocator import keep_freed_memory
from workbench.cli import (
    ask,
    bench,
    distill,
    distill_retrieval,
    evaluate,
    experiment,
    explain,
    explain_results,
    paraphrase_results,
    pretrain_mae,
    rebuild,
    report,
    retrieval,
    scale,
    train,
)
from workbench.errors import WorkbenchError

# the subcommands, in the order `workbench --help` lists them
COMMANDS = (train, distill, pretrain_mae, experiment, evaluate, ask, rebuild, explain, bench, explain_results,
            report, distill_retrieval, retrieval, scale, paraphrase_results)  # fmt: skip
NAMES = tuple(c.NAME for c in COMMANDS)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The `workbench` parser. With `only`, the other subcommands get just their name and help line: building
    a training command's options loads the trainer and the method registry, which `workbench eval` need not."""
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="Cross-modal knowledge distillation workbench: train a fusion (ViLT) teacher, distill it "
        "into a dual-encoder student, evaluate, and ask questions.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        if only is None or command.NAME == only:
            command.add_parser(sub)
        else:
            sub.add_parser(command.NAME, help=command.HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv and argv[0] in NAMES else ""  # "": no subcommand (top-level help, an error)
    args = build_parser(only=command).parse_args(argv)
    keep_freed_memory()  # large forward passes reuse freed memory instead of faulting in fresh pages each time
    try:
        args.func(args)
    except (WorkbenchError, FileExistsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
