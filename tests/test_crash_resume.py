"""A training run killed hard (SIGKILL) mid-epoch resumes with `--resume` and ends exactly where an
uninterrupted run with the same seed ends: same weights, same test metrics, same metrics.jsonl.

The killed run is a real `workbench train` process; the kill comes right after it has written a
mid-epoch checkpoint (`--save-every`), while it is still training. A second copy of the killed run
also has its checkpoint swap interrupted (only `state.old` and a half-written `state.tmp` left, as a
kill between save_state's two renames would leave them), and must resume just as well.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from workbench.cli import main as cli

STEPS_PER_EPOCH = 40  # 640 examples / batch 16
ARGS = ["train", "--dataset", "shapes-vqa", "--epochs", "2", "--train-size", "640", "--val-size", "32",
        "--test-size", "64", "--batch-size", "16", "--lr", "2e-3", "--warmup-steps", "5", "--seed", "7",
        "--hidden-size", "32", "--num-layers", "1", "--num-heads", "2", "--save-every", "5", "--log-every", "1",
        "--no-progress"]  # fmt: skip


@pytest.fixture()
def one_thread():
    """The killed run is a separate process with one thread: so are the in-process runs (same float sums)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _progress(out):
    try:
        return json.loads((out / "state" / "state.json").read_text())["progress"]
    except (OSError, ValueError):  # no checkpoint yet, or caught mid-swap
        return None


def _records(out) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "elapsed_s"} for x in lines]


def _kill_mid_epoch(out) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", *ARGS, "--out", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            p = _progress(out)
            if p and p["global_step"] >= 10:
                break
            time.sleep(0.01)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    return _progress(out)


def test_sigkilled_run_resumes_to_the_same_result(tmp_path, one_thread):
    killed = tmp_path / "killed"
    at = _kill_mid_epoch(killed)
    assert at["epoch"] == 0 and 10 <= at["step_in_epoch"] < STEPS_PER_EPOCH, at  # mid-epoch, after a checkpoint
    assert at["global_step"] % 5 == 0 and not (killed / "model").exists()
    after = sum(1 for r in _records(killed) if r["step"] > at["global_step"])
    leftovers = sorted(p.name for p in killed.iterdir() if p.name.startswith("state."))
    print(f"killed at {at}; {after} loss records past the checkpoint; leftovers {leftovers}")

    # the same kill, but also between the two renames of a checkpoint swap
    swapped = tmp_path / "swapped"
    shutil.copytree(killed, swapped)
    shutil.rmtree(swapped / "state.old", ignore_errors=True)  # (the kill may have come mid-cleanup of an old one)
    (swapped / "state").rename(swapped / "state.old")
    (swapped / "state.tmp").mkdir()
    (swapped / "state.tmp" / "model.safetensors").write_bytes(b"half a file")

    assert cli([*ARGS, "--out", str(tmp_path / "ref")]) == 0  # uninterrupted, same seed
    assert cli([*ARGS, "--out", str(killed)]) == 2  # refuses to start over an existing run without --resume
    for run in (killed, swapped):
        assert cli([*ARGS, "--out", str(run), "--resume"]) == 0

    ref = load_file(tmp_path / "ref" / "model" / "model.safetensors")
    ref_test = json.loads((tmp_path / "ref" / "test_metrics.json").read_text())
    for run in (killed, swapped):
        got = load_file(run / "model" / "model.safetensors")
        assert got.keys() == ref.keys()
        for k in ref:
            torch.testing.assert_close(got[k], ref[k], rtol=0, atol=1e-6, msg=k)
        assert json.loads((run / "test_metrics.json").read_text()) == ref_test
        # every loss / validation record once, as in the uninterrupted run (the records written between
        # the checkpoint and the kill were dropped on resume and written again)
        assert _records(run) == _records(tmp_path / "ref")
        assert json.loads((run / "model" / "workbench.json").read_text())["steps"] == 2 * STEPS_PER_EPOCH
    assert not (swapped / "state.old").exists() and not (swapped / "state.tmp").exists()
