"""Why the speed-up grows with size: the cached student's ratio to its teacher against model width.

At a small width a layer's matrix products are tiny and each call is mostly fixed per-operator overhead, which
both models pay per layer; as the width grows the arithmetic (quadratic in width) takes over and the measured
ratio climbs towards the FLOP ratio. Models of the `vilt-b32` preset's geometry (145 image tokens, so the FLOP ratio
is large at every width) at widths `widths`, `layers` layers (heads of 64 dims), random weights, batch 1, eager,
interleaved rounds (`benchmark_pair`).
"""

from __future__ import annotations

import time

from workbench.bench.preset import UNTRAINED, preset_checkpoints
from workbench.bench.run import benchmark_pair


def width_curve(
    widths: tuple[int, ...] = (64, 128, 256, 512, 768),
    layers: int = 2,
    rounds: int = 5,
    threads: int = 1,
    min_run_time: float = 0.5,
    preset: str = "vilt-b32",
) -> dict:
    """{label, settings, points: [{width, teacher_ms, cached_ms, speedup, range, flop_ratio}]}."""
    points, started = [], time.perf_counter()
    for w in widths:
        size = dict(hidden_size=w, num_layers=layers, num_heads=max(1, w // 64))
        teacher, students = preset_checkpoints(preset, ("student",), **size)
        r = benchmark_pair(teacher, students["student"], batch_sizes=(1,), retrieval_sizes=(), threads=threads,
                           min_run_time=min_run_time, n_examples=8, rounds=rounds)  # fmt: skip
        ratio, paths = r["ratios"]["1"], r["paths"]
        points.append({
            "width": w,
            "teacher_ms": paths["teacher"]["batches"]["1"]["per_example_ms"],
            "cached_ms": paths["student_cached"]["batches"]["1"]["per_example_ms"],
            "speedup": ratio["student_cached_speedup"],
            "speedup_range": ratio["student_cached_speedup_range"],
            "flop_ratio": ratio["student_cached_flop_ratio"],
        })  # fmt: skip
    settings = dict(preset=preset, layers=layers, batch_size=1, runtime="eager", rounds=rounds, threads=threads)
    return {"label": UNTRAINED, "settings": settings, "points": points, "wall_time_s": time.perf_counter() - started}
