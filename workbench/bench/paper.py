"""`benchmark_preset`: a size preset's teacher against its students (random weights, "speed only: untrained
weights"), in each runtime, and the best-runtime ratios the acceptance targets are about.

Each (student, runtime) is one `benchmark_pair` run (the teacher timed again in every run, interleaved with that
student: a ratio never compares timings taken minutes apart). A runtime that fails at this size (an export that
errors out) is recorded with its error instead of numbers. "Best runtime": each path's fastest median over the
runtimes that ran; the range of a best-runtime ratio is the extreme ratios of those two cells' rounds (they come
from separate runs, so not interleaved).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from workbench.bench.measure import load_average
from workbench.bench.preset import UNTRAINED, preset_checkpoints
from workbench.bench.run import benchmark_pair
from workbench.configs.bench import PRESETS

TARGETS = {"cached_speedup_batch_1": 8.0, "fraction_of_flop_ratio_batch_32": 0.7}


def batches_of(run: dict, path: str) -> dict[str, dict]:
    """{batch size: cell} of `path` in one run ({} for a run that failed)."""
    return run.get("paths", {}).get(path, {}).get("batches", {})


def _best(runs: dict[str, dict], path: str, b: str) -> tuple[str, dict] | None:
    """(runtime, cell) of `path`'s fastest median at batch `b` over the runtimes that ran."""
    cells = [(rt, cell) for rt, r in runs.items() if (cell := batches_of(r, path).get(b)) is not None]
    return min(cells, key=lambda c: c[1]["median_s"]) if cells else None


def best_ratios(runs: dict[str, dict], batch_sizes: tuple[int, ...]) -> dict[str, dict]:
    """Per batch size and student path: the best-runtime teacher over the best-runtime student path (times in ms
    per example)."""
    out = {}
    for b in map(str, batch_sizes):
        teacher = _best(runs, "teacher", b)
        if teacher is None:
            continue
        row = {"teacher_runtime": teacher[0], "teacher_ms": teacher[1]["per_example_ms"]}
        for path in ("student", "student_cached"):
            rt, cell = _best(runs, path, b)
            t_rounds, s_rounds = teacher[1]["round_medians_s"], cell["round_medians_s"]
            speedup = teacher[1]["median_s"] / cell["median_s"]
            flop_ratio = teacher[1]["flops_per_example"] / cell["flops_per_example"]
            row[path] = {
                "runtime": rt,
                "ms": cell["per_example_ms"],
                "speedup": speedup,
                "speedup_range": [min(t_rounds) / max(s_rounds), max(t_rounds) / min(s_rounds)],
                "flop_ratio": flop_ratio,
                "fraction_of_flop_ratio": speedup / flop_ratio,
            }
        out[b] = row
    return out


def check_targets(best: dict[str, dict], batch_sizes: tuple[int, ...]) -> dict:
    """The acceptance targets against the best-runtime cached student (None where a batch size was not run)."""
    first, last = str(min(batch_sizes)), str(max(batch_sizes))
    b1 = best.get(first, {}).get("student_cached", {}).get("speedup")
    frac = best.get(last, {}).get("student_cached", {}).get("fraction_of_flop_ratio")
    return {
        "cached_speedup_batch_1": {"target": TARGETS["cached_speedup_batch_1"], "measured": b1,
                                   "met": None if b1 is None or first != "1" else b1 >= 8.0},
        "fraction_of_flop_ratio_batch_32": {"target": TARGETS["fraction_of_flop_ratio_batch_32"], "measured": frac,
                                            "met": None if frac is None or last != "32" else frac >= 0.7},
    }  # fmt: skip


def _run(teacher, student, runtime: str, settings: dict, say: Callable[[str], None]) -> dict:
    try:
        return benchmark_pair(teacher, student, runtime=runtime, retrieval_sizes=(), progress=say, **settings)
    except Exception as e:  # noqa: BLE001 - a runtime that fails at this size is a result: say which and why
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}


def benchmark_preset(
    name: str,
    runtimes: tuple[str, ...] = ("eager", "onnx"),
    students: tuple[str, ...] | None = None,
    batch_sizes: tuple[int, ...] = (1, 8, 32),
    rounds: int = 5,
    min_run_time: float = 1.0,
    threads: int = 2,
    n_examples: int = 32,
    coco: dict | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Preset `name`'s teacher against each of its students in each runtime, the best-runtime ratios, the
    acceptance targets and (`coco`: keyword arguments of `coco_retrieval`, or None to skip) COCO-5k retrieval."""
    from workbench.bench.coco import coco_retrieval

    say = progress or (lambda message: None)
    load_before, started = load_average(), time.perf_counter()
    teacher, checkpoints = preset_checkpoints(name, students)
    settings = dict(batch_sizes=batch_sizes, rounds=rounds, min_run_time=min_run_time, threads=threads,
                    n_examples=n_examples)  # fmt: skip
    out: dict = {"label": UNTRAINED, "preset": name, "size": PRESETS[name]["size"], "students": {}}
    for s_name, student in checkpoints.items():
        runs = {rt: _run(teacher, student, rt, settings, lambda m, s=s_name, rt=rt: say(f"{s} {rt}: {m}"))
                for rt in runtimes}  # fmt: skip
        best = best_ratios(runs, batch_sizes)
        entry = {"overrides": PRESETS[name]["students"][s_name], "runs": runs, "best": best}
        out["students"][s_name] = {**entry, "targets": check_targets(best, batch_sizes)}
        if coco is not None and "1" in best:
            per_pair = min(r["paths"]["teacher"]["batches"][str(max(batch_sizes))]["median_s"] / max(batch_sizes)
                           for r in runs.values() if "paths" in r)  # fmt: skip
            out["students"][s_name]["coco5k"] = coco_retrieval(student, per_pair, threads=threads, **coco)
            say(f"{s_name} COCO-5k retrieval done")
    out["load_average"] = {"before": load_before, "after": load_average()}
    out["wall_time_s"] = time.perf_counter() - started
    return out
