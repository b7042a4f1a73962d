"""`workbench scale`: a paper-sized teacher and student (random weights) measured on this machine."""

from __future__ import annotations

import argparse
import json

from workbench.cli.common import add_publish_option, publish
from workbench.cli.options import add_options, build, given

NAME = "scale"
HELP = "measure a paper-sized DiDE step and teacher inference (random weights: time and memory only)"


def add_parser(sub) -> argparse.ArgumentParser:
    from workbench.configs.bench import PRESETS
    from workbench.scale import ScaleRun

    p = sub.add_parser(
        NAME,
        help=HELP,
        description="Build the teacher and the same-width dual student of a size preset "
        f"({', '.join(PRESETS)}; workbench/configs/bench.py) with RANDOM weights and measure, each configuration "
        "in its own process: seconds per DiDE training step and peak resident memory at --batch-size, fp32 and "
        "bf16; the teacher's inference at batch 32; the FLOPs of one step. Untrained weights: speed and memory "
        "only. --single measures only the configuration given.",
    )
    dests = add_options(p, ScaleRun, options=None)
    p.set_defaults(dests=dests)
    p.add_argument("--single", action="store_true", help="measure only the configuration given (default: the set)")
    p.add_argument("--out", default="assets/results/scale.json", help="write the results as JSON here")
    add_publish_option(p, "the table")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> None:
    from workbench.scale import ScaleRun, default_runs, measure_all, scale_table, step_flops

    chosen = build(ScaleRun, given(args, args.dests))
    results = measure_all([chosen] if args.single else default_runs(chosen.preset))
    results.append({"flops": step_flops(ScaleRun(batch_size=1, preset=chosen.preset)), "batch_size": 1})
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    publish(scale_table(results), args.out, args.readme, "scale")
