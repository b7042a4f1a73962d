"""Tiny end-to-end training runs: the metric improves, interrupted runs resume exactly, eval writes JSON."""

import json

import pytest
import torch
from safetensors.torch import load_file

from workbench.cli import main as cli
from workbench.data import Collator, load_dataset
from workbench.errors import WorkbenchError
from workbench.evaluate import evaluate
from workbench.models.io import load_checkpoint
from workbench.train import HardLabels, TrainConfig, train

TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2}


def _cfg(out, **kw):
    base = dict(
        model="fusion",
        dataset="shapes-vqa",
        out=str(out),
        epochs=2,
        train_size=1280,
        val_size=200,
        test_size=200,
        batch_size=32,
        lr=2e-3,
        warmup_steps=5,
        size=TINY,
        seed=3,
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("kind", ["fusion", "dual"])
def test_tiny_run_improves_validation_accuracy(tmp_path, kind, tokenizer):
    cfg = _cfg(tmp_path / kind, model=kind)
    from workbench.models import create_model

    torch.manual_seed(cfg.seed)
    untrained = create_model(kind, len(tokenizer), 19, **TINY)
    val = load_dataset("shapes-vqa", "val", 200)
    before = evaluate(untrained, val, Collator(tokenizer, 64))["accuracy"]
    result = train(cfg, progress=False)
    assert result["val"]["accuracy"] > before + 0.2, (before, result["val"]["accuracy"])
    # artefacts: metrics as JSON lines, the final checkpoint with its measured metrics
    lines = [json.loads(x) for x in (tmp_path / kind / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines if "val_accuracy" in x] == [0, 1]
    ck = load_checkpoint(tmp_path / kind / "model")
    assert ck.meta["metrics"]["test"]["accuracy"] == result["test"]["accuracy"]
    assert set(ck.meta["metrics"]["test"]["per_type"]) == set(val.qtypes)


class CrashAt(HardLabels):
    """Hard labels, but the process 'dies' at a given step (after the last checkpoint)."""

    def __init__(self, step):
        self.step, self.calls = step, 0

    def loss(self, model, batch):
        self.calls += 1
        if self.calls > self.step:
            raise KeyboardInterrupt("simulated crash")
        return super().loss(model, batch)


def test_interrupted_run_resumes_from_saved_step_and_matches(tmp_path):
    ref = train(_cfg(tmp_path / "ref", save_every=7), progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path / "run", save_every=7), recipe=CrashAt(50), progress=False)
    state = json.loads((tmp_path / "run" / "state" / "state.json").read_text())
    assert state["progress"]["global_step"] == 49  # last multiple of save_every before the crash
    assert state["progress"]["epoch"] == 1 and state["progress"]["step_in_epoch"] == 9
    with pytest.raises(FileExistsError):
        train(_cfg(tmp_path / "run", save_every=7), progress=False)  # refuses to overwrite without resume
    # the time spent before the crash counts: pretend it was 1000 s, and the resumed run's clock starts there
    state["progress"]["train_seconds"] = 1000.0
    (tmp_path / "run" / "state" / "state.json").write_text(json.dumps(state))
    resumed = train(_cfg(tmp_path / "run", save_every=7), resume=True, progress=False)
    meta = json.loads((tmp_path / "run" / "model" / "workbench.json").read_text())
    assert 1000 <= meta["train_seconds"] < 1000 + 600
    elapsed = [json.loads(line)["elapsed_s"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert elapsed[-1] >= 1000 and elapsed == sorted(elapsed)
    assert resumed["steps"] == ref["steps"] == 80
    # the loss record of step 50, written after the checkpoint at 49, was cut back on resuming and written once
    assert [r["step"] for r in _records(tmp_path / "run") if "loss" in r] == [50]
    assert _records(tmp_path / "run") == _records(tmp_path / "ref")
    a = load_file(tmp_path / "ref" / "model" / "model.safetensors")
    b = load_file(tmp_path / "run" / "model" / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    assert resumed["test"]["accuracy"] == pytest.approx(ref["test"]["accuracy"])


def test_cli_train_then_eval_writes_per_type_json(tmp_path, capsys):
    out = tmp_path / "cli"
    assert (
        cli(
            [
                "train",
                "--dataset",
                "shapes-ve",
                "--out",
                str(out),
                "--train-size",
                "256",
                "--val-size",
                "64",
                "--test-size",
                "64",
                "--batch-size",
                "32",
                "--hidden-size",
                "32",
                "--num-layers",
                "1",
                "--num-heads",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    assert cli(["eval", str(out / "model"), "--split", "val", "--size", "60", "--out", str(tmp_path / "e.json")]) == 0
    metrics = json.loads((tmp_path / "e.json").read_text())
    assert metrics["n"] == 60 and metrics["dataset"] == "shapes-ve"
    # per type: the question types of those 60 examples, counted here from the dataset, each scored on its own
    val = load_dataset("shapes-ve", "val", 60)
    counts = {q: sum(val[i].qtype == q for i in range(60)) for q in {val[i].qtype for i in range(60)}}
    assert {q: m["n"] for q, m in metrics["per_type"].items()} == counts
    assert set(counts) == {"existence", "counting", "relation"}
    overall = sum(m["accuracy"] * m["n"] for m in metrics["per_type"].values()) / 60
    assert metrics["accuracy"] == pytest.approx(overall)
    assert "accuracy" in capsys.readouterr().out


def test_cli_errors_are_clear(tmp_path, capsys):
    assert cli(["eval", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


class RecordQtypes(HardLabels):
    """Hard labels that remember each batch's question types (and can crash like `CrashAt`)."""

    def __init__(self, crash_at=None):
        self.seen, self.crash_at = [], crash_at

    def loss(self, model, batch):
        if self.crash_at is not None and len(self.seen) >= self.crash_at:
            raise KeyboardInterrupt("simulated crash")
        self.seen.append(set(batch.qtypes))
        return super().loss(model, batch)


class RecordDraws(HardLabels):
    """Hard labels that count each question type drawn and note the thread count training runs with."""

    def __init__(self):
        self.counts, self.threads = {}, set()

    def loss(self, model, batch):
        for q in batch.qtypes:
            self.counts[q] = self.counts.get(q, 0) + 1
        self.threads.add(torch.get_num_threads())
        return super().loss(model, batch)


def test_oversampled_type_is_drawn_more_in_an_epoch_of_the_same_length_on_the_threads_asked(tmp_path):
    before = torch.get_num_threads()
    want = 1 if before > 1 else 2  # not torch's current setting, so the test sees the switch
    plain, more = RecordDraws(), RecordDraws()
    kw = dict(epochs=1, train_size=640)
    a = train(_cfg(tmp_path / "plain", **kw), recipe=plain, progress=False)
    b = train(_cfg(tmp_path / "more", oversample={"counting": 4}, threads=want, **kw), recipe=more, progress=False)
    assert a["steps"] == b["steps"] == 640 // 32 and sum(more.counts.values()) == 640
    share = {k: r.counts.get("counting", 0) / 640 for k, r in (("plain", plain), ("more", more))}
    assert share["plain"] < 0.25 and share["more"] > 0.35  # 1 type in 6 -> 4 in 9
    assert more.threads == {want} and torch.get_num_threads() == before  # the run's threads, then torch's again
    assert load_checkpoint(tmp_path / "more" / "model").meta["train_config"]["oversample"] == {"counting": 4}


def test_curriculum_opens_with_only_the_focused_types_and_resumes_inside_it(tmp_path):
    kw = dict(epochs=1, train_size=320, curriculum=[[["counting", "relation"], 3], [["position"], 1]], save_every=2)
    rec = RecordQtypes()
    ref = train(_cfg(tmp_path / "ref", **kw), recipe=rec, progress=False)
    assert ref["steps"] == 4 + 320 // 32  # the focused phase comes on top of the epoch
    assert all(s <= {"counting", "relation"} for s in rec.seen[:3]) and rec.seen[3] == {"position"}
    assert all(len(s) > 2 for s in rec.seen[4:])  # then the full mix (6 types, 32 per batch)
    # a crash in the focused phase resumes there, and the run ends exactly like the uninterrupted one
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path / "run", **kw), recipe=RecordQtypes(crash_at=3), progress=False)
    assert json.loads((tmp_path / "run" / "state" / "state.json").read_text())["progress"]["global_step"] == 2
    resumed = train(_cfg(tmp_path / "run", **kw), resume=True, progress=False)
    assert resumed["steps"] == ref["steps"]
    a = load_file(tmp_path / "ref" / "model" / "model.safetensors")
    b = load_file(tmp_path / "run" / "model" / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


class ScriptedAccuracy(RecordQtypes):
    """Hard labels, but the batch accuracy an until= phase reads is scripted: 0 for the first `low` batches, then 1."""

    def __init__(self, low=0, crash_at=None):
        super().__init__(crash_at)
        self.low = low

    def loss(self, model, batch):
        loss, logs = super().loss(model, batch)
        return loss, {**logs, "accuracy": 0.0 if len(self.seen) <= self.low else 1.0}


def test_gated_phase_ends_once_its_batches_are_learned_and_resumes_after_the_cut(tmp_path):
    # two phases capped at 50 and 30 steps, each ending once 25 batches in a row average 90%; the run stops at 60
    phases = [[["counting"], 50, "until=0.9"], [["position"], 30, "until=0.9"]]
    kw = dict(epochs=2, train_size=320, max_steps=60, save_every=10, curriculum=phases)
    rec = ScriptedAccuracy(low=10)
    ref = train(_cfg(tmp_path / "ref", **kw), recipe=rec, progress=False)
    # the first 10 batches at 0: the window of 25 holds at most 2 of them from step 33 on; the second phase is
    # right at once and ends after one window; the steps left go to the mix, and the run still ends at 60
    assert ref["steps"] == 60
    assert all(s == {"counting"} for s in rec.seen[:33]) and all(s == {"position"} for s in rec.seen[33:58])
    assert all(len(s) > 2 for s in rec.seen[58:])
    records = [json.loads(x) for x in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]
    ended = [(r["step"], r["phase"], r["phase_steps"], r["passed"]) for r in records if "phase" in r]
    assert ended == [(33, 0, 33, True), (58, 1, 25, True)]
    # a crash in the second phase (last checkpoint: step 40) resumes with the first phase's cut and the second's
    # window, and ends exactly like the uninterrupted run
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path / "run", **kw), recipe=ScriptedAccuracy(low=10, crash_at=45), progress=False)
    saved = json.loads((tmp_path / "run" / "state" / "state.json").read_text())["progress"]
    assert saved["global_step"] == 40 and saved["gate"]["cut"] == {"0": 33} and len(saved["gate"]["recent"]) == 7
    resumed = train(_cfg(tmp_path / "run", **kw), recipe=ScriptedAccuracy(low=-1), resume=True, progress=False)
    assert resumed["steps"] == 60
    a = load_file(tmp_path / "ref" / "model" / "model.safetensors")
    b = load_file(tmp_path / "run" / "model" / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


def test_gated_phase_at_its_cap_moves_on_and_needs_a_recipe_that_reports_accuracy(tmp_path):
    from workbench.train import PhaseGate

    phases = [[["a"], 4, "until=0.5"], [["b"], 2]]
    gate = PhaseGate(phases, window=3)
    assert [gate.update(s, 0.0) for s in range(3)] == [None, None, None]
    assert gate.update(3, 0.0) == {"phase": 0, "phase_steps": 4, "phase_accuracy": 0.0, "passed": False}
    assert gate.steps() == [4, 2] and gate.phase_at(4) == (1, 0) and not gate.watching(4) and gate.phase_at(6) is None
    passing = PhaseGate(phases, window=3)
    assert passing.update(0, 0.0) is None and passing.update(1, 1.0) is None  # a window needs 3 batches
    assert passing.update(2, 1.0) == {"phase": 0, "phase_steps": 3, "phase_accuracy": 0.6667, "passed": True}
    assert passing.steps() == [3, 2] and passing.phase_at(3) == (1, 0)
    assert passing.order([[10, 11, 12, 13], [20, 21]], batch_size=1) == [10, 11, 12, 20, 21]
    again = PhaseGate(phases, window=3, **json.loads(json.dumps(passing.state())))  # the training state's JSON
    assert again.steps() == [3, 2] and again.recent == []
    kw = dict(epochs=1, train_size=320, curriculum=[[["counting"], 3, "until=0.9"]])

    class NoAccuracy(HardLabels):
        def loss(self, model, batch):
            loss, logs = super().loss(model, batch)
            return loss, {"ce": logs["ce"]}

    with pytest.raises(WorkbenchError, match="reports no batch accuracy"):
        train(_cfg(tmp_path / "none", **kw), recipe=NoAccuracy(), progress=False)


def test_curriculum_rejects_unknown_question_types(tmp_path):
    from workbench.errors import WorkbenchError

    with pytest.raises(WorkbenchError, match="not question types"):
        train(_cfg(tmp_path / "bad", curriculum=[[["shape"], 2]]), progress=False)
    with pytest.raises(WorkbenchError, match="depends on its scene"):  # ve types need the rendered scene
        train(_cfg(tmp_path / "ve", dataset="shapes-ve", curriculum=[[["relation"], 2]]), progress=False)


def test_curriculum_phases_parse_from_the_command_line():
    from workbench.errors import WorkbenchError
    from workbench.train import parse_curriculum

    assert parse_curriculum(["shape:600", "shape,colour:400"]) == [[["shape"], 600], [["shape", "colour"], 400]]
    assert parse_curriculum(["colour-present,colour-absent:800:balanced"]) == [
        [["colour-present", "colour-absent"], 800, "balanced"]
    ]
    assert parse_curriculum(["shape:900:until=0.97", "a,b:5:balanced:until=0.9"]) == [
        [["shape"], 900, "until=0.97"],
        [["a", "b"], 5, "balanced", "until=0.9"],
    ]
    for bad in ("shape", "shape:", ":5", "shape:0", "shape:x", "shape:5:fast", "shape:balanced"):
        with pytest.raises(WorkbenchError, match="expected NAME"):
            parse_curriculum([bad])
    for bad in ("shape:5:until=0", "shape:5:until=1.5", "shape:5:until=x"):
        with pytest.raises(WorkbenchError, match="needs an accuracy"):
            parse_curriculum([bad])


class _Tagged:
    """A stand-in dataset: 9 common examples and 1 rare one, all of question type "q"."""

    qtypes, curriculum_tags = ("q",), ("common", "rare")

    def __len__(self):
        return 10

    def qtype(self, i):
        return "q"

    def tags(self, i):
        return ("q", "rare" if i == 7 else "common")


def test_balanced_curriculum_phase_draws_its_tags_in_turn():
    from workbench.errors import WorkbenchError
    from workbench.train import curriculum_order

    balanced = curriculum_order(_Tagged(), [[["common", "rare"], 2, "balanced"]], batch_size=4, seed=0)
    assert len(balanced) == 8 and balanced[1::2] == [7, 7, 7, 7]  # the rare example on every other draw
    assert 7 not in balanced[0::2] and len(set(balanced[0::2])) == 4
    plain = curriculum_order(_Tagged(), [[["common", "rare"], 2]], batch_size=5, seed=0)
    assert sorted(plain) == list(range(10))  # in proportion: ten draws, each example once, the rare one once
    assert curriculum_order(_Tagged(), [[["q"], 2]], batch_size=5, seed=0) == plain  # tags include the qtype
    with pytest.raises(WorkbenchError, match="unknown mode"):
        curriculum_order(_Tagged(), [[["rare"], 1, "shuffled"]], batch_size=4, seed=0)
    with pytest.raises(WorkbenchError, match="not question types or tags"):
        curriculum_order(_Tagged(), [[["absent"], 1]], batch_size=4, seed=0)


def test_oversampling_draws_a_tagged_example_k_times_per_epoch():
    from workbench.errors import WorkbenchError
    from workbench.train import epoch_order, parse_oversample, sampled_order

    assert sampled_order(_Tagged(), {}, seed=0, epoch=0) == epoch_order(10, 0, 0)
    order = sampled_order(_Tagged(), {"rare": 4}, seed=0, epoch=0)
    assert len(order) == 13 and order.count(7) == 4 and sorted(set(order)) == list(range(10))
    assert order != sampled_order(_Tagged(), {"rare": 4}, seed=0, epoch=1)  # reshuffled every epoch
    assert parse_oversample(["rare:4", "q:2"]) == {"rare": 4, "q": 2}
    for bad in ("rare", "rare:0", ":3", "rare:x"):
        with pytest.raises(WorkbenchError, match="expected TAG:K"):
            parse_oversample([bad])
    with pytest.raises(WorkbenchError, match="not question types or tags of this dataset"):
        sampled_order(_Tagged(), {"absent": 2}, seed=0, epoch=0)


def test_warm_start_copies_what_fits_and_starts_the_image_front_end_fresh(tmp_path, tokenizer):
    """The easy-VQA stem model can start from a 16-px-patch teacher: the text side and the transformer are
    copied, the conv stem, patch projection, image positions and the answer layer of another label set not."""
    from workbench.data.shapes import VQA_ANSWERS
    from workbench.data.vocab import build_tokenizer
    from workbench.models import create_model
    from workbench.models.io import save_checkpoint
    from workbench.train import warm_start

    source = create_model("fusion", len(tokenizer), len(VQA_ANSWERS), **TINY)
    save_checkpoint(source, tokenizer, tmp_path / "src", {"task": "vqa", "labels": list(VQA_ANSWERS)})
    size = dict(TINY, patch_size=8, conv_stem=[8, 16])
    model = create_model("fusion", len(tokenizer), 13, **size)  # another label set (easy-VQA has 13 answers)
    warm_start(model, tokenizer, tmp_path / "src")
    src, got = source.state_dict(), model.state_dict()
    copied = [k for k in got if k in src and src[k].shape == got[k].shape]
    assert any(".encoder.layer.1." in k for k in copied) and any("word_embeddings" in k for k in copied)
    for k in copied:
        torch.testing.assert_close(got[k], src[k], rtol=0, atol=0, msg=k)
    fresh = warm_start(create_model("fusion", len(tokenizer), 13, **size), tokenizer, tmp_path / "src")
    assert {"vilt.embeddings.patch_embeddings.projection.weight", "vilt.embeddings.position_embeddings"} <= set(fresh)
    assert "classifier.3.weight" in fresh and any(k.startswith("stem.") for k in fresh)
    assert not any(".encoder." in k for k in fresh)
    # a checkpoint that reads other token ids cannot be a starting point
    other = build_tokenizer()
    other.add_tokens(["zzzunseen"])
    with pytest.raises(WorkbenchError, match="vocabulary differs"):
        warm_start(create_model("fusion", len(other), 13, **size), other, tmp_path / "src")


def test_a_warm_start_from_the_same_architecture_is_the_source_itself(tmp_path):
    """Everything fits, so nothing is fresh: in particular the data-dependent init of the patch projection runs
    before the copy and does not overwrite the source's trained bias (one step at learning rate 0)."""
    src = train(_cfg(tmp_path / "src", epochs=1, train_size=64, max_steps=2), progress=False)
    assert src["steps"] == 2
    train(
        _cfg(tmp_path / "run", epochs=1, max_steps=1, lr=0.0, warm_start=str(tmp_path / "src" / "model")),
        progress=False,
    )
    a = load_file(tmp_path / "src" / "model" / "model.safetensors")
    b = load_file(tmp_path / "run" / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=k)


# ---------------------------------------------------------------------------------------------- scale engineering


class _Regression:
    """A stand-in objective for the `Trainer` alone: least squares on the first 4 columns -> the last 2."""

    name = "regression"

    def loss(self, model, batch):
        loss = torch.nn.functional.mse_loss(model(batch[:, :4]), batch[:, 4:])
        return loss, {"mse": loss.item()}


def _fit_linear(out, batch_size, grad_accum, steps=3):
    """A tiny linear model trained by the `Trainer` with plain SGD (the update is lr x gradient, nothing else)."""
    from workbench.train import StreamPlan, Trainer

    data = torch.randn(batch_size * steps, 6, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(out=str(out), epochs=1, batch_size=batch_size, grad_accum=grad_accum, warmup_steps=0,
                      grad_clip=0.0, log_every=1, seed=0)  # fmt: skip
    trainer = Trainer(cfg, _Regression(), out, progress=False)
    model = torch.nn.Linear(4, 2)
    trainer.setup(model, torch.optim.SGD(model.parameters(), lr=0.1), StreamPlan(steps, batch_size),
                  lambda ids: data[ids.start : ids.stop])  # fmt: skip
    trainer.fit()
    return trainer.final_model().state_dict()


def test_gradient_accumulation_takes_the_same_step_as_the_whole_batch(tmp_path):
    """batch_size is the global batch of one optimizer step: 2 micro-batches of 8 step like one batch of 16."""
    whole = _fit_linear(tmp_path / "whole", batch_size=16, grad_accum=1)
    accumulated = _fit_linear(tmp_path / "accumulated", batch_size=16, grad_accum=2)
    halves = _fit_linear(tmp_path / "halves", batch_size=8, grad_accum=1)  # twice the steps on half batches
    for k in whole:
        torch.testing.assert_close(accumulated[k], whole[k], rtol=0, atol=1e-6, msg=k)
    assert not torch.allclose(halves["weight"], whole["weight"])
    # a real run: the same loss at every step (the weights drift apart only by float summation order)
    kw = dict(epochs=1, train_size=320, val_size=32, test_size=32, batch_size=16, max_steps=6, log_every=1)
    train(_cfg(tmp_path / "one", **kw), progress=False)
    train(_cfg(tmp_path / "two", grad_accum=2, **kw), progress=False)
    a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(a) == len(b) == 6
    assert a == pytest.approx(b, rel=0, abs=1e-5)


def _losses(out) -> list[float]:
    return [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def test_resume_mid_run_with_gradient_accumulation_is_exact(tmp_path):
    kw = dict(epochs=2, train_size=320, val_size=32, test_size=32, grad_accum=2, save_every=5, log_every=1)
    ref = train(_cfg(tmp_path / "ref", **kw), progress=False)
    with pytest.raises(KeyboardInterrupt):  # two loss calls a step: dies in step 14, after the checkpoint at 10
        train(_cfg(tmp_path / "run", **kw), recipe=CrashAt(2 * 13 + 1), progress=False)
    assert json.loads((tmp_path / "run" / "state" / "state.json").read_text())["progress"]["global_step"] == 10
    resumed = train(_cfg(tmp_path / "run", **kw), resume=True, progress=False)
    assert resumed["steps"] == ref["steps"] == 20
    a = load_file(tmp_path / "ref" / "model" / "model.safetensors")
    b = load_file(tmp_path / "run" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _records(tmp_path / "run") == _records(tmp_path / "ref")  # metrics.jsonl cut back and redone


def _records(out) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "elapsed_s"} for x in lines]


class RecordPrecision(HardLabels):
    """Hard labels, noting whether autocast is on around the loss and what a teacher run inside returns."""

    def __init__(self):
        self.seen = set()
        self.teacher = torch.nn.Linear(8, 8)

    def loss(self, model, batch):
        with torch.inference_mode():  # a frozen teacher, as the distillation objectives run theirs
            teacher_out = self.teacher(torch.ones(2, 8))
        self.seen.add((torch.is_autocast_enabled("cpu"), teacher_out.dtype))
        return super().loss(model, batch)


def test_bf16_training_runs_on_the_cpu_and_its_loss_decreases(tmp_path):
    kw = dict(epochs=1, train_size=960, val_size=32, test_size=64, max_steps=30, log_every=1)
    recipe = RecordPrecision()
    result = train(_cfg(tmp_path / "bf16", mixed_precision="bf16", **kw), recipe=recipe, progress=False)
    assert recipe.seen == {(True, torch.bfloat16)}  # the loss, teacher included, runs under bf16 autocast
    losses = _losses(tmp_path / "bf16")
    assert len(losses) == 30 and sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.05, losses
    weights = load_file(tmp_path / "bf16" / "model" / "model.safetensors")
    assert {v.dtype for v in weights.values()} == {torch.float32}  # weights and optimizer stay fp32
    assert 0 <= result["test"]["accuracy"] <= 1
    assert TrainConfig.from_json(tmp_path / "bf16" / "train_config.json").mixed_precision == "bf16"
    # the same process then trains in fp32 again (accelerate's process-wide precision is reset), and the
    # bf16 run's losses were its own: close to fp32's, not equal
    plain = RecordPrecision()
    train(_cfg(tmp_path / "fp32", **kw), recipe=plain, progress=False)
    assert plain.seen == {(False, torch.float32)}
    fp32 = _losses(tmp_path / "fp32")
    assert fp32 != losses and fp32 == pytest.approx(losses, abs=0.05)


def test_dataloader_workers_feed_the_same_batches_in_the_same_order(tmp_path):
    """num_workers > 0 builds the batches in other processes; the order, gated curriculum phases included, and
    so the trained weights are the same as without workers."""
    phases = [[["counting"], 40, "until=0.9"]]  # ends early, at step 25 (the first full window of 25 batches)
    kw = dict(epochs=1, train_size=320, val_size=32, test_size=32, max_steps=30, grad_accum=2, curriculum=phases)
    rec = {n: ScriptedAccuracy(low=3) for n in (0, 2)}
    for n, recipe in rec.items():
        train(_cfg(tmp_path / f"w{n}", num_workers=n, **kw), recipe=recipe, progress=False)
    assert rec[0].seen == rec[2].seen and len(rec[0].seen) == 2 * 30
    assert all(s == {"counting"} for s in rec[2].seen[:50]) and all(len(s) > 1 for s in rec[2].seen[50:])
    assert _records(tmp_path / "w2") == _records(tmp_path / "w0")
    assert [r["phase_steps"] for r in _records(tmp_path / "w2") if "phase" in r] == [25]
    a = load_file(tmp_path / "w0" / "model" / "model.safetensors")
    b = load_file(tmp_path / "w2" / "model" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_scale_settings_that_cannot_work_fail_clearly(tmp_path, monkeypatch):
    with pytest.raises(WorkbenchError, match="fp16 needs a GPU"):
        train(_cfg(tmp_path / "fp16", mixed_precision="fp16"), progress=False)
    with pytest.raises(WorkbenchError, match="divide evenly over 1 processes x 3 accumulated micro-batches"):
        train(_cfg(tmp_path / "odd", grad_accum=3), progress=False)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # `accelerate launch --mixed_precision bf16`
    with pytest.raises(WorkbenchError, match="pass --mixed-precision bf16"):
        train(_cfg(tmp_path / "launcher"), progress=False)
    for bad in (dict(mixed_precision="fp8"), dict(grad_accum=0), dict(num_workers=-1)):
        with pytest.raises(WorkbenchError, match=next(iter(bad))):
            TrainConfig(**bad)


# ---------------------------------------------------------------------------------------------- configs as data


def test_a_saved_train_config_loads_back(tmp_path):
    from dataclasses import asdict

    cfg = _cfg(tmp_path / "run", curriculum=[[["counting"], 3, "until=0.9"]], oversample={"counting": 2},
               mixed_precision="bf16", grad_accum=2, num_workers=1, recipe_args={"weights": {"soft": 1.0}})  # fmt: skip
    cfg.to_json(tmp_path / "train_config.json")
    text = (tmp_path / "train_config.json").read_text()
    assert text == json.dumps(asdict(cfg), indent=2)  # the format every run writes
    assert TrainConfig.from_json(tmp_path / "train_config.json") == cfg
    # a config saved before a field existed takes its default
    old = {k: v for k, v in json.loads(text).items() if k not in ("mixed_precision", "grad_accum", "num_workers")}
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert TrainConfig.from_json(tmp_path / "old.json").grad_accum == 1
    # unknown keys: one error naming all of them
    (tmp_path / "typo.json").write_text(json.dumps({**old, "lr_rate": 1e-3, "epoch": 2}))
    with pytest.raises(WorkbenchError, match=r"unknown TrainConfig key\(s\) \['epoch', 'lr_rate'\]"):
        TrainConfig.from_json(tmp_path / "typo.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(WorkbenchError, match="not valid JSON"):
        TrainConfig.from_json(tmp_path / "bad.json")
    with pytest.raises(WorkbenchError, match="cannot read"):
        TrainConfig.from_json(tmp_path / "missing.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(WorkbenchError, match="expected a JSON object"):
        TrainConfig.from_json(tmp_path / "list.json")
