"""`benchmark_pair`: one benchmark run from checkpoints to a JSON-able result (see `workbench.bench`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import torch

from workbench.bench.latency import PATHS, empty_paths, measure_paths, model_info, speed_ratios
from workbench.bench.measure import machine_info
from workbench.bench.pair import BenchInputs, Pair, load_examples, median_first, resolve
from workbench.bench.retrieval_speed import choose_ranker, measure_retrieval
from workbench.models.dual import DualStudent
from workbench.models.fusion import FusionTeacher
from workbench.models.io import Checkpoint

FORMAT_VERSION = 1
# "bf16": eager PyTorch under bf16 autocast (matrix products in bfloat16; `workbench.models.precision`)
RUNTIMES = ("eager", "bf16", "compile", "onnx")
QUICK = dict(batch_sizes=(1, 4), retrieval_sizes=(4, 8), min_run_time=0.05, budget_s=2.0, n_examples=8)
METHODS = {
    "timing": "torch.utils.benchmark.Timer after one warm-up call, fixed threads; the three paths of a batch size "
    "timed in interleaved rounds (teacher, student, cached student, teacher, ...), blocked_autorange in each (a "
    "single call when one is longer than the round); a cell's time is the median of its round medians, its IQR "
    "that of all timed blocks; a ratio is the median of the rounds' ratios, with their range (long retrieval "
    "runs: repeated single calls)",
    "flops": "torch.utils.flop_counter.FlopCounterMode over one call, eager attention (the counter does not "
    "see the fused CPU kernel; the arithmetic is the same); divided by the batch size",
    "memory": "CUDA: max_memory_allocated above the starting level. CPU: peak of the running sum of storage "
    "bytes of tensors created by the call and not yet freed (a TorchDispatchMode); excludes weights "
    "(weight_bytes), inputs and kernel-private scratch",
    "retrieval": "teacher: one joint pass per (image, text) pair, texts batched; student: every image and "
    "text encoded once, ranked by a matrix product of retrieval embeddings; top-k per text",
}


def _check(tm, sm, batch_sizes: tuple[int, ...], runtime: str) -> None:
    if not isinstance(tm, FusionTeacher) or not isinstance(sm, DualStudent):
        raise TypeError("benchmark_pair takes a fusion teacher and a dual student")
    if not batch_sizes:
        raise ValueError("batch_sizes is empty")
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime {runtime!r}: one of {RUNTIMES}")


@contextmanager
def _progress(progress: bool | Callable[[str], None], steps: int) -> Iterator[Callable[[str], None]]:
    """A `step(message)` that advances a tqdm bar (`progress` True), calls `progress`, or does nothing."""
    bar, say = None, (progress if callable(progress) else None)
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="bench")

    def step(message: str) -> None:
        if bar is not None:
            bar.set_postfix_str(message)
            bar.update(1)
        elif say is not None:
            say(message)

    try:
        yield step
    finally:
        if bar is not None:
            bar.close()


@contextmanager
def _run_settings(tm: FusionTeacher, sm: DualStudent, threads: int) -> Iterator[None]:
    """`threads` CPU threads and fused attention for the run; both restored afterwards."""
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    # fused attention, said explicitly: "auto" would decide per call, which torch.compile cannot trace
    old_attention = tm.attn_implementation, sm.attn_implementation
    tm.attn_implementation = sm.attn_implementation = "sdpa"
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        tm.attn_implementation, sm.attn_implementation = old_attention


def benchmark_pair(
    teacher: Checkpoint | str | Path,
    student: Checkpoint | str | Path,
    batch_sizes: tuple[int, ...] = (1, 8, 32, 128),
    retrieval_sizes: tuple[int, ...] = (10, 100, 1000),
    threads: int | None = None,
    min_run_time: float = 1.0,
    budget_s: float = 60.0,
    n_examples: int = 64,
    top_k: int = 10,
    ranker: str = "auto",
    runtime: str = "eager",
    device: str | None = None,
    progress: bool | Callable[[str], None] = False,
    rounds: int = 5,
) -> dict:
    """Speed of a fusion teacher and its dual student, as a JSON-able dict (see `workbench.bench`).

    `threads`: CPU threads for every timed call (default: torch's current setting). `min_run_time`:
    seconds spent timing each latency / throughput cell. `budget_s`: the longest a single retrieval
    run may be predicted to take and still be run (beyond it the teacher is extrapolated).
    `ranker`: "matmul", "faiss" (needs faiss-cpu) or "auto" (faiss if installed). `runtime`: how the three latency /
    throughput paths run: "eager", "compile" (`torch.compile`, static shapes) or "onnx" (each model exported
    and run in ONNX Runtime, CPU; `workbench.onnx_runtime`); FLOPs and memory are always measured on the plain
    eager models. `progress`: True for a tqdm bar, or a callable taking a message. `rounds`: each latency /
    throughput cell is timed in `rounds` interleaved rounds (teacher, student, cached student, teacher, ...), its
    `min_run_time` shared between them; each ratio is the median of the rounds' ratios, with their range.
    """
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    t_ck, s_ck = resolve(teacher, "fusion", device), resolve(student, "dual", device)
    tm, sm = t_ck.model.eval(), s_ck.model.eval()
    _check(tm, sm, batch_sizes, runtime)
    threads = threads or torch.get_num_threads()
    ranker = choose_ranker(ranker)
    sizes = sorted(retrieval_sizes) if t_ck.meta.get("num_images", 1) == 1 else []
    steps = len(PATHS) * len(batch_sizes) + 2 * len(sizes)
    with _progress(progress, steps) as step:
        started = time.perf_counter()
        examples, source = load_examples(t_ck, n_examples)
        examples = median_first(examples, t_ck.tokenizer)
        t_in, s_in = BenchInputs(t_ck, examples), BenchInputs(s_ck, examples)
        pair = Pair(tm, sm, t_in, s_in, threads, min_run_time, step, rounds)
        paths = empty_paths(tm, sm)
        with _run_settings(tm, sm, threads):
            runners = tuple(torch.compile(m, dynamic=False) if runtime == "compile" else m for m in (tm, sm))
            with torch.inference_mode():
                tokens = measure_paths(pair, paths, batch_sizes, runtime, runners)
                retrieval = measure_retrieval(pair, sizes, paths, budget_s, max(batch_sizes), top_k, ranker)
            attention = {"teacher": tm.attn_implementation, "student": sm.attn_implementation}
    settings = {
        "batch_sizes": list(batch_sizes),
        "retrieval_sizes": sizes,
        "min_run_time_s": min_run_time,
        "rounds": rounds,
        "budget_s": budget_s,
        "examples": len(examples),
        "inputs": source,
        "runtime": runtime,
        "inference_mode": True,
        "attention": attention,
    }
    return {
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(threads, next(tm.parameters()).device),
        "settings": settings,
        "models": {"teacher": model_info(t_ck), "student": model_info(s_ck)},
        "tokens": tokens,
        "paths": paths,
        "ratios": speed_ratios(paths, batch_sizes),
        "retrieval": retrieval,
        "methods": dict(METHODS),
        "wall_time_s": time.perf_counter() - started,
    }
