"""Paper-scale distillation step, measured: a ViLT-B/32-sized fusion teacher and a dual student of the same
width, built from configs with random weights ("untrained weights": the figures are about time and memory,
never accuracy), a few DiDE steps on random batches, fp32 or bf16.

Each measurement runs in its own process (`python -m workbench.scale --precision bf16 ...`) so the peak
resident memory it reports (`ru_maxrss`) is that configuration's alone. `measure_all` runs them and returns
plain data; `workbench.scale` as a script prints and optionally writes it as JSON.
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

# ViLT-B/32 (dandelin/vilt-b32-finetuned-vqa): 768 wide, 12 layers, 12 heads, 32-px patches at 384 px (144
# patches), 40 text positions, 3,129 VQA answers, BERT's 30,522-word vocabulary
VILT_B32 = dict(hidden_size=768, num_layers=12, num_heads=12, patch_size=32, image_size=384, max_text_len=40)
VQA_ANSWERS = 3129
VOCAB = 30522


@dataclass
class ScaleRun:
    precision: str = "fp32"  # fp32 | bf16 (autocast for the student, the teacher's weights in bf16)
    batch_size: int = 8
    steps: int = 3  # timed steps, after one warm-up step
    text_len: int = 16
    threads: int = 2
    mode: str = "distill"  # distill: one DiDE training step | teacher: the teacher's inference only


def _models():
    from workbench.models import create_model

    teacher = create_model("fusion", VOCAB, VQA_ANSWERS, **VILT_B32).eval().requires_grad_(False)
    student = create_model("dual", VOCAB, VQA_ANSWERS, **VILT_B32)
    return teacher, student


def _batch(run: ScaleRun):
    from types import SimpleNamespace

    g = torch.Generator().manual_seed(0)
    b, t = run.batch_size, run.text_len
    return SimpleNamespace(
        input_ids=torch.randint(1000, VOCAB, (b, t), generator=g),
        attention_mask=torch.ones(b, t, dtype=torch.long),
        pixel_values=torch.randn(b, 1, 3, VILT_B32["image_size"], VILT_B32["image_size"], generator=g),
        labels=torch.randint(0, VQA_ANSWERS, (b,), generator=g),
        targets=None,
    )


def measure(run: ScaleRun) -> dict:
    """Seconds per step (median of `steps`) and this process's peak resident memory, in this process."""
    from workbench.methods import get_method
    from workbench.methods.dide import DiDEObjective

    torch.set_num_threads(run.threads)
    torch.manual_seed(0)
    teacher, student = _models()
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
                with torch.inference_mode():
                    teacher(batch.input_ids, batch.attention_mask, batch.pixel_values.to(teacher.dtype))
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

    teacher, student = _models()
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
    return [measure_in_subprocess(r) for r in runs]


# what docs/real-data.md reports: a DiDE step at batch 8 and the teacher's inference at batch 32, fp32 and bf16
DEFAULT_RUNS = [
    ScaleRun(precision=p, batch_size=b, mode=m) for m, b in (("distill", 8), ("teacher", 32)) for p in ("fp32", "bf16")
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for key, value in asdict(ScaleRun()).items():
        p.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    p.add_argument("--one", action="store_true", help="measure one configuration in this process")
    p.add_argument("--single", action="store_true", help="measure only the configuration given (default: the set)")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    run = ScaleRun(**{k: getattr(args, k) for k in asdict(ScaleRun())})
    if args.one:
        print(json.dumps(measure(run)))
        return 0
    results = measure_all([run] if args.single else DEFAULT_RUNS)
    results.append({"flops": step_flops(ScaleRun(batch_size=1)), "batch_size": 1})
    print(json.dumps(results, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
