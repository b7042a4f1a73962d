"""Kill-and-resume campaign: SIGKILL tiny `workbench train` runs at random moments, resume them, and
compare with an uninterrupted run of the same seed (weights, test metrics, metrics.jsonl).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/kill_resume.py --trials 10 --out /tmp/kill-resume
    OMP_NUM_THREADS=1 .venv/bin/python scripts/kill_resume.py --trials 3 --train-args "--grad-accum 2 --num-workers 1"

Each trial is killed 1-2 times, each time once metrics.jsonl holds a random number of records (so kills
land mid-epoch, at validation, during checkpoint writes and after training, during the final test
evaluation and model save), then resumed with --resume until it finishes. Prints one line per trial
and a summary as JSON (the figures in docs/reliability.md).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

ARGS = ["train", "--dataset", "shapes-vqa", "--epochs", "2", "--train-size", "640", "--val-size", "32",
        "--test-size", "64", "--batch-size", "16", "--lr", "2e-3", "--warmup-steps", "5", "--seed", "7",
        "--hidden-size", "32", "--num-layers", "1", "--num-heads", "2", "--save-every", "5", "--log-every", "1",
        "--no-progress"]  # fmt: skip
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(out: Path, resume: bool = False, kill_after: int | None = None, late: float = 0.05) -> str:
    """Run (or resume) the training in `out`; SIGKILL it up to `late` seconds after metrics.jsonl has
    `kill_after` records."""
    cmd = [sys.executable, "-m", "workbench.cli", *ARGS, "--out", str(out), *(["--resume"] if resume else [])]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = out / "metrics.jsonl"
    while kill_after is not None and proc.poll() is None:
        if log.exists() and log.read_text().count("\n") >= kill_after:
            time.sleep(random.uniform(0, late))  # anywhere in the next few steps (or later)
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    code = proc.wait()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if code not in (0, -signal.SIGKILL):
        raise RuntimeError(f"run failed ({code}): {err[-2000:]}")
    return "killed" if code == -signal.SIGKILL else "finished"


def records(out: Path) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "elapsed_s"} for x in lines]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--out", default="/tmp/kill-resume")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--late", type=float, default=0.3, help="share of trials also killed after training")
    parser.add_argument(
        "--train-args", default="", help="more `workbench train` options for every run, e.g. '--grad-accum 2'"
    )
    args = parser.parse_args()
    ARGS.extend(shlex.split(args.train_args))
    random.seed(args.seed)
    root = Path(args.out)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    ref = root / "ref"
    run(ref)
    ref_w, ref_test, ref_log = load_file(ref / "model" / "model.safetensors"), (ref / "test_metrics.json"), records(ref)
    total = len(ref_log)
    summary = {"trials": args.trials, "kills": 0, "exact": 0, "max_abs_weight_diff": 0.0, "kill_points": []}
    for t in range(args.trials):
        out = root / f"trial{t}"
        points = [(n, 0.05) for n in sorted(random.randint(1, total) for _ in range(random.choice([1, 2])))]
        if random.random() < args.late:  # and after training: during the test evaluation or the final save
            points.append((total, 0.5))
        kills = [(n, run(out, resume=i > 0, kill_after=n, late=late)) for i, (n, late) in enumerate(points)]
        run(out, resume=True)
        got = load_file(out / "model" / "model.safetensors")
        diff = max((got[k] - ref_w[k]).abs().max().item() for k in ref_w)
        same = (
            got.keys() == ref_w.keys()
            and diff <= 1e-6
            and json.loads((out / "test_metrics.json").read_text()) == json.loads(ref_test.read_text())
            and records(out) == ref_log
        )
        summary["kills"] += sum(o == "killed" for _, o in kills)
        summary["exact"] += same
        summary["max_abs_weight_diff"] = max(summary["max_abs_weight_diff"], diff)
        summary["kill_points"].append(kills)
        print(f"trial {t}: kills after {kills} of {total} records -> weights diff {diff:.1e}, identical: {same}")
        shutil.rmtree(out)
    print(json.dumps(summary))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
