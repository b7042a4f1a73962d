"""How fast the dual student is next to its fusion teacher, measured (DESIGN.md §7).

`benchmark_pair(teacher, student)` times three inference paths with `torch.utils.benchmark`
(warm-up, fixed thread count, median and interquartile range over timed blocks):

* ``teacher``: the fusion model, one joint pass over ``T + images * (1 + P)`` tokens per query;
* ``student``: the dual student end to end (image tower + text tower + fusion head);
* ``student_cached``: the student with the image features already computed (text tower + head),
  the case of many questions about one image, or of a gallery encoded ahead of time.

Beside each time stand the arithmetic (FLOPs per example from `torch.utils.flop_counter`, counted
on the eager attention path because the counter does not see the fused CPU attention kernel; the
arithmetic is the same), the parameters the path touches per query, and its peak memory.

Retrieval over N images x N texts: the teacher must run one joint pass per pair (N^2); the
student encodes every image and every text once and ranks with one matrix product of its
retrieval embeddings. Teacher runs predicted to exceed `budget_s` are not run: their time is
extrapolated from the per-pair cost measured at the largest N that was run, and marked
``"extrapolated": true`` with the basis. The smallest N is always measured.

Peak memory. On CUDA: `torch.cuda.max_memory_allocated` above the level before the call. On CPU
(no allocator statistics): a `TorchDispatchMode` adds up the storage of every tensor the call
creates and subtracts it when that storage is freed; the peak of that running sum is reported.
It counts activations and outputs, not the weights (reported separately as ``weight_bytes``),
the inputs, or scratch buffers private to a kernel; it is exact for what it counts and does not
depend on the allocator or on other processes, unlike RSS.

All model calls run under `torch.inference_mode()`, with fused (SDPA) attention in both models
(`attn_implementation = "sdpa"` for the run: the teacher's own fused path, HF's for the towers).
`runtime="compile"` times `torch.compile`d models; `runtime="onnx"` times both models exported to ONNX
Runtime (`workbench.onnx_runtime`), whose lower per-operator overhead is what decides batch 1 (README
"Speed": the cached student's call 0.105 ms there against 0.26-0.35 ms compiled).
"""

from __future__ import annotations

import os
import platform
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.benchmark import Measurement, Timer
from torch.utils.flop_counter import FlopCounterMode

from workbench.models.dual import DualStudent
from workbench.models.fusion import FusionTeacher
from workbench.models.io import Checkpoint, load_checkpoint, write_json_atomic

FORMAT_VERSION = 1
RUNTIMES = ("eager", "compile", "onnx")
RUNTIME_LABELS = {"eager": "in eager PyTorch", "compile": "`torch.compile`d", "onnx": "in ONNX Runtime (exported)"}
PATHS = ("teacher", "student", "student_cached")
PATH_LABELS = {
    "teacher": "fusion teacher",
    "student": "dual student (end to end)",
    "student_cached": "dual student (image features cached)",
}
# used only when the checkpoint names no dataset the workbench can generate
FALLBACK_TEXTS = (
    "what colour is the circle?",
    "is there a red square?",
    "how many triangles are there?",
    "what shape is left of the blue circle?",
    "is the large square in the top row?",
    "are there more circles than squares?",
)
QUICK = dict(batch_sizes=(1, 4), retrieval_sizes=(4, 8), min_run_time=0.05, budget_s=2.0, n_examples=8)


# ---------------------------------------------------------------------------------------- inputs


def _examples(ck: Checkpoint, n: int) -> tuple[list, str]:
    """(`n` test examples of the checkpoint's dataset, its name), or noise images with fixed
    questions when it names none we can load. Content does not change the cost; length does."""
    from workbench.data import load_dataset
    from workbench.data.shapes import Example

    dataset = ck.meta.get("dataset")
    if dataset:
        try:
            data = load_dataset(dataset, "test", n)
            return [data[i] for i in range(min(n, len(data)))], f"{dataset} test split"
        except Exception:  # noqa: BLE001 - an unavailable dataset only means synthetic inputs
            pass
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    size, k = ck.image_size, ck.meta.get("num_images", 1)
    noise = [
        Image.fromarray(torch.randint(0, 256, (size, size, 3), generator=g, dtype=torch.uint8).numpy())
        for _ in range(k * n)
    ]
    texts = [FALLBACK_TEXTS[i % len(FALLBACK_TEXTS)] for i in range(n)]
    return [Example(noise[k * i : k * i + k], texts[i], 0, "synthetic") for i in range(n)], "synthetic"


def _median_first(examples: list, tokenizer) -> list:
    """Put an example of median question length first: batch-1 timings use the first example."""
    lengths = [len(tokenizer(e.text)["input_ids"]) for e in examples]
    order = sorted(range(len(examples)), key=lambda i: lengths[i])
    mid = order[len(order) // 2]
    return [examples[mid]] + [e for i, e in enumerate(examples) if i != mid]


class _Inputs:
    """Batches of a checkpoint's collated examples, cycled to any size."""

    def __init__(self, ck: Checkpoint, examples: list):
        from workbench.data import Collator

        self.collate = Collator.for_model(ck.model, ck.tokenizer)
        self.examples = examples
        self.device = next(ck.model.parameters()).device

    def batch(self, start: int, size: int):
        items = [self.examples[(start + i) % len(self.examples)] for i in range(size)]
        b = self.collate(items).to(self.device)
        return b.input_ids, b.attention_mask, b.pixel_values


# ------------------------------------------------------------------------------------ measuring


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], object], threads: int, min_run_time: float, label: str) -> Measurement:
    """Warm up, then `blocked_autorange`: blocks of calls until `min_run_time` seconds are spent."""
    fn()  # warm-up (first-call allocations, lazy inits, compilation)
    timer = Timer("fn()", globals={"fn": fn}, num_threads=threads, label=label)
    return timer.blocked_autorange(min_run_time=min_run_time)


def _time_repeats(fn: Callable[[], object], threads: int, repeats: int, label: str) -> Measurement:
    """For calls too long to run in blocks: `repeats` single calls (no extra warm-up), merged."""
    timer = Timer("fn()", globals={"fn": fn}, num_threads=threads, label=label)
    return Measurement.merge([timer.timeit(1) for _ in range(repeats)])[0]


def _timing(m: Measurement) -> dict:
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


def _params(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def path_parameters(teacher: nn.Module, student: DualStudent) -> dict[str, int]:
    """Parameters each path uses per query (the cached path does not run the image tower)."""
    head = (student.fusion, student.classifier)
    return {
        "teacher": _params(teacher),
        "student": _params(student.image_tower, student.text_tower, *head),
        "student_cached": _params(student.text_tower, *head),
        "student_retrieval": _params(student.image_tower, student.text_tower, student.image_proj, student.text_proj),
    }


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


def _path_calls(tm: FusionTeacher, sm: DualStudent, t_in: _Inputs, s_in: _Inputs, b: int):
    """{path: (model, fn, inputs)} for a batch of `b`, where `fn(m, *inputs)` runs the batch on `m` (the model or
    its compiled form) and returns the logits; and the batch's token counts."""
    ids, mask, pixels = t_in.batch(0, b)
    s_ids, s_mask, s_pixels = s_in.batch(0, b)
    cached = tuple(sm.encode_image(s_pixels[:, j]) for j in range(s_pixels.shape[1]))
    calls = {
        "teacher": (tm, lambda m, i, a, p: m(i, a, p).logits, (ids, mask, pixels)),
        "student": (sm, lambda m, i, a, p: m(i, a, p).logits, (s_ids, s_mask, s_pixels)),
        "student_cached": (sm, lambda m, i, a, *c: m(i, a, image_states=list(c)).logits, (s_ids, s_mask, *cached)),
    }
    tokens = {
        "text_mean": float(mask.sum(1).float().mean()),
        "text_padded": ids.shape[1],
        "image": int(cached[0].shape[1]),
        "images_per_query": pixels.shape[1],
        "teacher_sequence_mean": float(mask.sum(1).float().mean()) + int(cached[0].shape[1]),
    }
    return calls, tokens


def _cell(model, fn, inputs, timed: Callable[[], object], b: int, threads: int, min_run_time: float, label: str):
    """One latency / throughput cell: `timed()` is the call to time (the eager, compiled or ONNX Runtime form of
    `fn(model, *inputs)`, a batch of `b`); FLOPs and memory are counted on the plain `model`."""
    m = _time(timed, threads, min_run_time, label)
    return {
        "batch_size": b,
        **_timing(m),
        "per_example_ms": 1000 * m.median / b,
        "throughput_per_s": b / m.median,
        "flops_per_example": count_flops(model, lambda: fn(model, *inputs)) / b,
        "peak_memory_bytes": peak_memory(lambda: fn(model, *inputs), model, inputs),
    }


def _timed_call(runtime: str, model: nn.Module, runner: nn.Module, fn, inputs, threads: int):
    """The zero-argument call a cell times: `fn` on the compiled `runner` (or the model itself), or through
    ONNX Runtime."""
    if runtime == "onnx":
        from workbench.onnx_runtime import onnx_call

        return onnx_call(model, fn, inputs, threads)

    @torch.inference_mode()
    def timed():
        return fn(runner, *inputs)

    return timed


def _model_info(ck: Checkpoint) -> dict:
    m = ck.model
    if isinstance(m, FusionTeacher):
        c = m.config
        size = dict(hidden_size=c.hidden_size, layers=c.num_hidden_layers, heads=c.num_attention_heads)
        size.update(image_size=c.image_size, patch_size=c.patch_size)
    else:
        v, t = m.vision_config, m.text_config
        size = dict(hidden_size=t.hidden_size, image_layers=v.num_hidden_layers, text_layers=t.num_hidden_layers)
        size.update(heads=t.num_attention_heads, image_size=v.image_size, patch_size=v.patch_size)
    return {"path": str(ck.path), "kind": m.kind, "task": ck.meta.get("task"), "parameters": _params(m), **size}


# ------------------------------------------------------------------------------------ retrieval


def _rank(text_emb: torch.Tensor, image_emb: torch.Tensor, k: int, ranker: str) -> torch.Tensor:
    """Top-`k` image indices per text: one matrix product (or a faiss inner-product index)."""
    k = min(k, image_emb.shape[0])
    if ranker == "faiss":
        import faiss

        index = faiss.IndexFlatIP(image_emb.shape[1])
        index.add(image_emb.float().cpu().numpy())
        return torch.from_numpy(index.search(text_emb.float().cpu().numpy(), k)[1])
    return (text_emb @ image_emb.T).topk(k, dim=-1).indices


def _retrieval_fns(teacher, student, t_in: _Inputs, s_in: _Inputs, n: int, chunk: int, k: int, ranker: str):
    """Callables ranking n images for each of n texts: the teacher pair by pair, the student by embeddings."""
    t_chunks = [t_in.batch(i, min(chunk, n - i)) for i in range(0, n, chunk)]
    s_chunks = [s_in.batch(i, min(chunk, n - i)) for i in range(0, n, chunk)]
    t_text, t_images = [c[:2] for c in t_chunks], torch.cat([c[2] for c in t_chunks])
    s_text, s_images = [c[:2] for c in s_chunks], [c[2][:, 0] for c in s_chunks]

    @torch.inference_mode()
    def teacher_fn():
        columns = []
        for i in range(n):  # image i against every text, in text chunks: n * n joint passes
            image = t_images[i : i + 1]
            rows = [teacher(ids, mask, image.expand(len(ids), *image.shape[1:])).logits[:, -1] for ids, mask in t_text]
            columns.append(torch.cat(rows))
        return torch.stack(columns, dim=1).topk(min(k, n), dim=-1).indices  # [texts, images] scores

    @torch.inference_mode()
    def student_fn():
        images = torch.cat([student.embed_for_retrieval(image_states=student.encode_image(px))[1] for px in s_images])
        texts = torch.cat([student.embed_for_retrieval(student.encode_text(ids, m))[0] for ids, m in s_text])
        return _rank(texts, images, k, ranker)

    return teacher_fn, student_fn, (t_images, t_text), (s_images, s_text)


def _measure_or_extrapolate(
    fn, model, inputs, predicted: float, budget_s: float, threads: int, min_run_time: float, label: str, force: bool
) -> dict | None:
    """Time `fn` if its predicted run time fits the budget (or `force`); None means extrapolate."""
    if not force and predicted > budget_s:
        return None
    if predicted * 10 < min_run_time:
        m = _time(fn, threads, min_run_time, label)
    else:
        repeats = max(1, min(5, int(budget_s // max(predicted, 1e-9)) - 1))
        if predicted * 10 <= budget_s:
            fn()  # warm-up when it is cheap; at seconds per call, first-call costs are noise
        m = _time_repeats(fn, threads, repeats, label)
    return {**_timing(m), "extrapolated": False, "peak_memory_bytes": peak_memory(fn, model, inputs)}


# ---------------------------------------------------------------------------------------- driver


def _resolve(ck: Checkpoint | str | Path, kind: str, device: str | None) -> Checkpoint:
    if isinstance(ck, Checkpoint):
        return ck
    return load_checkpoint(ck, device=device or "cpu", kind=kind)


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
) -> dict:
    """Speed of a fusion teacher and its dual student, as a JSON-able dict (see the module docstring).

    `threads`: CPU threads for every timed call (default: torch's current setting). `min_run_time`:
    seconds spent timing each latency / throughput cell. `budget_s`: the longest a single retrieval
    run may be predicted to take and still be run (beyond it the teacher is extrapolated).
    `ranker`: "matmul", "faiss" (needs faiss-cpu) or "auto" (faiss if installed). `runtime`: how the three latency /
    throughput paths run: "eager", "compile" (`torch.compile`, static shapes) or "onnx" (each model exported
    and run in ONNX Runtime, CPU; `workbench.onnx_runtime`); FLOPs and memory are always measured on the plain
    eager models. `progress`: True for a tqdm bar, or a callable taking a message.
    """
    t_ck, s_ck = _resolve(teacher, "fusion", device), _resolve(student, "dual", device)
    tm, sm = t_ck.model.eval(), s_ck.model.eval()
    if not isinstance(tm, FusionTeacher) or not isinstance(sm, DualStudent):
        raise TypeError("benchmark_pair takes a fusion teacher and a dual student")
    if not batch_sizes:
        raise ValueError("batch_sizes is empty")
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime {runtime!r}: one of {RUNTIMES}")
    threads = threads or torch.get_num_threads()
    dev = next(tm.parameters()).device
    if ranker == "auto":
        try:
            import faiss  # noqa: F401

            ranker = "faiss"
        except ImportError:
            ranker = "matmul"
    one_image = t_ck.meta.get("num_images", 1) == 1
    sizes = sorted(retrieval_sizes) if one_image else []
    steps = len(PATHS) * len(batch_sizes) + 2 * len(sizes)
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

    started = time.perf_counter()
    examples, source = _examples(t_ck, n_examples)
    examples = _median_first(examples, t_ck.tokenizer)
    t_in, s_in = _Inputs(t_ck, examples), _Inputs(s_ck, examples)
    params = path_parameters(tm, sm)
    weight_bytes = {
        "teacher": sum(p.numel() * p.element_size() for p in tm.parameters()),
        "student": params["student"] * next(sm.parameters()).element_size(),
        "student_cached": params["student_cached"] * next(sm.parameters()).element_size(),
    }
    paths: dict[str, dict] = {
        name: {
            "label": PATH_LABELS[name],
            "parameters": params[name],
            "weight_bytes": weight_bytes[name],
            "batches": {},
        }
        for name in PATHS
    }
    tokens: dict[str, float] = {}
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    # fused attention, said explicitly: "auto" would decide per call, which torch.compile cannot trace
    old_attention = tm.attn_implementation, sm.attn_implementation
    tm.attn_implementation = sm.attn_implementation = "sdpa"
    run_t = torch.compile(tm, dynamic=False) if runtime == "compile" else tm
    run_s = torch.compile(sm, dynamic=False) if runtime == "compile" else sm
    try:
        with torch.inference_mode():
            for b in batch_sizes:
                calls, tokens_b = _path_calls(tm, sm, t_in, s_in, b)
                tokens = tokens_b if b == max(batch_sizes) else tokens
                for name, (model, fn, inputs) in calls.items():
                    timed = _timed_call(runtime, model, run_t if model is tm else run_s, fn, inputs, threads)
                    cell = _cell(model, fn, inputs, timed, b, threads, min_run_time, f"{name} batch {b}")
                    paths[name]["batches"][str(b)] = cell
                    step(f"{name} b={b}: {cell['per_example_ms']:.3f} ms/example")
            retrieval = _retrieval(
                tm, sm, t_in, s_in, sizes, paths, threads, min_run_time, budget_s, max(batch_sizes), top_k, ranker, step
            )
        attention = {"teacher": tm.attn_implementation, "student": sm.attn_implementation}
    finally:
        torch.set_num_threads(old_threads)
        tm.attn_implementation, sm.attn_implementation = old_attention
        if bar is not None:
            bar.close()
    ratios = {}
    for b in batch_sizes:
        t = paths["teacher"]["batches"][str(b)]
        row = {}
        for name in ("student", "student_cached"):
            c = paths[name]["batches"][str(b)]
            row[f"{name}_speedup"] = t["median_s"] / c["median_s"]
            row[f"{name}_flop_ratio"] = t["flops_per_example"] / c["flops_per_example"]
            row[f"{name}_fraction_of_flop_ratio"] = row[f"{name}_speedup"] / row[f"{name}_flop_ratio"]
        ratios[str(b)] = row
    return {
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(threads, dev),
        "settings": {
            "batch_sizes": list(batch_sizes),
            "retrieval_sizes": sizes,
            "min_run_time_s": min_run_time,
            "budget_s": budget_s,
            "examples": len(examples),
            "inputs": source,
            "runtime": runtime,
            "inference_mode": True,
            "attention": attention,
        },
        "models": {"teacher": _model_info(t_ck), "student": _model_info(s_ck)},
        "tokens": tokens,
        "paths": paths,
        "ratios": ratios,
        "retrieval": retrieval,
        "methods": {
            "timing": "torch.utils.benchmark.Timer.blocked_autorange after one warm-up call, fixed threads; median "
            "and interquartile range of per-block means (long retrieval runs: repeated single calls)",
            "flops": "torch.utils.flop_counter.FlopCounterMode over one call, eager attention (the counter does not "
            "see the fused CPU kernel; the arithmetic is the same); divided by the batch size",
            "memory": "CUDA: max_memory_allocated above the starting level. CPU: peak of the running sum of storage "
            "bytes of tensors created by the call and not yet freed (a TorchDispatchMode); excludes weights "
            "(weight_bytes), inputs and kernel-private scratch",
            "retrieval": "teacher: one joint pass per (image, text) pair, texts batched; student: every image and "
            "text encoded once, ranked by a matrix product of retrieval embeddings; top-k per text",
        },
        "wall_time_s": time.perf_counter() - started,
    }


def _retrieval(tm, sm, t_in, s_in, sizes, paths, threads, min_run_time, budget_s, chunk, k, ranker, step) -> dict:
    """Retrieval entries for each N; the teacher extrapolated beyond the budget, from measured cost."""
    cell = paths["teacher"]["batches"][str(chunk)]
    per_pair = cell["median_s"] / chunk  # first estimates, from the throughput cells at the chunk size
    per_item = paths["student"]["batches"][str(chunk)]["median_s"] / chunk  # one image + one text
    entries, basis, s_basis = [], None, None
    for i, n in enumerate(sizes):
        teacher_fn, student_fn, t_inputs, s_inputs = _retrieval_fns(tm, sm, t_in, s_in, n, chunk, k, ranker)
        t = _measure_or_extrapolate(
            teacher_fn,
            tm,
            t_inputs,
            n * n * per_pair,
            budget_s,
            threads,
            min_run_time,
            f"teacher retrieval {n}",
            i == 0,
        )
        if t is None:
            t = {
                "median_s": basis["per_pair_s"] * n * n,
                "iqr_s": None,
                "runs": 0,
                "extrapolated": True,
                "basis": basis,
                "peak_memory_bytes": None,
            }
        else:
            per_pair = t["median_s"] / (n * n)
            basis = {"from_n": n, "per_pair_s": per_pair, "rule": "seconds = per_pair_s * n * n"}
        step(f"teacher retrieval {n}x{n}: {t['median_s']:.3g} s{' (extrapolated)' if t['extrapolated'] else ''}")
        s = _measure_or_extrapolate(
            student_fn, sm, s_inputs, n * per_item, budget_s, threads, min_run_time, f"student retrieval {n}", i == 0
        )
        if s is None:
            s = {
                "median_s": s_basis["seconds"] * n / s_basis["from_n"],
                "iqr_s": None,
                "runs": 0,
                "extrapolated": True,
                "basis": {**s_basis, "rule": "seconds grow linearly with n (encoding dominates)"},
                "peak_memory_bytes": None,
            }
        else:
            per_item = s["median_s"] / n
            s_basis = {"from_n": n, "seconds": s["median_s"]}
        step(f"student retrieval {n}x{n}: {s['median_s']:.3g} s{' (extrapolated)' if s['extrapolated'] else ''}")
        entries.append(
            {
                "n_images": n,
                "n_texts": n,
                "teacher_passes": n * n,
                "student_encodings": 2 * n,
                "teacher": t,
                "student": s,
                "speedup": t["median_s"] / s["median_s"],
                "extrapolated": t["extrapolated"] or s["extrapolated"],
            }
        )
    return {"ranker": ranker, "top_k": k, "text_chunk": chunk, "entries": entries}


def write_speed(results: dict, path: str | Path = "assets/results/speed.json") -> Path:
    """Write benchmark results as JSON, atomically (readers never see half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, results)
    return path


def _fmt_time(seconds: float) -> str:
    if seconds >= 100:
        return f"{seconds:,.0f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.3g} ms"


def _mark(entry: dict) -> str:
    return " (extrapolated)" if entry["extrapolated"] else ""


def speed_table(results: dict) -> str:
    """Markdown tables of a `benchmark_pair` result (per-example latency / throughput, retrieval, machine)."""
    paths, ratios = results["paths"], results["ratios"]
    sizes = results["settings"]["batch_sizes"]
    lines = [
        f"| path | params | GFLOP / example (batch {sizes[-1]}) | "
        + " | ".join(f"batch {b}: ms / example" for b in sizes)
        + " |",
        "|---|---:|---:|" + "---:|" * len(sizes),
    ]
    for name in PATHS:
        p = paths[name]
        flops = p["batches"][str(sizes[-1])]["flops_per_example"] / 1e9
        cells = []
        for b in sizes:
            c = p["batches"][str(b)]
            cell = f"{c['per_example_ms']:.3f}"
            if name != "teacher":
                r = ratios[str(b)]
                cell += f" ({r[f'{name}_speedup']:.1f}x; FLOP ratio {r[f'{name}_flop_ratio']:.1f}x)"
            cells.append(cell)
        lines.append(f"| {p['label']} | {p['parameters'] / 1e6:.2f} M | {flops:.4f} | " + " | ".join(cells) + " |")
    entries = results["retrieval"]["entries"]
    if entries:
        lines += [
            "",
            "| retrieval | teacher (N x N joint passes) | student (2N encodings + matmul) | speed-up |",
            "|---|---:|---:|---:|",
        ]
        for e in entries:
            t, s = (_fmt_time(e[x]["median_s"]) + _mark(e[x]) for x in ("teacher", "student"))
            lines.append(f"| {e['n_images']} x {e['n_texts']} | {t} | {s} | {e['speedup']:,.0f}x{_mark(e)} |")
    m = results["machine"]
    runtime = results["settings"].get("runtime", "compile" if results["settings"].get("compiled") else "eager")
    lines += [
        "",
        f"Measured on {m['cpu']} ({m['threads']} thread(s), {m['device']}), torch {m['torch']}, "
        f"{results['created']}; both models run {RUNTIME_LABELS[runtime]}; median of timed blocks, FLOPs from "
        "`torch.utils.flop_counter`.",
    ]
    return "\n".join(lines)
