"""Exact resume of the one trainer, on a model small enough to run in well under a second.

A linear model trained by `workbench.train.Trainer` (AdamW, a warm-up and cosine schedule, a loss that draws
from both the torch and the Python random generators) is stopped by an exception inside a step, after a
checkpoint and a logged step past it, and resumed from `<out>/state`. The resumed run must end with the
uninterrupted run's weights, bit for bit, and its `metrics.jsonl` record for record (timings aside): the
records written after the checkpoint are cut back and written once. The training state's own round trip
(`workbench.train.state`) is checked field by field."""

import json
import random
import shutil

import pytest
import torch

from workbench.errors import CheckpointError
from workbench.train import TrainConfig, Trainer, latest_state, load_state, save_state

N, BATCH, EPOCHS = 40, 8, 3  # 5 steps an epoch, 15 in all
DATA = torch.randn(N, 6, generator=torch.Generator().manual_seed(0))


class ShuffledPlan:
    """Every epoch a seeded shuffle of the N examples. Its saved decision is a constant, which `restore` keeps."""

    def __init__(self):
        self.restored = None

    def planned_steps(self) -> int:
        return EPOCHS * N // BATCH

    def order(self, epoch: int) -> list[int]:
        return torch.randperm(N, generator=torch.Generator().manual_seed(100 + epoch)).tolist()

    def observe(self, epoch, step, logs, mean):
        return None

    def state(self) -> dict:
        return {"plan": "shuffled"}

    def restore(self, progress: dict) -> None:
        self.restored = progress


class NoisyRegression:
    """Least squares from 4 columns to 2, with input noise from torch's generator and a loss weight from
    Python's: a resumed run matches only if both generators are restored. Raises inside call `crash_at`."""

    name = "regression"

    def __init__(self, crash_at: int | None = None):
        self.crash_at, self.calls, self.prepared = crash_at, 0, []

    def prepare(self, accelerator, model):  # the trainer hands over its accelerator and the model it trains
        self.prepared.append((accelerator, model))

    def loss(self, model, batch):
        self.calls += 1
        if self.calls == self.crash_at:
            raise KeyboardInterrupt("killed")
        x = batch[:, :4] + 0.1 * torch.randn(len(batch), 4)
        loss = (0.5 + random.random()) * torch.nn.functional.mse_loss(model(x), batch[:, 4:])
        return loss, {"mse": loss.item()}


def _validate(model) -> dict:
    with torch.no_grad():
        err = torch.nn.functional.mse_loss(model(DATA[:, :4]), DATA[:, 4:]).item()
    return {"accuracy": -err, "per_type": {"all": {"accuracy": -err}}}


def _run(out, objective, resume=False, validate=_validate, **kw):
    cfg = TrainConfig(out=str(out), batch_size=BATCH, warmup_steps=3, save_every=4, seed=7,
                      **{"log_every": 1, "epochs": EPOCHS, **kw})  # fmt: skip
    trainer = Trainer(cfg, objective, out, resume=resume, progress=False)
    model = torch.nn.Linear(4, 2)  # after the Trainer: seeded, so every run builds the same weights
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.1)
    trainer.setup(model, optimizer, ShuffledPlan(), lambda ids: DATA[list(ids)], validate)
    trainer.fit()
    return trainer


def _records(out) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "elapsed_s"} for x in lines]


def _weights(trainer) -> dict:
    return {k: v.clone() for k, v in trainer.final_model().state_dict().items()}


def _progress(out) -> dict:
    return json.loads((out / "state" / "state.json").read_text())["progress"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    objective = NoisyRegression()
    trainer = _run(out, objective)
    assert objective.prepared == [(trainer.accelerator, trainer.model)]
    return out, _weights(trainer), _records(out), list(trainer.recent)


def test_uninterrupted_run_logs_every_step_and_validates_every_epoch(reference):
    out, _, records, _ = reference
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 16))
    assert [(r["step"], r["epoch"]) for r in records if "val_accuracy" in r] == [(5, 0), (10, 1), (15, 2)]
    assert _progress(out) == {**_progress(out), "epoch": 3, "step_in_epoch": 0, "global_step": 15, "done": False}


@pytest.mark.parametrize("crash_at", [3, 6, 10, 14])
def test_a_run_killed_inside_a_step_resumes_to_the_same_weights_and_records(reference, tmp_path, crash_at):
    """Killed in step 3 (after a logged step, before any checkpoint), 6 (after the epoch-end checkpoint at 5),
    10 (after the mid-epoch checkpoint at 8 and the logged step 9), 14 (mid-epoch after the one at 12)."""
    _, weights, records, recent = reference
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, NoisyRegression(crash_at=crash_at))
    saved = {3: None, 6: 5, 10: 8, 14: 12}[crash_at]
    logged = [r["step"] for r in _records(tmp_path) if "loss" in r]
    assert logged == list(range(1, crash_at))  # steps past the checkpoint are in the log before resuming
    if saved is None:
        assert latest_state(tmp_path / "state") is None
    else:
        progress = _progress(tmp_path)
        assert progress["global_step"] == saved
        assert (progress["epoch"], progress["step_in_epoch"]) == divmod(saved, N // BATCH)
    resumed = NoisyRegression()
    trainer = _run(tmp_path, resumed, resume=True)
    assert resumed.calls == 15 - (saved or 0)  # only the steps after the checkpoint are run again
    got = _weights(trainer)
    assert all(torch.equal(got[k], weights[k]) for k in weights)
    assert _records(tmp_path) == records
    assert trainer.recent == recent  # the step losses kept for the progress bar come back too


def test_a_resumed_run_keeps_counting_the_training_time_it_had(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, NoisyRegression(crash_at=10))
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    state["progress"]["train_seconds"] = 1000.0
    (tmp_path / "state" / "state.json").write_text(json.dumps(state))
    trainer = _run(tmp_path, NoisyRegression(), resume=True)
    assert 1000.0 <= trainer.seconds() < 1000.0 + 300
    elapsed = [json.loads(x)["elapsed_s"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert elapsed[-1] >= 1000.0 and elapsed[:9] == sorted(elapsed[:9])


def test_the_checkpoint_records_the_log_length_and_the_step(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, NoisyRegression(crash_at=10))
    progress = _progress(tmp_path)
    lines = (tmp_path / "metrics.jsonl").read_bytes().splitlines(keepends=True)
    # at the checkpoint of step 8: 8 loss records and the validation of epoch 0
    assert progress["log_bytes"] == sum(len(x) for x in lines[:9])
    assert progress["done"] is False and len(progress["recent"]) == 8


# (max_steps, where the run stops: epoch and step in it, the learning rate after its last step). The schedule
# is as long as the run: 3 warm-up steps, then a cosine that reaches 0 at max_steps (3: no decay left, the peak)
@pytest.mark.parametrize("max_steps,epoch,step_in_epoch,last_lr", [(3, 0, 3, 0.05), (7, 1, 2, 0.0), (10, 2, 0, 0.0)])
def test_a_run_stopped_by_max_steps_records_where_it_stopped_and_resumed_trains_nothing_more(
    tmp_path, max_steps, epoch, step_in_epoch, last_lr
):
    first = _run(tmp_path, NoisyRegression(), max_steps=max_steps)
    progress = _progress(tmp_path)
    assert progress["done"] is True and progress["global_step"] == max_steps
    assert (progress["epoch"], progress["step_in_epoch"]) == (epoch, step_in_epoch)
    records = _records(tmp_path)
    last = [r for r in records if "loss" in r][-1]
    assert last["step"] == max_steps and last["lr"] == pytest.approx(last_lr, abs=1e-12)
    weights = _weights(first)
    again = NoisyRegression()
    trainer = _run(tmp_path, again, resume=True, max_steps=max_steps)
    assert again.calls == 0 and _records(tmp_path) == records
    assert all(torch.equal(_weights(trainer)[k], weights[k]) for k in weights)


def test_resuming_prints_where_and_hands_the_plan_its_saved_decisions(tmp_path, capsys):
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, NoisyRegression(crash_at=10))
    capsys.readouterr()
    trainer = _run(tmp_path, NoisyRegression(), resume=True)
    assert f"resuming from {tmp_path / 'state'} at epoch 1 step 3" in capsys.readouterr().out
    assert trainer.plan.restored["plan"] == "shuffled" and trainer.plan.restored["global_step"] == 8


def test_a_checkpoint_before_any_record_notes_an_empty_log(tmp_path):
    """No loss records and no validation: the first checkpoints come before metrics.jsonl exists."""
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, NoisyRegression(crash_at=6), validate=None, log_every=0)
    assert not (tmp_path / "metrics.jsonl").exists() and _progress(tmp_path)["log_bytes"] == 0
    assert _progress(tmp_path)["train_seconds"] >= 0
    trainer = _run(tmp_path, NoisyRegression(), validate=None, log_every=0, resume=True)
    assert trainer.global_step == 15


class StoppedClock:
    """A stand-in for `time` in the trainer whose clock does not move: the time a run reports is what it resumed."""

    @staticmethod
    def time() -> float:
        return 10_000.0


def test_a_state_from_before_the_one_trainer_resumes_its_single_epoch(tmp_path, monkeypatch):
    """MAE's old training state: {"global_step", "recent", "seconds"} of one epoch, no epoch or step in it."""
    import workbench.train.trainer as trainer_module

    def one_epoch(out, objective, resume=False):
        return _run(out, objective, resume=resume, epochs=1, validate=None)

    reference = one_epoch(tmp_path / "ref", NoisyRegression())
    with pytest.raises(KeyboardInterrupt):
        one_epoch(tmp_path / "run", NoisyRegression(crash_at=5))
    state = json.loads((tmp_path / "run" / "state" / "state.json").read_text())
    assert state["progress"]["global_step"] == 4
    state["progress"] = {"global_step": 4, "recent": state["progress"]["recent"], "seconds": 500.0}
    (tmp_path / "run" / "state" / "state.json").write_text(json.dumps(state))
    monkeypatch.setattr(trainer_module, "time", StoppedClock)
    resumed = NoisyRegression()
    trainer = one_epoch(tmp_path / "run", resumed, resume=True)
    assert resumed.calls == 1 and trainer.global_step == 5
    assert all(torch.equal(_weights(trainer)[k], _weights(reference)[k]) for k in _weights(reference))
    assert trainer.seconds() == 500.0  # the old state's time counts
    del state["progress"]["seconds"]  # and a state without any time starts the clock at 0
    (tmp_path / "run2").mkdir()
    shutil.copytree(tmp_path / "run" / "state", tmp_path / "run2" / "state")
    (tmp_path / "run2" / "state" / "state.json").write_text(json.dumps(state))
    assert one_epoch(tmp_path / "run2", NoisyRegression(), resume=True).seconds() == 0.0
    assert one_epoch(tmp_path / "fresh", NoisyRegression()).seconds() == 0.0  # a fresh run's clock starts at 0


def test_bf16_training_hands_back_a_model_that_evaluates_in_fp32(tmp_path):
    """The loss runs under autocast; the model the trainer hands to validation (and saves) computes in fp32."""
    seen = []

    def validate(model):
        x = DATA[:, :4]
        with torch.no_grad():
            seen.append(torch.equal(model(x), x @ model.weight.T + model.bias))
        return _validate(model)

    _run(tmp_path, NoisyRegression(), validate=validate, mixed_precision="bf16", max_steps=5)
    assert seen == [True]


def test_resume_without_a_checkpoint_starts_the_log_afresh(reference, tmp_path):
    _, weights, records, _ = reference
    (tmp_path / "metrics.jsonl").write_text('{"step": 99, "stale": true}\n')
    trainer = _run(tmp_path, NoisyRegression(), resume=True)
    assert _records(tmp_path) == records
    assert all(torch.equal(_weights(trainer)[k], weights[k]) for k in weights)


def test_without_resume_a_saved_state_is_not_read(reference, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, NoisyRegression(crash_at=10))
    fresh = NoisyRegression(crash_at=2)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, fresh)  # starts at step 1: the saved state is ignored
    assert fresh.calls == 2


# ---------------------------------------------------------------------------------------------- the state on disk


def _parts(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (s + 1))
    return model, optimizer, scheduler


def _step(model, optimizer, scheduler):
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


def test_state_round_trip_restores_model_optimizer_scheduler_and_both_generators(tmp_path):
    model, optimizer, scheduler = _parts()
    for _ in range(3):
        _step(model, optimizer, scheduler)
    optimizer.state[model.weight]["ema.decay"] = 0.25  # a non-tensor entry travels as JSON; names may hold dots
    optimizer.state[model.weight]["ema.shadow"] = torch.full((2, 3), 7.0)
    optimizer.state[model.bias] = {"step": 3.0, "note": 3}  # a parameter whose state holds only numbers
    optimizer.param_groups[0]["weight_decay"] = 0.5
    random.seed(11)
    torch.manual_seed(12)
    save_state(tmp_path / "new" / "state", model, optimizer, scheduler, {"epoch": 2, "nested": {"a": [1, 2]}})
    want = (torch.rand(3), random.random())
    torch.manual_seed(99), random.seed(99)
    other, other_opt, other_sched = _parts(seed=5)
    progress = load_state(tmp_path / "new" / "state", other, other_opt, other_sched)
    assert progress == {"epoch": 2, "nested": {"a": [1, 2]}}
    assert torch.equal(torch.rand(3), want[0]) and random.random() == want[1]
    for a, b in zip(model.parameters(), other.parameters()):
        assert torch.equal(a, b)
    restored = other_opt.state[other.weight]
    assert restored["ema.decay"] == 0.25 and torch.equal(restored["ema.shadow"], torch.full((2, 3), 7.0))
    assert other_opt.state[other.bias]["note"] == 3 and float(other_opt.state[other.bias]["step"]) == 3.0
    assert torch.equal(restored["exp_avg"], optimizer.state[model.weight]["exp_avg"])
    assert torch.equal(restored["exp_avg_sq"], optimizer.state[model.weight]["exp_avg_sq"])
    assert float(restored["step"]) == 3.0
    assert other_opt.param_groups[0]["weight_decay"] == 0.5
    assert other_sched.state_dict() == scheduler.state_dict() and other_sched.get_last_lr() == scheduler.get_last_lr()
    optimizer.state.pop(model.bias), other_opt.state.pop(other.bias)
    _step(model, optimizer, scheduler), _step(other, other_opt, other_sched)  # and they go on alike
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), other.parameters()))


def test_state_is_swapped_in_whole_and_a_half_written_one_is_replaced(tmp_path):
    model, optimizer, scheduler = _parts()
    (tmp_path / "state.tmp").mkdir()
    (tmp_path / "state.tmp" / "junk").write_text("half written")
    save_state(tmp_path / "state", model, optimizer, scheduler, {"n": 1})
    (tmp_path / "state.old").mkdir()  # and a stale copy from an earlier crash, beside the state
    (tmp_path / "state.old" / "state.json").write_text("{}")
    save_state(tmp_path / "state", model, optimizer, scheduler, {"n": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [
        "model.safetensors",
        "optimizer.safetensors",
        "state.json",
    ]
    assert load_state(tmp_path / "state", *_parts()) == {"n": 2}


def test_a_crash_between_the_two_renames_leaves_the_previous_state_where_resume_finds_it(tmp_path, monkeypatch):
    from pathlib import Path

    model, optimizer, scheduler = _parts()
    save_state(tmp_path / "state", model, optimizer, scheduler, {"n": 1})
    rename = Path.rename

    def crash_on_swapping_in(self, target):
        if self.name == "state.tmp":
            raise OSError("killed between the renames")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", crash_on_swapping_in)
    with pytest.raises(OSError, match="between the renames"):
        save_state(tmp_path / "state", model, optimizer, scheduler, {"n": 2})
    assert not (tmp_path / "state").exists() and latest_state(tmp_path / "state") == tmp_path / "state.old"
    assert load_state(latest_state(tmp_path / "state"), *_parts()) == {"n": 1}


def test_latest_state_falls_back_to_the_copy_left_by_a_crash_mid_swap(tmp_path):
    state = tmp_path / "state"
    assert latest_state(state) is None
    (tmp_path / "state.old").mkdir()
    assert latest_state(state) is None  # an empty leftover is no checkpoint
    (tmp_path / "state.old" / "state.json").write_text("{}")
    assert latest_state(state) == tmp_path / "state.old"
    state.mkdir()
    assert latest_state(state) == state


def test_a_damaged_state_is_a_checkpoint_error_naming_it(tmp_path):
    model, optimizer, scheduler = _parts()
    save_state(tmp_path / "state", model, optimizer, scheduler, {})
    (tmp_path / "state" / "optimizer.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="cannot resume from .*state"):
        load_state(tmp_path / "state", *_parts())
    (tmp_path / "state" / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot resume"):
        load_state(tmp_path / "state", *_parts())
