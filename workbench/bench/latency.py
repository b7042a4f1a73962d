"""Latency and throughput of the three inference paths, batch by batch.

* ``teacher``: the fusion model, one joint pass over ``T + images * (1 + P)`` tokens per query;
* ``student``: the dual student end to end (image tower + text tower + fusion head);
* ``student_cached``: the student with the image features already computed (text tower + head),
  the case of many questions about one image, or of a gallery encoded ahead of time.
"""

from __future__ import annotations

import statistics

import torch
from torch import nn

from workbench.bench.measure import count_flops, count_parameters, peak_memory, round_timing, time_rounds
from workbench.bench.pair import BenchInputs, Pair
from workbench.models.dual import DualStudent
from workbench.models.fusion import FusionTeacher
from workbench.models.io import Checkpoint
from workbench.models.precision import inference_precision

PATHS = ("teacher", "student", "student_cached")
PATH_LABELS = {
    "teacher": "fusion teacher",
    "student": "dual student (end to end)",
    "student_cached": "dual student (image features cached)",
}


def path_parameters(teacher: nn.Module, student: DualStudent) -> dict[str, int]:
    """Parameters each path uses per query (the cached path does not run the image tower)."""
    head = (student.fusion, student.classifier)
    return {
        "teacher": count_parameters(teacher),
        "student": count_parameters(student.image_tower, student.text_tower, *head),
        "student_cached": count_parameters(student.text_tower, *head),
        "student_retrieval": count_parameters(
            student.image_tower, student.text_tower, student.image_proj, student.text_proj
        ),
    }


def empty_paths(tm: FusionTeacher, sm: DualStudent) -> dict[str, dict]:
    """{path: its label, parameters and weight bytes, and no batches measured yet}."""
    params = path_parameters(tm, sm)
    weight_bytes = {
        "teacher": sum(p.numel() * p.element_size() for p in tm.parameters()),
        "student": params["student"] * next(sm.parameters()).element_size(),
        "student_cached": params["student_cached"] * next(sm.parameters()).element_size(),
    }
    return {
        name: {
            "label": PATH_LABELS[name],
            "parameters": params[name],
            "weight_bytes": weight_bytes[name],
            "batches": {},
        }
        for name in PATHS
    }


def _path_calls(tm: FusionTeacher, sm: DualStudent, t_in: BenchInputs, s_in: BenchInputs, b: int):
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


def _cell(model, fn, inputs, ms, b: int) -> dict:
    """One latency / throughput cell from its timed rounds `ms` (the eager, compiled or ONNX Runtime form of
    `fn(model, *inputs)`, a batch of `b`); FLOPs and memory are counted on the plain `model`."""
    t = round_timing(ms)
    return {
        "batch_size": b,
        **t,
        "per_example_ms": 1000 * t["median_s"] / b,
        "throughput_per_s": b / t["median_s"],
        "flops_per_example": count_flops(model, lambda: fn(model, *inputs)) / b,
        "peak_memory_bytes": peak_memory(lambda: fn(model, *inputs), model, inputs),
    }


def _timed_call(runtime: str, model: nn.Module, runner: nn.Module, fn, inputs, threads: int):
    """The zero-argument call a cell times: `fn` on the compiled `runner` (or the model itself, under bf16
    autocast for "bf16"), or through ONNX Runtime."""
    if runtime == "onnx":
        from workbench.onnx_runtime import onnx_call

        return onnx_call(model, fn, inputs, threads)

    precision = "bf16" if runtime == "bf16" else "fp32"

    @torch.inference_mode()
    def timed():
        with inference_precision(model, precision):
            return fn(runner, *inputs)

    return timed


def measure_paths(
    pair: Pair, paths: dict[str, dict], batch_sizes: tuple[int, ...], runtime: str, runners: tuple[nn.Module, ...]
) -> dict[str, float]:
    """Fill `paths[name]["batches"]` with one cell per batch size, the three paths timed in `pair.rounds`
    interleaved rounds; return the token counts of the largest batch.
    `runners`: what runs the teacher and the student (the models, or their `torch.compile`d forms)."""
    tm, sm = pair.teacher, pair.student
    tokens: dict[str, float] = {}
    for b in batch_sizes:
        calls, tokens_b = _path_calls(tm, sm, pair.t_in, pair.s_in, b)
        tokens = tokens_b if b == max(batch_sizes) else tokens
        timed = {
            name: _timed_call(runtime, model, runners[0] if model is tm else runners[1], fn, inputs, pair.threads)
            for name, (model, fn, inputs) in calls.items()
        }
        rounds = time_rounds(timed, pair.threads, pair.min_run_time, pair.rounds, f"batch {b}")
        for name, (model, fn, inputs) in calls.items():
            cell = _cell(model, fn, inputs, rounds[name], b)
            paths[name]["batches"][str(b)] = cell
            pair.step(f"{name} b={b}: {cell['per_example_ms']:.3f} ms/example")
    return tokens


def speed_ratios(paths: dict[str, dict], batch_sizes: tuple[int, ...]) -> dict[str, dict]:
    """Per batch size: each student path's speed-up over the teacher (the median over the interleaved rounds of
    each round's ratio, with the range), FLOP ratio, and the first over the second."""
    ratios = {}
    for b in batch_sizes:
        t = paths["teacher"]["batches"][str(b)]
        row = {}
        for name in ("student", "student_cached"):
            c = paths[name]["batches"][str(b)]
            per_round = [x / y for x, y in zip(t["round_medians_s"], c["round_medians_s"])]
            row[f"{name}_speedup"] = statistics.median(per_round)
            row[f"{name}_speedup_range"] = [min(per_round), max(per_round)]
            row[f"{name}_speedup_rounds"] = len(per_round)
            row[f"{name}_flop_ratio"] = t["flops_per_example"] / c["flops_per_example"]
            row[f"{name}_fraction_of_flop_ratio"] = row[f"{name}_speedup"] / row[f"{name}_flop_ratio"]
        ratios[str(b)] = row
    return ratios


def model_info(ck: Checkpoint) -> dict:
    """A checkpoint's kind, task, parameters and size, for the results JSON."""
    m = ck.model
    if isinstance(m, FusionTeacher):
        c = m.config
        size = dict(hidden_size=c.hidden_size, layers=c.num_hidden_layers, heads=c.num_attention_heads)
        size.update(image_size=c.image_size, patch_size=c.patch_size)
    else:
        v, t = m.vision_config, m.text_config
        size = dict(hidden_size=t.hidden_size, image_layers=v.num_hidden_layers, text_layers=t.num_hidden_layers)
        size.update(heads=t.num_attention_heads, image_size=v.image_size, patch_size=v.patch_size)
    return {
        "path": str(ck.path),
        "kind": m.kind,
        "task": ck.meta.get("task"),
        "parameters": count_parameters(m),
        **size,
        **({"weights": ck.meta["weights"]} if "weights" in ck.meta else {}),
    }
