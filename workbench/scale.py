"""Paper-scale distillation step, measured: a ViLT-B/32-sized fusion teacher and a dual student of the same
width, built from configs with random weights ("untrained weights": the figures are about time and memory,
never accuracy), a few DiDE steps on random batches, fp32 or bf16.

Each measurement runs in its own process (`python -m workbench.scale --precision bf16 ...`) so the peak
resident memory it reports (`ru_maxrss`) is that configuration's alone. `measure_all` runs them and returns
plain data; `workbench scale` (the CLI) prints them and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch

from workbench.configs.bench import PRESETS


@dataclass
class ScaleRun:
    precision: str = "fp32"  # fp32 | bf16 (autocast for the student, the teacher's weights in bf16)
    batch_size: int = 8
    steps: int = 3  # timed steps, after one warm-up step
    text_len: int = 16
    threads: int = 2
    mode: str = "distill"  # distill: one DiDE training step | teacher: the teacher's inference only
    preset: str = "vilt-b32"  # a model size of `workbench.configs.bench.PRESETS`


def _models(preset: str):
    """(teacher frozen for distillation, same-width student in training mode) of the preset."""
    from workbench.bench.preset import preset_models

    teacher, student = preset_models(preset)
    return teacher.requires_grad_(False), student.train()


def _batch(run: ScaleRun):
    """Random token ids and pixels, and sparse soft VQA targets (the multi-label BCE path DiDE takes on VQAv2)."""
    from workbench.data.collate import Batch

    p = PRESETS[run.preset]
    g = torch.Generator().manual_seed(0)
    b, t, side = run.batch_size, run.text_len, p["size"]["image_size"]
    targets = torch.zeros(b, p["num_labels"])
    targets[torch.arange(b), torch.randint(0, p["num_labels"], (b,), generator=g)] = 1.0
    return Batch(
        pixel_values=torch.randn(b, 1, 3, side, side, generator=g),
        input_ids=torch.randint(5, p["vocab_size"], (b, t), generator=g),
        attention_mask=torch.ones(b, t, dtype=torch.long),
        labels=targets.argmax(-1),
        targets=targets,
    )


def measure(run: ScaleRun) -> dict:
    """Seconds per step (median of `steps`) and this process's peak resident memory, in this process."""
    from workbench.methods import get_method
    from workbench.methods.dide import DiDEObjective

    torch.set_num_threads(run.threads)
    torch.manual_seed(0)
    teacher, student = _models(run.preset)
    bf16 = run.precision == "bf16"
    if bf16:
        teacher = teacher.to(torch.bfloat16)
    objective = DiDEObjective("dide", get_method("dide").config(), teacher)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-5)
    batch = _batch(run)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
    times = []
    for i in range(run.steps + 1):
        start = time.perf_counter()
        with autocast:
            if run.mode == "teacher":
                pixels = batch.pixel_values.to(next(teacher.parameters()).dtype)
                with torch.inference_mode():
                    teacher(batch.input_ids, batch.attention_mask, pixels)
            else:
                loss, _ = objective.loss(student, batch)
        if run.mode != "teacher":
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if i:  # the first step warms the allocator and the kernels up
            times.append(time.perf_counter() - start)
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in (("teacher", teacher), ("student", student))}
    return {
        **asdict(run),
        "seconds_per_step": sorted(times)[len(times) // 2],
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "params": params,
        "weights": "untrained (random, speed and memory only)",
    }


def step_flops(run: ScaleRun) -> dict:
    """FLOPs of one DiDE training step (teacher forward, student forward and backward) and of one teacher
    forward at `run.batch_size`, counted by `torch.utils.flop_counter` on the fp32 models."""
    from torch.utils.flop_counter import FlopCounterMode

    from workbench.methods import get_method
    from workbench.methods.dide import DiDEObjective

    teacher, student = _models(run.preset)
    objective = DiDEObjective("dide", get_method("dide").config(), teacher)
    batch = _batch(run)
    with FlopCounterMode(display=False) as step:
        loss, _ = objective.loss(student, batch)
        loss.backward()
    with FlopCounterMode(display=False) as forward, torch.inference_mode():
        teacher(batch.input_ids, batch.attention_mask, batch.pixel_values)
    return {"distill_step": step.get_total_flops(), "teacher_forward": forward.get_total_flops()}


def measure_in_subprocess(run: ScaleRun) -> dict:
    args = [sys.executable, "-m", "workbench.scale", "--one"]
    for key, value in asdict(run).items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_all(runs: list[ScaleRun]) -> list[dict]:
    results = []
    for run in runs:
        results.append(measure_in_subprocess(run))
        print(json.dumps(results[-1]), flush=True)  # each as it comes: a long set shows progress
    return results


# what docs/real-data.md reports: a DiDE step at batch 8 and the teacher's inference at batch 32, fp32 and bf16
def default_runs(preset: str = "vilt-b32") -> list[ScaleRun]:
    return [ScaleRun(precision=p, batch_size=b, mode=m, preset=preset)
            for m, b in (("distill", 8), ("teacher", 32)) for p in ("fp32", "bf16")]  # fmt: skip


# ----------------------------------------------------------------------------------------------
# the table docs/real-data.md shows, and a projection of a full VQAv2 distillation on GPUs

# DiDE's VQAv2 fine-tuning as the official configuration runs it: 10 epochs over VQAv2 train + val (ViLT's
# fine-tuning set: 443,757 + 214,354 questions, minus ViLT's 1,000-question minival)
VQAV2_EXAMPLES = 443_757 + 214_354 - 1_000
EPOCHS = 10
A100_BF16_PEAK = 312e12  # FLOP/s, dense
# FLOPs grow with the tokens: measured at 384 x 384 (145 image tokens) and 16 text tokens; VQAv2's images go to
# 384 x 608 at most after ViLT's resize (12 x 19 patches + [CLS] = 229) and its questions to 40 tokens
TOKENS_MEASURED, TOKENS_VQAV2 = 145 + 16, 229 + 16


def projection(flops_per_example: float, utilisations=(0.10, 0.25, 0.40)) -> dict:
    """GPU-hours of a full DiDE distillation on VQAv2 on A100s in bf16, at assumed fractions of peak."""
    total = flops_per_example * TOKENS_VQAV2 / TOKENS_MEASURED * VQAV2_EXAMPLES * EPOCHS
    return {"total_flops": total, "gpu_hours": {f"{u:.0%}": total / (A100_BF16_PEAK * u) / 3600 for u in utilisations}}


def scale_table(results: list[dict]) -> str:
    """Markdown: each measurement, then the FLOPs and the projection. Every row says "untrained weights"."""
    lines = ["| what (untrained weights: speed and memory only) | precision | batch | s / step | peak memory GB |",
             "|---|---|---:|---:|---:|"]  # fmt: skip
    runs = [r for r in results if "mode" in r]
    for r in runs:
        what = "DiDE training step (teacher forward, student forward + backward, AdamW)" if r["mode"] == "distill" \
            else "teacher inference"  # fmt: skip
        lines.append(f"| {r['preset']} {what} | {r['precision']} | {r['batch_size']} | "
                     f"{r['seconds_per_step']:.2f} | {r['peak_rss_gb']:.2f} |")  # fmt: skip
    flops = next(r["flops"] for r in results if "flops" in r)
    proj = projection(flops["distill_step"])
    params = runs[0]["params"]
    hours = ", ".join(f"{h:.0f} at {u}" for u, h in proj["gpu_hours"].items())
    lines += [
        "",
        f"Parameters: teacher {params['teacher'] / 1e6:.1f} M, student {params['student'] / 1e6:.1f} M. FLOPs of one "
        f"example (`torch.utils.flop_counter`): a DiDE step {flops['distill_step'] / 1e9:.1f} GFLOP, a teacher "
        f"forward {flops['teacher_forward'] / 1e9:.1f} GFLOP (145 image and 16 text tokens).",
        f"Projection, not a measurement: DiDE on VQAv2 as the official configuration runs it ({EPOCHS} epochs of "
        f"{VQAV2_EXAMPLES:,} questions, FLOPs scaled to {TOKENS_VQAV2} tokens an example) is "
        f"{proj['total_flops']:.2e} FLOP: A100 GPU-hours in bf16 {hours} of its {A100_BF16_PEAK / 1e12:.0f} TFLOP/s "
        "peak (assumed utilisations; data loading and the evaluation passes not included).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`python -m workbench.scale --one ...`: one configuration, in this process (`workbench scale` runs it)."""
    p = argparse.ArgumentParser(description="one configuration of `workbench scale`, in this process")
    for key, value in asdict(ScaleRun()).items():
        p.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    p.add_argument("--one", action="store_true", help="(accepted for clarity: this entry always measures one)")
    args = p.parse_args(argv)
    print(json.dumps(measure(ScaleRun(**{k: getattr(args, k) for k in asdict(ScaleRun())}))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
