"""The teachers a run started against: recorded once, compared with the folders as they are now."""

import json

import pytest

from workbench.errors import CheckpointError, WorkbenchError
from workbench.models.io import weights_fingerprint
from workbench.train import TrainConfig
from workbench.train.teachers_seen import (
    FILE,
    Changed,
    changed_in_run,
    changed_teachers,
    record_teachers,
    refuse_changed,
    started_against,
    teachers_of,
)


def _folder(path, weights: bytes):
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.safetensors").write_bytes(weights)
    return path


def _cfg(tmp_path, **recipe_args):
    teacher = _folder(tmp_path / "teacher", b"task teacher")
    return TrainConfig(dataset="shapes-vqa", out=str(tmp_path / "run"), teacher=str(teacher), recipe_args=recipe_args)


def test_a_run_learns_from_its_teacher_and_its_methods_teacher_fields_with_weights_only(tmp_path):
    fusion = _folder(tmp_path / "fusion", b"fusion teacher")
    (tmp_path / "empty").mkdir()
    cfg = _cfg(tmp_path, fusion_teacher=str(fusion), dual_teacher=str(tmp_path / "empty"), vision_teacher=None, alpha=1)
    seen = teachers_of(cfg, "mcad")
    assert seen == {
        "teacher": {
            "path": str((tmp_path / "teacher").resolve()),
            "fingerprint": weights_fingerprint(tmp_path / "teacher"),
        },
        "fusion_teacher": {"path": str(fusion.resolve()), "fingerprint": weights_fingerprint(fusion)},
    }
    # `none` takes only the teacher's tokenizer and size, `hard` nothing: neither learned from its weights
    assert teachers_of(cfg, "none") == teachers_of(cfg, "hard") == {}


def test_a_rebuilt_teacher_is_a_change_an_unchanged_or_vanished_one_is_not(tmp_path):
    cfg, out = _cfg(tmp_path), tmp_path / "run"
    out.mkdir()
    assert started_against(out) is None and changed_teachers(out) == []  # a run from before the record: unchecked
    before = weights_fingerprint(tmp_path / "teacher")
    record_teachers(out, teachers_of(cfg, "kd"))
    assert started_against(out)["teacher"]["fingerprint"] == before and changed_teachers(out) == []
    _folder(tmp_path / "teacher", b"rebuilt")
    now = weights_fingerprint(tmp_path / "teacher")
    assert changed_teachers(out) == [Changed("teacher", str(tmp_path / "teacher"), before, now)]
    (tmp_path / "teacher" / "model.safetensors").unlink()
    (tmp_path / "teacher").rmdir()
    assert changed_teachers(out) == []  # gone: loading it will say so; nothing to compare


def test_a_run_folders_stages_are_checked_with_it_and_the_refusal_names_the_teacher_and_what_to_do(tmp_path):
    matcher = _folder(tmp_path / "matcher", b"matching teacher")
    run = tmp_path / "run"
    (run / "pretrain").mkdir(parents=True)
    record_teachers(run, {})
    record_teachers(run / "pretrain", {"teacher": {"path": str(matcher), "fingerprint": weights_fingerprint(matcher)}})
    assert changed_in_run(run) == []
    _folder(matcher, b"rebuilt matching teacher")
    changed = changed_in_run(run)
    assert [(c.field, c.path) for c in changed] == [("teacher", str(matcher))]
    with pytest.raises(WorkbenchError, match=r"started against other teacher weights .*matcher.* then, .* now.*--out"):
        refuse_changed(run, changed)
    refuse_changed(run, [])  # nothing changed: no error
    assert changed_in_run(tmp_path / "never-started") == []


@pytest.mark.parametrize("text", ["{not json", '["a list"]', '{"teacher": {"path": "x"}}'])
def test_a_damaged_record_is_a_clear_checkpoint_error(tmp_path, text):
    (tmp_path / FILE).write_text(text)
    with pytest.raises(CheckpointError, match="teachers.json is damaged"):
        started_against(tmp_path)


def test_the_record_is_plain_json(tmp_path):
    record_teachers(tmp_path, {"teacher": {"path": "/t", "fingerprint": "abc"}})
    assert json.loads((tmp_path / FILE).read_text()) == {"teacher": {"path": "/t", "fingerprint": "abc"}}


def test_resuming_with_another_folder_or_another_set_of_teachers_is_a_change(tmp_path):
    cfg, out = _cfg(tmp_path), tmp_path / "run"
    out.mkdir()
    record_teachers(out, teachers_of(cfg, "kd"))
    assert changed_teachers(out, now=teachers_of(cfg, "kd")) == []
    other = _folder(tmp_path / "other", b"another teacher")
    swapped = teachers_of(TrainConfig(dataset="shapes-vqa", out=str(out), teacher=str(other)), "kd")
    (change,) = changed_teachers(out, now=swapped)
    assert change.path == str(other) and change.now == weights_fingerprint(other)
    matcher = _folder(tmp_path / "matcher", b"matching teacher")
    added = teachers_of(_cfg(tmp_path, pretrain_teacher=str(matcher)), "dide-pt")
    assert changed_teachers(out, now=added) == [
        Changed("pretrain_teacher", str(matcher), "none", weights_fingerprint(matcher))
    ]
    assert [c.now for c in changed_teachers(out, now={})] == ["none"]  # resumed as a run of no teacher


def test_a_folder_named_twice_is_hashed_once(tmp_path, monkeypatch):
    import workbench.train.teachers_seen as seen_module

    calls = []
    real = seen_module.weights_fingerprint
    monkeypatch.setattr(seen_module, "weights_fingerprint", lambda folder: calls.append(folder) or real(folder))
    cfg = _cfg(tmp_path, dual_teacher=str(tmp_path / "teacher"))  # MCAD: the student's teacher is its dual teacher
    assert set(teachers_of(cfg, "mcad")) == {"teacher", "dual_teacher"} and len(calls) == 1
