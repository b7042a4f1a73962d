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

import pytest
import torch
from safetensors.torch import load_file

from workbench.cli import main as cli
from workbench.train import latest_state

STEPS_PER_EPOCH = 40  # 640 examples / batch 16
ARGS = ["train", "--dataset", "shapes-vqa", "--epochs", "2", "--train-size", "640", "--val-size", "32",
        "--test-size", "64", "--batch-size", "16", "--lr", "2e-3", "--warmup-steps", "5", "--seed", "7",
        "--hidden-size", "32", "--num-layers", "1", "--num-heads", "2", "--save-every", "5", "--log-every", "1",
        "--no-progress"]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The killed run is a separate process with one thread: so are the in-process runs (same float sums)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, one_thread):
    """The uninterrupted run, same seed."""
    out = tmp_path_factory.mktemp("crash") / "ref"
    assert cli([*ARGS, "--out", str(out)]) == 0
    return out


def _assert_same_result(run, ref) -> None:
    want, got = load_file(ref / "model" / "model.safetensors"), load_file(run / "model" / "model.safetensors")
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-6, msg=k)
    assert json.loads((run / "test_metrics.json").read_text()) == json.loads((ref / "test_metrics.json").read_text())
    # every loss / validation record once, as in the uninterrupted run (records written between the last
    # checkpoint and the kill are dropped on resume and written again)
    assert _records(run) == _records(ref)
    steps = json.loads((ref / "model" / "workbench.json").read_text())["steps"]
    assert json.loads((run / "model" / "workbench.json").read_text())["steps"] == steps


def _progress(out):
    saved = latest_state(out / "state")
    try:
        return json.loads((saved / "state.json").read_text())["progress"] if saved else None
    except (OSError, ValueError):  # caught mid-swap
        return None


def _records(out) -> list[dict]:
    records = []
    for line in (out / "metrics.jsonl").read_text().splitlines() if (out / "metrics.jsonl").exists() else []:
        try:
            records.append({k: v for k, v in json.loads(line).items() if k != "elapsed_s"})
        except ValueError:  # a line cut short by the kill
            pass
    return records


def _past(out, progress) -> int:
    """Loss records written after the checkpoint `progress`: the work a kill now would lose."""
    return sum(1 for r in _records(out) if r["step"] > progress["global_step"]) if progress else 0


# The killed run stops itself (SIGSTOP) right after writing the loss record of this step: 2 steps past its
# checkpoint at step 10 (--save-every 5), mid-epoch. Nothing is timed or polled, so where it dies is fixed.
STOP_AFTER_STEP = 12
_STOPPING_RUN = """
import os, signal, sys
from workbench.train import trainer

record = trainer.Trainer.record

def record_then_stop(self, r):
    record(self, r)
    if "loss" in r and r["step"] == {step}:
        os.kill(os.getpid(), signal.SIGSTOP)

trainer.Trainer.record = record_then_stop
from workbench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _kill_mid_epoch(out) -> dict:
    """Start a run that freezes itself (SIGSTOP) after logging step STOP_AFTER_STEP, wait until it is stopped
    (waitpid, no polling), and SIGKILL it: what we check is exactly what it leaves."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    code = _STOPPING_RUN.format(step=STOP_AFTER_STEP)
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *ARGS, "--out", str(out)], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _, status = os.waitpid(proc.pid, os.WUNTRACED)  # returns once the run has stopped itself (or ended)
        assert os.WIFSTOPPED(status), f"the run ended before it could be killed: {proc.stderr.read()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    return _progress(out)


def test_sigkilled_run_resumes_to_the_same_result(tmp_path, reference):
    killed = tmp_path / "killed"
    at = _kill_mid_epoch(killed)
    assert (at["epoch"], at["step_in_epoch"], at["global_step"]) == (0, 10, 10), at  # mid-epoch, after a checkpoint
    assert not (killed / "model").exists()
    after = _past(killed, at)
    assert after == 2  # the kill lost steps 11 and 12, whose records the resumed run must not log twice
    leftovers = sorted(p.name for p in killed.iterdir() if p.name.startswith("state."))
    print(f"killed at {at}; {after} loss records past the checkpoint; leftovers {leftovers}")

    # the same kill, but also between the two renames of a checkpoint swap
    swapped = tmp_path / "swapped"
    shutil.copytree(killed, swapped)
    shutil.rmtree(swapped / "state.old", ignore_errors=True)  # (the kill may have come mid-cleanup of an old one)
    (swapped / "state").rename(swapped / "state.old")
    (swapped / "state.tmp").mkdir()
    (swapped / "state.tmp" / "model.safetensors").write_bytes(b"half a file")

    assert cli([*ARGS, "--out", str(killed)]) == 2  # refuses to start over an existing run without --resume
    for run in (killed, swapped):
        assert cli([*ARGS, "--out", str(run), "--resume"]) == 0

    for run in (killed, swapped):
        _assert_same_result(run, reference)
    assert json.loads((killed / "model" / "workbench.json").read_text())["steps"] == 2 * STEPS_PER_EPOCH
    assert not (swapped / "state.old").exists() and not (swapped / "state.tmp").exists()


@pytest.mark.parametrize("max_steps", [None, 30])
def test_run_killed_after_training_resumes_to_the_same_result(tmp_path, reference, max_steps):
    """Killed during the final test evaluation (training done, its last checkpoint written, no model/ yet):
    the resumed run only evaluates and saves, with no extra training step or validation record. With
    --max-steps 30 training stops mid-epoch, which the last checkpoint records as done."""
    if max_steps is None:
        done = reference
    else:
        done = tmp_path / "done"
        assert cli([*ARGS, "--max-steps", str(max_steps), "--out", str(done)]) == 0
    run = tmp_path / "killed"
    shutil.copytree(done, run)
    shutil.rmtree(run / "model")
    (run / "test_metrics.json").unlink()
    extra = [] if max_steps is None else ["--max-steps", str(max_steps)]
    assert cli([*ARGS, *extra, "--out", str(run), "--resume"]) == 0
    _assert_same_result(run, done)


def test_run_killed_before_its_first_checkpoint_starts_afresh(tmp_path, reference):
    """Nothing to resume from yet, but metrics.jsonl already has records: the run starts over, and so
    does its metrics.jsonl."""
    run = tmp_path / "early"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "epoch": 0, "loss": 3.0}) + "\n" + '{"step": 2, "ep')
    assert cli([*ARGS, "--out", str(run), "--resume"]) == 0
    _assert_same_result(run, reference)
