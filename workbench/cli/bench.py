"""`workbench bench`: latency, throughput, FLOPs, memory and retrieval scaling of a teacher and its student."""

from __future__ import annotations

import argparse
import inspect

from workbench.cli.common import add_publish_option, publish

NAME = "bench"
HELP = "time a teacher and its student: latency, throughput, FLOPs, memory, retrieval scaling"
SETTINGS = ("batch_sizes", "retrieval_sizes", "min_run_time", "budget_s")  # options passed to benchmark_pair


def _default(name: str):
    """`benchmark_pair`'s own default of a setting (never typed here)."""
    from workbench.bench import benchmark_pair

    return inspect.signature(benchmark_pair).parameters[name].default


def _shown(name: str) -> str:
    value = _default(name)
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def add_parser(sub) -> argparse.ArgumentParser:
    from workbench.bench import RUNTIMES

    p = sub.add_parser(
        NAME,
        help=HELP,
        description="Benchmark a fusion teacher against its dual student with torch.utils.benchmark (warm-up, fixed "
        "threads, median and IQR): per-query latency (batch 1) and throughput (larger batches) of the teacher, the "
        "student end to end and the student with cached image features; FLOPs (torch.utils.flop_counter), parameters "
        "and peak memory of each; retrieval over N images x N texts (the teacher's N*N joint passes are extrapolated "
        "from measured per-pair cost beyond --budget-s, and marked so). Writes JSON (OUT) and prints markdown tables. "
        "Close other work first: anything else running on the machine slows every path.",
    )
    p.add_argument("--teacher", required=True, help="fusion teacher folder (e.g. assets/shapes-vqa-teacher)")
    p.add_argument("--student", required=True, help="dual student folder (e.g. assets/shapes-vqa-student)")
    p.add_argument("--out", default="assets/results/speed.json", help="JSON file to write (atomically)")
    p.add_argument("--quick", action="store_true", help="tiny settings (seconds; for tests and smoke runs)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None, help=f"default: {_shown('batch_sizes')}")
    p.add_argument(
        "--retrieval-sizes", type=int, nargs="*", default=None, help=f"N of N x N; default: {_shown('retrieval_sizes')}"
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's setting)")
    p.add_argument(
        "--min-run-time", type=float, default=None, help=f"seconds timed per cell (default {_shown('min_run_time')})"
    )
    p.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help=f"longest predicted retrieval run still measured (default {_shown('budget_s')})",
    )
    p.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=_default("runtime"),
        help="how the latency / throughput paths run: eager PyTorch, torch.compile (slow to compile), or both models "
        "exported to ONNX Runtime (CPU; the lowest per-call overhead, used for the shipped table)",
    )
    p.add_argument("--compile", action="store_true", help="the same as --runtime compile")
    p.add_argument("--device", default="cpu")
    add_publish_option(p, "the tables")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> None:
    from workbench.bench import QUICK, benchmark_pair, speed_table, write_speed

    settings = dict(QUICK) if args.quick else {}
    for key in SETTINGS:
        if getattr(args, key) is not None:
            settings[key] = tuple(getattr(args, key)) if key.endswith("sizes") else getattr(args, key)
    results = benchmark_pair(
        args.teacher,
        args.student,
        threads=args.threads,
        runtime="compile" if args.compile else args.runtime,
        device=args.device,
        progress=not args.no_progress,
        **settings,
    )
    out = write_speed(results, args.out)
    publish(speed_table(results), out, args.readme, "speed")
