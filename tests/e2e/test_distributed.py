"""`workbench distill` under `accelerate launch` with 2 CPU processes (DDP, gloo) follows the same loss
trajectory as one process with the same global batch.

On a machine without GPUs `accelerate launch --multi_gpu --num_processes 2` starts two processes with
torchrun; each runs on the CPU and they talk over gloo (`--cpu` alone would start one process: accelerate
only runs several CPU processes through mpirun).

The same holds for gradient accumulation under DDP: 2 processes x 2 micro-batches of 4 step like one process
on the whole batch of 16 (`TrainConfig.grad_accum`; the run is launched from its saved `train_config.json`).

Tolerances (measured values in docs/reliability.md):
- `kd`: the loss is a mean over examples, so the mean of the two half-batch losses (what DDP averages the
  gradients of, and what train.py all-reduces before logging) is the global batch's loss: only float
  summation order differs. Tolerance 1e-5 absolute.
- `dide`: the text-to-image attention KL is a mean over the real (unpadded) question tokens of the batch,
  so each process divides by its own slice's token count, not the global batch's: the two runs optimise
  slightly different weightings of the same examples. Tolerance 2% relative per step.
"""

import json
import os
import shutil
import sys

import pytest

from workbench.cli import main as cli
from workbench.data import load_dataset
from workbench.models import create_model
from workbench.models.io import save_checkpoint

TOLERANCE = {"kd": dict(rel=0, abs=1e-5), "dide": dict(rel=2e-2, abs=0)}


def _losses(out) -> list[tuple[int, float]]:
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in records if "loss" in r]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, tokenizer):
    import torch

    torch.manual_seed(0)
    labels = list(load_dataset("shapes-vqa", "val", 4).labels)
    model = create_model("fusion", len(tokenizer), len(labels), hidden_size=32, num_layers=1, num_heads=2)
    folder = tmp_path_factory.mktemp("dist") / "teacher"
    return save_checkpoint(model, tokenizer, folder, {"task": "vqa", "labels": labels, "dataset": "shapes-vqa"})


@pytest.fixture()
def one_thread():
    """Each launched process has one thread (OMP_NUM_THREADS=1): so does the single-process run."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _launch(port: int) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(port)]  # fmt: skip


def _fresh(out, command: list[str]) -> list[str]:
    """`command`, with the run folder of an attempt that lost its port removed first."""
    shutil.rmtree(out, ignore_errors=True)
    return command


@pytest.mark.parametrize("recipe", ["kd", "dide"])
def test_two_processes_follow_the_single_process_loss_trajectory(
    tmp_path, teacher, recipe, one_thread, run_on_free_port
):
    # 30 steps of a global batch of 16 (8 per process), a loss record every step
    args = ["distill", "--teacher", str(teacher), "--recipe", recipe, "--dataset", "shapes-vqa",
            "--train-size", "480", "--val-size", "32", "--test-size", "32", "--batch-size", "16",
            "--hidden-size", "32", "--num-layers", "1", "--num-heads", "2", "--lr", "2e-3",
            "--warmup-steps", "5", "--log-every", "1", "--seed", "1", "--no-progress"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    two = tmp_path / "two"
    # a free port, and another one if something took it before the launcher bound it
    proc = run_on_free_port(lambda port: _fresh(two, [*_launch(port), "-m", "workbench.cli", *args, "--out", str(two)]),
                            env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = tmp_path / "one"
    assert cli([*args, "--out", str(one)]) == 0

    meta = json.loads((two / "model" / "workbench.json").read_text())
    assert meta["num_processes"] == 2 and meta["steps"] == 30
    assert json.loads((one / "model" / "workbench.json").read_text())["num_processes"] == 1
    a, b = _losses(one), _losses(two)
    assert [s for s, _ in a] == [s for s, _ in b] == list(range(1, 31))
    diffs = [abs(x - y) for (_, x), (_, y) in zip(a, b)]
    worst = max(range(len(diffs)), key=lambda i: diffs[i] / abs(a[i][1]))
    print(f"{recipe}: max |loss difference| {max(diffs):.2e}, max relative {diffs[worst] / abs(a[worst][1]):.2e}")
    for (step, x), (_, y) in zip(a, b):
        assert y == pytest.approx(x, **TOLERANCE[recipe]), f"step {step}: 1 process {x}, 2 processes {y}"


TRAIN_FROM_CONFIG = """
import sys
from workbench.train import TrainConfig, train
train(TrainConfig.from_json(sys.argv[1]), progress=False)
"""


def test_two_processes_accumulating_gradients_follow_the_single_process_trajectory(
    tmp_path, one_thread, run_on_free_port
):
    from workbench.train import TrainConfig, train

    size = {"hidden_size": 32, "num_layers": 1, "num_heads": 2}
    common = dict(dataset="shapes-vqa", epochs=1, train_size=160, val_size=32, test_size=32, batch_size=16,
                  lr=2e-3, warmup_steps=2, log_every=1, seed=1, size=size)  # fmt: skip
    two = TrainConfig(out=str(tmp_path / "two"), grad_accum=2, **common)
    (tmp_path / "script.py").write_text(TRAIN_FROM_CONFIG)
    two.to_json(tmp_path / "two.json")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    script = [str(tmp_path / "script.py"), str(tmp_path / "two.json")]
    proc = run_on_free_port(lambda port: _fresh(tmp_path / "two", [*_launch(port), *script]), env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    train(TrainConfig(out=str(tmp_path / "one"), **common), progress=False)

    meta = json.loads((tmp_path / "two" / "model" / "workbench.json").read_text())
    assert meta["num_processes"] == 2 and meta["steps"] == 10 and meta["train_config"]["grad_accum"] == 2
    a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert [s for s, _ in a] == [s for s, _ in b] == list(range(1, 11))
    for (step, x), (_, y) in zip(a, b):
        assert y == pytest.approx(x, abs=1e-5), f"step {step}: 1 process {x}, 2 processes x 2 micro-batches {y}"
