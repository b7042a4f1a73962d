"""The DiDE results grid: claiming runs, resuming a dead worker's run, statistics and the table."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from workbench.distill import experiment
from workbench.distill.experiment import GRID, Run, claim, collect, release, results_table


def test_grid_has_three_seeds_of_each_recipe_on_shapes_vqa_and_one_layer_ablation():
    vqa = [r for r in GRID if r.task == "shapes-vqa" and r.layers == (-1,) and r.text_layers is None]
    for recipe in ("none", "kd", "dide", "dide-pt"):
        assert sorted(r.seed for r in vqa if r.recipe == recipe) == [0, 1, 2]
    assert any(r.layers != (-1,) for r in GRID)
    for task in ("shapes-vqa", "shapes-ve", "easy-vqa", "shapes-nlvr"):  # every recipe on every task
        assert {r.recipe for r in GRID if r.task == task} == {"none", "kd", "dide", "dide-pt"}
    assert len({(r.task, r.name) for r in GRID}) == len(GRID)  # every run has its own folder


def test_the_fast_students_run_has_a_one_layer_text_tower_its_own_folder_and_row(tmp_path):
    from workbench.distill.experiment import FAST_STUDENT

    assert FAST_STUDENT in GRID
    cfg = FAST_STUDENT.config(tmp_path, tmp_path / "assets")
    assert cfg.size == {"text_layers": 1} and cfg.recipe == "dide" and cfg.max_steps == 3000
    assert FAST_STUDENT.name == "dide-text1-seed0" and FAST_STUDENT.variant == "dide (text tower 1 layer)"
    assert Run("shapes-vqa", "dide").config(tmp_path, tmp_path).size == {}  # the default takes the teacher's depth


def test_the_budget_ablation_runs_longer_on_fresh_examples_and_has_its_own_folder_and_row(tmp_path):
    long = Run("shapes-ve", "dide", steps=7500)
    assert long in GRID
    assert long.name == "dide-steps7500-seed0" and long.variant == "dide (7,500 steps)"
    cfg, default = long.config(tmp_path, tmp_path), Run("shapes-ve", "dide").config(tmp_path, tmp_path)
    assert (cfg.max_steps, default.max_steps) == (7500, 3000)
    # one epoch must hold the steps (a 192,000-example epoch would end the run at 3,000)
    assert cfg.epochs == default.epochs == 1 and cfg.train_size == 7500 * cfg.batch_size > default.train_size
    same = ("dataset", "recipe", "teacher", "lr", "warmup_steps", "batch_size", "seed", "size", "test_size")
    assert all(getattr(cfg, k) == getattr(default, k) for k in same)
    with pytest.raises(ValueError, match="generated dataset"):
        Run("easy-vqa", "dide", steps=7500).config(tmp_path, tmp_path)


def test_a_claimed_run_is_skipped_and_a_dead_workers_lock_is_taken_over(tmp_path):
    run_dir = tmp_path / "shapes-vqa" / "dide-seed0"
    assert claim(run_dir)
    assert not claim(run_dir)  # held by a live process (us)
    release(run_dir)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    run_dir.with_name("dide-seed0.lock").write_text(dead.stdout.strip())
    assert claim(run_dir)  # its process is gone
    assert run_dir.with_name("dide-seed0.lock").read_text() == str(os.getpid())


def _fake_run(root, run: Run, accuracy: float, relation: float, teacher: str | None = None):
    meta = {
        "metrics": {
            "test": {
                "accuracy": accuracy,
                "n": 100,
                "per_type": {"relation": {"accuracy": relation, "n": 50}, "attribute": {"accuracy": 1.0, "n": 50}},
            }
        },
        "train_seconds": 600,
        "steps": 3000,
        **({"teacher_fingerprint": teacher} if teacher else {}),
    }
    out = root / run.task / run.name / "model"
    out.mkdir(parents=True)
    (out / "workbench.json").write_text(json.dumps(meta))


def test_collect_gives_mean_and_sample_std_over_seeds_and_checks_the_targets(tmp_path):
    runs = [Run("shapes-vqa", r, s) for r in ("none", "dide") for s in (0, 1, 2)]
    for s, rel in enumerate((0.50, 0.52, 0.54)):
        _fake_run(tmp_path, Run("shapes-vqa", "none", s), 0.80, rel)
    for s, rel in enumerate((0.70, 0.71, 0.72)):
        _fake_run(tmp_path, Run("shapes-vqa", "dide", s), 0.90, rel)
    assets = tmp_path / "assets"
    (assets / "shapes-vqa-teacher").mkdir(parents=True)
    teacher = {"metrics": {"test": {"accuracy": 0.95, "per_type": {"relation": {"accuracy": 1.0}}}}}
    (assets / "shapes-vqa-teacher" / "workbench.json").write_text(json.dumps(teacher))
    results = collect(tmp_path, assets, runs)
    none = results["shapes-vqa"]["rows"]["none"]
    assert none["per_type"]["relation"]["mean"] == pytest.approx(0.52)
    assert none["per_type"]["relation"]["std"] == pytest.approx(0.02)  # sample std (n - 1)
    checks = results["shapes-vqa"]["checks"]
    assert checks["dide_minus_none_relation_points"]["value"] == pytest.approx(19.0)
    assert checks["dide_minus_none_relation_points"]["spread"] == pytest.approx(3.0)
    assert checks["dide_minus_none_relation_points"]["met"]
    assert checks["dide_gap_to_teacher_points"] == {"value": 5.0, "target": 1.5, "met": False}
    table = results_table(results)
    assert "| student `dide` | 3 | 90.0 ± 0.0 | 100.0 ± 0.0 | 71.0 ± 1.0 | 10.0 |" in table
    assert "| teacher (fusion) | | 95.0 |" in table
    assert "NOT met" in table


def test_run_grid_skips_finished_runs(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("workbench.distill.run.distill", lambda cfg, *a, **k: calls.append(cfg.out))
    runs = (Run("shapes-vqa", "none", 0), Run("shapes-vqa", "kd", 0))
    _fake_run(tmp_path, runs[0], 0.5, 0.5)
    assert experiment.run_grid(tmp_path, tmp_path / "assets", runs, progress=False) == ["shapes-vqa/kd-seed0"]
    assert calls == [str(tmp_path / "shapes-vqa" / "kd-seed0")]
    assert not (tmp_path / "shapes-vqa" / "kd-seed0.lock").exists()  # released


def test_collect_keeps_recorded_runs_whose_folders_are_gone_and_prefers_present_ones(tmp_path):
    runs = [Run("shapes-vqa", "none", s) for s in (0, 1)]
    _fake_run(tmp_path / "old", runs[0], 0.60, 0.5)
    _fake_run(tmp_path / "old", runs[1], 0.70, 0.5)
    previous = collect(tmp_path / "old", tmp_path / "assets", runs)
    _fake_run(tmp_path / "new", runs[1], 0.80, 0.5)  # seed 1 re-run this session; seed 0's folder is gone
    rows = collect(tmp_path / "new", tmp_path / "assets", runs, previous=previous)["shapes-vqa"]["rows"]
    assert rows["none"]["accuracy"]["values"] == [0.60, 0.80]
    assert collect(tmp_path / "new", tmp_path / "assets", runs)["shapes-vqa"]["rows"]["none"]["seeds"] == [1]


def test_run_grid_skips_runs_the_last_results_file_records(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("workbench.distill.run.distill", lambda cfg, *a, **k: calls.append(cfg.out))
    runs = (Run("shapes-vqa", "none", 0), Run("shapes-vqa", "kd", 0))
    _fake_run(tmp_path / "old", runs[0], 0.5, 0.5)
    previous = collect(tmp_path / "old", tmp_path / "assets", runs)
    experiment.run_grid(tmp_path / "new", tmp_path / "assets", runs, progress=False, previous=previous)
    assert calls == [str(tmp_path / "new" / "shapes-vqa" / "kd-seed0")]


def test_a_dide_pt_runs_minutes_include_its_matching_stage(tmp_path):
    run = Run("shapes-vqa", "dide-pt", 0)
    _fake_run(tmp_path, run, 0.8, 0.5)  # 600 s
    stage1 = tmp_path / run.task / run.name / "pretrain" / "model"
    stage1.mkdir(parents=True)
    (stage1 / "workbench.json").write_text(json.dumps({"train_seconds": 300}))
    row = collect(tmp_path, tmp_path / "assets", [run])["shapes-vqa"]["rows"]["dide-pt"]
    assert row["runs"][0]["minutes"] == 15.0


def test_students_of_a_since_rebuilt_teacher_are_set_aside_and_rerun(tmp_path, monkeypatch):
    """A student records its teacher's fingerprint; after the teacher is rebuilt its row no longer counts,
    and the grid runs it again (its old folder kept aside)."""
    from workbench.models.io import weights_fingerprint

    calls = []
    monkeypatch.setattr("workbench.distill.run.distill", lambda cfg, *a, **k: calls.append(cfg.out))
    assets = tmp_path / "assets"
    (assets / "easy-vqa-teacher").mkdir(parents=True)
    (assets / "easy-vqa-teacher" / "model.safetensors").write_bytes(b"old weights")
    old = weights_fingerprint(assets / "easy-vqa-teacher")
    runs = (Run("easy-vqa", "none", 0), Run("easy-vqa", "kd", 0), Run("easy-vqa", "dide", 0))
    _fake_run(tmp_path, runs[0], 0.8, 0.8)  # `none` records no fingerprint: it learns nothing from the teacher
    _fake_run(tmp_path, runs[1], 0.9, 0.9, teacher=old)
    _fake_run(tmp_path, runs[2], 0.9, 0.9, teacher=old)
    previous = collect(tmp_path, assets, runs)
    assert set(previous["easy-vqa"]["rows"]) == {"none", "dide", "kd"}
    assert previous["easy-vqa"]["rows"]["kd"]["runs"][0]["teacher_fingerprint"] == old

    (assets / "easy-vqa-teacher" / "model.safetensors").write_bytes(b"new weights")
    assert weights_fingerprint(assets / "easy-vqa-teacher") != old
    assert set(collect(tmp_path, assets, runs, previous=previous)["easy-vqa"]["rows"]) == {"none"}
    shutil.rmtree(tmp_path / "easy-vqa" / "kd-seed0")  # a run only the results file remembers
    experiment.run_grid(tmp_path, assets, runs, progress=False, previous=previous)
    assert calls == [str(tmp_path / "easy-vqa" / "kd-seed0"), str(tmp_path / "easy-vqa" / "dide-seed0")]
    assert (tmp_path / "easy-vqa" / f"dide-seed0.teacher-{old}" / "model" / "workbench.json").exists()
