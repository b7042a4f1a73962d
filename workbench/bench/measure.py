"""How one call is measured: time (`torch.utils.benchmark`), arithmetic (FLOPs), peak memory, and the machine.

Peak memory. On CUDA: `torch.cuda.max_memory_allocated` above the level before the call. On CPU
(no allocator statistics): a `TorchDispatchMode` adds up the storage of every tensor the call
creates and subtracts it when that storage is freed; the peak of that running sum is reported.
It counts activations and outputs, not the weights (reported separately as ``weight_bytes``),
the inputs, or scratch buffers private to a kernel; it is exact for what it counts and does not
depend on the allocator or on other processes, unlike RSS.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.benchmark import Measurement, Timer
from torch.utils.flop_counter import FlopCounterMode


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_blocks(fn: Callable[[], object], threads: int, min_run_time: float, label: str) -> Measurement:
    """Warm up, then `blocked_autorange`: blocks of calls until `min_run_time` seconds are spent."""
    fn()  # warm-up (first-call allocations, lazy inits, compilation)
    timer = Timer("fn()", globals={"fn": fn}, num_threads=threads, label=label)
    return timer.blocked_autorange(min_run_time=min_run_time)


def time_rounds(
    fns: dict[str, Callable[[], object]], threads: int, min_run_time: float, rounds: int, label: str
) -> dict[str, list[Measurement]]:
    """Interleaved rounds: every call of `fns` once per round, in turn (a, b, c, a, b, c, ...), so load that comes
    and goes on the machine falls on all of them alike. Each is warmed up once; a round times a call for
    `min_run_time / rounds` seconds (`blocked_autorange`), or once when a single call takes longer than that."""
    budget = min_run_time / rounds
    single = {}
    for name, fn in fns.items():  # warm-up, and how long one call takes
        start = time.perf_counter()
        fn()
        single[name] = time.perf_counter() - start > budget / 2
    out: dict[str, list[Measurement]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            timer = Timer("fn()", globals={"fn": fn}, num_threads=threads, label=f"{label} {name}")
            out[name].append(timer.timeit(1) if single[name] else timer.blocked_autorange(min_run_time=budget))
    return out


def round_timing(ms: list[Measurement]) -> dict:
    """The JSON fields of interleaved rounds: the median of the round medians, the interquartile range of all the
    timed blocks, the number of calls, and each round's median."""
    medians = [m.median for m in ms]
    merged = Measurement.merge(ms)[0]
    return {
        "median_s": statistics.median(medians),
        "iqr_s": merged.iqr,
        "runs": sum(len(m.times) * m.number_per_run for m in ms),
        "round_medians_s": medians,
    }


def time_repeats(fn: Callable[[], object], threads: int, repeats: int, label: str) -> Measurement:
    """For calls too long to run in blocks: `repeats` single calls (no extra warm-up), merged."""
    timer = Timer("fn()", globals={"fn": fn}, num_threads=threads, label=label)
    return Measurement.merge([timer.timeit(1) for _ in range(repeats)])[0]


def timing(m: Measurement) -> dict:
    """The JSON fields of a measurement: median, interquartile range, number of calls."""
    return {"median_s": m.median, "iqr_s": m.iqr, "runs": len(m.times) * m.number_per_run}


@contextmanager
def attention_mode(model: nn.Module, mode: str) -> Iterator[None]:
    """Temporarily run `model` (teacher or student) with attention "eager", "sdpa" or "auto"."""
    old = model.attn_implementation
    model.attn_implementation = mode
    try:
        yield
    finally:
        model.attn_implementation = old


def count_flops(model: nn.Module, fn: Callable[[], object]) -> int:
    """FLOPs of one call of `fn` (which runs `model`), counted on the eager attention path."""
    with attention_mode(model, "eager"), FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


class _TensorMemory(TorchDispatchMode):
    """Running sum of the storage bytes of tensors created inside the block, minus those freed."""

    def __init__(self, ignore: set[int]):
        super().__init__()
        self.ignore = ignore
        self.live: dict[int, int] = {}
        self.current = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                self._track(t.untyped_storage())
        return out

    def _track(self, storage) -> None:
        key = storage._cdata
        if key in self.ignore or key in self.live:
            return
        n = storage.nbytes()
        self.live[key] = n
        self.current += n
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self._free, key)

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)


def _storages(*objs) -> set[int]:
    keys = set()
    for obj in objs:
        tensors = obj.state_dict(keep_vars=True).values() if isinstance(obj, nn.Module) else pytree.tree_leaves(obj)
        keys.update(t.untyped_storage()._cdata for t in tensors if isinstance(t, torch.Tensor))
    return keys


def peak_memory(fn: Callable[[], object], model: nn.Module, inputs=(), device: torch.device | None = None) -> int:
    """Peak bytes of memory `fn` allocates above what it starts with (see the module docstring)."""
    device = device or next(model.parameters()).device
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    tracker = _TensorMemory(_storages(model, inputs))
    with tracker:
        out = fn()
    del out
    return int(tracker.peak)


def count_parameters(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def load_average() -> dict | None:
    """/proc/loadavg (1, 5 and 15 minute load averages, runnable / total tasks), or os.getloadavg, or None."""
    try:
        one, five, fifteen, tasks = Path("/proc/loadavg").read_text().split()[:4]
        return {"1min": float(one), "5min": float(five), "15min": float(fifteen), "tasks": tasks}
    except (OSError, ValueError):
        if hasattr(os, "getloadavg"):
            one, five, fifteen = os.getloadavg()
            return {"1min": one, "5min": five, "15min": fifteen}
        return None


def machine_info(threads: int, device: torch.device) -> dict:
    """What the numbers were measured on."""
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "threads": threads,
        "device": str(device),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    if hasattr(os, "getloadavg"):  # other work on the machine slows every path; say how busy it was
        info["load_average_1min_at_start"] = round(os.getloadavg()[0], 2)
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
