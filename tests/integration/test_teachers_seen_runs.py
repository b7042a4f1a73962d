"""Tiny distillation runs and the teachers they started against (`<out>/teachers.json`): a resume from other
teacher weights is refused, the final checkpoint records the teacher the run started with, `none` records none."""

import json

import pytest
import torch

from workbench.data import load_dataset
from workbench.errors import WorkbenchError
from workbench.methods import distill
from workbench.methods.labels import LabelObjective
from workbench.models import create_model
from workbench.models.io import save_checkpoint, weights_fingerprint
from workbench.train import TrainConfig

TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2}


def _teacher(folder, tokenizer, seed):
    torch.manual_seed(seed)
    labels = load_dataset("shapes-vqa", "val", 4).labels
    model = create_model("fusion", len(tokenizer), len(labels), **TINY)
    save_checkpoint(model, tokenizer, folder, {"task": "vqa", "labels": list(labels)})
    return folder


def _cfg(tmp_path, teacher, recipe="kd", out="s"):
    return TrainConfig(
        dataset="shapes-vqa", out=str(tmp_path / out), teacher=str(teacher), recipe=recipe, save_every=2,
        train_size=96, val_size=16, test_size=16, batch_size=16, max_steps=6,
    )  # fmt: skip


def _crash_at(monkeypatch, step):
    calls, real = [], LabelObjective.loss

    def loss(self, model, batch):
        calls.append(1)
        if len(calls) == step:
            raise KeyboardInterrupt("simulated crash")
        return real(self, model, batch)

    monkeypatch.setattr(LabelObjective, "loss", loss)


def test_a_kd_run_resumes_only_with_the_teacher_weights_it_started_with(tmp_path, tokenizer, monkeypatch):
    teacher = _teacher(tmp_path / "teacher", tokenizer, seed=0)
    started = weights_fingerprint(teacher)
    _crash_at(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        distill(_cfg(tmp_path, teacher), progress=False)
    record = json.loads((tmp_path / "s" / "teachers.json").read_text())
    assert record == {"teacher": {"path": str(teacher), "fingerprint": started}}

    _teacher(tmp_path / "teacher", tokenizer, seed=1)  # rebuilt in place
    with pytest.raises(WorkbenchError, match=rf"other teacher weights .*{started} then"):
        distill(_cfg(tmp_path, teacher), resume=True, progress=False)
    other = _teacher(tmp_path / "other", tokenizer, seed=0)  # the same weights as the start, in another folder
    monkeypatch.undo()
    result = distill(_cfg(tmp_path, other), resume=True, progress=False)  # the weights are what counts
    assert result["steps"] == 6
    meta = json.loads((tmp_path / "s" / "model" / "workbench.json").read_text())
    assert meta["teacher_fingerprint"] == started


def test_the_final_checkpoint_records_the_teacher_the_run_started_with(tmp_path, tokenizer, monkeypatch):
    """The teacher folder is rebuilt while the run trains (the run keeps its loaded teacher): the checkpoint
    names the weights it learned from, not the folder's new ones."""
    teacher = _teacher(tmp_path / "teacher", tokenizer, seed=0)
    started, real = weights_fingerprint(teacher), LabelObjective.loss

    def rebuild_then_learn(self, model, batch):
        if weights_fingerprint(teacher) == started:
            _teacher(teacher, tokenizer, seed=1)
        return real(self, model, batch)

    monkeypatch.setattr(LabelObjective, "loss", rebuild_then_learn)
    distill(_cfg(tmp_path, teacher), progress=False)
    assert weights_fingerprint(teacher) != started
    meta = json.loads((tmp_path / "s" / "model" / "workbench.json").read_text())
    assert meta["teacher_fingerprint"] == started


def test_a_none_run_learns_from_no_teacher_and_resumes_whatever_its_teachers_weights(tmp_path, tokenizer, monkeypatch):
    teacher = _teacher(tmp_path / "teacher", tokenizer, seed=0)
    _crash_at(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        distill(_cfg(tmp_path, teacher, recipe="none"), progress=False)
    assert json.loads((tmp_path / "s" / "teachers.json").read_text()) == {}
    _teacher(tmp_path / "teacher", tokenizer, seed=1)
    monkeypatch.undo()
    assert distill(_cfg(tmp_path, teacher, recipe="none"), resume=True, progress=False)["steps"] == 6
    assert "teacher_fingerprint" not in json.loads((tmp_path / "s" / "model" / "workbench.json").read_text())
