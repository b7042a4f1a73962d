"""`workbench bench`: latency, throughput, FLOPs, memory and retrieval scaling of a teacher and its student."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

from workbench.cli.common import add_publish_option, publish
from workbench.errors import WorkbenchError

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
    from workbench.bench.preset import UNTRAINED, preset_names

    p.add_argument("--teacher", help="fusion teacher folder (e.g. assets/shapes-vqa-teacher)")
    p.add_argument("--student", help="dual student folder (e.g. assets/shapes-vqa-student)")
    p.add_argument(
        "--preset",
        choices=preset_names(),
        help=f"instead of folders: a size preset's teacher and students with random weights ({UNTRAINED}), every "
        "runtime of --runtimes, batches 1/8/32, best-runtime ratios, COCO-5k retrieval; written as the --section "
        "section of OUT (the file's other sections kept)",
    )
    p.add_argument("--section", default="paper_scale", help="the OUT section a --preset run writes")
    p.add_argument(
        "--runtimes", nargs="+", choices=RUNTIMES, default=["eager", "onnx"], help="--preset: the runtimes to run"
    )
    p.add_argument("--students", nargs="+", default=None, help="--preset: which of its students (default all)")
    p.add_argument("--no-coco", action="store_true", help="--preset: skip the COCO-5k retrieval row")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds per cell; ratios are their median")
    p.add_argument(
        "--width-curve",
        type=int,
        nargs="+",
        default=None,
        metavar="WIDTH",
        help="instead: the cached student's speed-up against model width (2 layers, batch 1), written as OUT's "
        "width_curve section",
    )
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


def _merged(path: str, name: str, section: dict) -> dict:
    """`section` merged with what an earlier run of the same preset wrote into `path`: students this run did not
    time are kept, and a student timed again keeps the runtimes this run did not repeat (its best-runtime ratios
    and targets recomputed over all of its runs), so students and runtimes can be measured in separate runs."""
    import json
    from pathlib import Path

    from workbench.bench.paper import batches_of, best_ratios, check_targets

    old = json.loads(Path(path).read_text()).get(name) if Path(path).exists() else None
    if not old or old.get("preset") != section["preset"]:
        return section
    students = dict(old["students"])
    for s_name, entry in section["students"].items():
        before = students.get(s_name)
        if before is None:
            students[s_name] = entry
            continue
        runs = {**before["runs"], **entry["runs"]}
        sizes = tuple(sorted({int(b) for r in runs.values() for b in batches_of(r, "teacher")}))
        best = best_ratios(runs, sizes)
        students[s_name] = {**before, **entry, "runs": runs, "best": best, "targets": check_targets(best, sizes)}
    invocations = [*old.get("invocations", [old["load_average"]]), section["load_average"]]
    ran = {rt for entry in students.values() for rt, r in entry["runs"].items() if "paths" in r}
    reasons = {**section.get("not_run", {}), **old.get("not_run", {})}  # the earlier run's reasons say more
    not_run = {rt: why for rt, why in reasons.items() if rt not in ran}
    return {**old, **section, "students": students, "invocations": invocations, "not_run": not_run}


def _run_preset(args: argparse.Namespace) -> None:
    from workbench.bench import RUNTIMES, merge_speed_section, preset_table
    from workbench.bench.paper import benchmark_preset

    quick = dict(batch_sizes=(1, 4), min_run_time=0.05, n_examples=8) if args.quick else {}
    if args.batch_sizes:
        quick["batch_sizes"] = tuple(args.batch_sizes)
    if args.min_run_time is not None:
        quick["min_run_time"] = args.min_run_time
    coco = None if args.no_coco else (dict(sample_images=4, sample_texts=16, rounds=1) if args.quick else {})
    say = None if args.no_progress else (lambda message: print(message, flush=True))
    section = benchmark_preset(
        args.preset, tuple(args.runtimes), tuple(args.students) if args.students else None, rounds=args.rounds,
        threads=args.threads or 2, coco=coco, progress=say, **quick,
    )  # fmt: skip
    section["not_run"] = {rt: "not requested (--runtimes)" for rt in RUNTIMES if rt not in args.runtimes}
    section = _merged(args.out, args.section, section)
    out = merge_speed_section(args.out, args.section, section)
    print(preset_table(section))
    print(f"wrote {args.section} into {out}")
    if args.readme:
        _publish_whole(out, args.readme)


def _run_widths(args: argparse.Namespace) -> None:
    from workbench.bench import merge_speed_section, width_table
    from workbench.bench.width import width_curve

    curve = width_curve(tuple(args.width_curve), rounds=args.rounds, threads=args.threads or 1)
    out = merge_speed_section(args.out, "width_curve", curve)
    print(width_table(curve))
    print(f"wrote width_curve into {out}")
    if args.readme:
        _publish_whole(out, args.readme)


def _publish_whole(out, readme: str | None) -> None:
    """The speed tables of the whole JSON at `out` (the pair's, and the sections --preset and --width-curve runs add
    to it), printed and, with --readme, written into that file's speed section: whichever kind of run writes, the
    published section is the file's, never one run's part of it."""
    import json

    from workbench.bench import speed_table

    results = json.loads(Path(out).read_text())
    if "paths" in results:  # the pair's results, which the tables open with
        publish(speed_table(results), out, readme, "speed")


def run(args: argparse.Namespace) -> None:
    from workbench.bench import QUICK, benchmark_pair, write_speed

    if args.width_curve:
        return _run_widths(args)
    if args.preset:
        return _run_preset(args)
    if not (args.teacher and args.student):
        raise WorkbenchError("workbench bench: give --teacher and --student folders, or --preset NAME")
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
        rounds=args.rounds,
        **settings,
    )
    _publish_whole(write_speed(results, args.out), args.readme)
