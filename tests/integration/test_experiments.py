"""The one experiment runner (workbench/experiments/) on the grids' data (workbench/configs/grids.py): the grids,
claiming runs, resuming a dead worker's run, collecting, statistics, tables; the DiDE and MCAD grids here (MAD:
test_experiments_mad.py); and the shipped results files re-collected from their recorded values."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbench.experiments import (
    claim,
    collect,
    get_grid,
    grid_names,
    release,
    results_table,
    run_grid,
    select,
    shipped_run,
)

ROOT = Path(__file__).resolve().parents[2]
DIDE = get_grid("dide")


def _runs(grid, **picked):
    return select(grid.runs(), **picked)


def _one(grid, task, row, seed=0):
    (run,) = _runs(grid, tasks=[task], rows=[row], seeds=[seed])
    return run


# ---------------------------------------------------------------------------------------------- the grids


def test_every_grid_names_registered_methods_and_gives_every_run_its_own_folder():
    from workbench.methods import get_method

    assert grid_names() == ("dide", "mad", "mcad")
    for name in grid_names():
        grid = get_grid(name)
        runs = grid.runs()
        assert len({r.folder for r in runs}) == len(runs)
        assert {r.method for r in runs} <= {spec["method"] for spec in grid.rows.values()}
        for spec in grid.rows.values():
            assert get_method(spec["method"]).student in (grid.student, "dual")  # MAD's `none`: see its test file
        assert grid.baseline in grid.rows
        # a teacher the grid checks is one of its paths (a misspelt one would switch the check off)
        checked = set(grid.checked_teachers)
        assert checked <= set(grid.paths) and all(k.endswith("_teacher") for k in checked)


def test_every_budget_on_generated_data_holds_its_steps():
    for name in grid_names():
        for run in get_grid(name).runs():
            b = run.budget
            if b.get("train_size"):  # the loop stops at whichever comes first: the epochs or max_steps
                assert b["epochs"] * (b["train_size"] // b["batch_size"]) >= b["max_steps"], run.folder


def test_dide_grid_has_five_seeds_of_the_compared_rows_on_shapes_vqa_and_every_recipe_on_every_task():
    """A claim is a Welch test over at least 5 seeds of each side (issue 28): none, dide, kd and dide-pt have 5, and
    every row a claim compares has them, on every task."""
    for row, seeds in (("none", 5), ("dide", 5), ("dide-pt", 5), ("kd", 5), ("dide-pt-task-attn", 3)):
        assert sorted(r.seed for r in _runs(DIDE, tasks=["shapes-vqa"], rows=[row])) == list(range(seeds)), row
    for task, pairs in DIDE.claims["compare"].items():
        for row in {r for pair in pairs for r in pair}:
            assert len({r.seed for r in _runs(DIDE, tasks=[task], rows=[row])}) >= 5, (task, row)
    for task in DIDE.tasks:
        assert {r.row for r in _runs(DIDE, tasks=[task])} >= {"none", "kd", "dide", "dide-pt-task-attn"}
    # dide-pt's matching teacher reads shapes captions: every shapes task, not easy-VQA
    assert {r.task for r in _runs(DIDE, rows=["dide-pt"])} == {"shapes-vqa", "shapes-ve", "shapes-nlvr"}
    assert [r.folder for r in DIDE.runs()[:4]] == [
        "shapes-vqa/none-seed0", "shapes-vqa/dide-seed0", "shapes-vqa/kd-seed0", "shapes-ve/dide-seed0",
    ]  # fmt: skip
    layers = _one(DIDE, "shapes-vqa", "dide (layers 0,1,2,3)")
    assert layers.name == "dide-layers0_1_2_3-seed0" and layers.method_config(ROOT, ROOT).layers == (0, 1, 2, 3)


def test_the_fast_students_run_has_a_one_layer_text_tower_its_own_folder_and_row(tmp_path):
    fast = shipped_run(DIDE, "shapes-vqa-student-fast")
    cfg = fast.train_config(tmp_path, tmp_path / "assets", DIDE.student)
    assert cfg.size == {"text_layers": 1} and cfg.recipe == "dide" and cfg.max_steps == 3000 and cfg.model == "dual"
    assert fast.folder == "shapes-vqa/dide-text1-seed0" and fast.row == "dide (text tower 1 layer)"
    assert cfg.teacher == str(tmp_path / "assets" / "shapes-vqa-teacher")
    default = shipped_run(DIDE, "shapes-vqa-student")
    assert default.train_config(tmp_path, tmp_path, "dual").size == {}  # the default takes the teacher's depth


def test_the_budget_ablation_runs_longer_on_fresh_examples_and_has_its_own_folder_and_row(tmp_path):
    long = _one(DIDE, "shapes-ve", "dide (7,500 steps)")
    assert long.name == "dide-steps7500-seed0"
    cfg = long.train_config(tmp_path, tmp_path, "dual")
    default = _one(DIDE, "shapes-ve", "dide").train_config(tmp_path, tmp_path, "dual")
    assert (cfg.max_steps, default.max_steps) == (7500, 3000)
    assert cfg.epochs == default.epochs == 1 and cfg.train_size == 7500 * cfg.batch_size > default.train_size
    same = ("dataset", "recipe", "teacher", "lr", "warmup_steps", "batch_size", "seed", "size", "test_size")
    assert all(getattr(cfg, k) == getattr(default, k) for k in same)
    easy = _one(DIDE, "easy-vqa", "dide").train_config(tmp_path, tmp_path, "dual")
    assert easy.train_size is None and easy.curriculum and easy.oversample  # the teacher's view of the data


def test_select_picks_runs_and_refuses_unknown_rows_or_tasks():
    assert select(DIDE.runs()) == DIDE.runs()
    assert {r.task for r in _runs(DIDE, tasks=["easy-vqa"])} == {"easy-vqa"}
    with pytest.raises(ValueError, match="unknown rows"):
        _runs(DIDE, rows=["didee"])
    with pytest.raises(ValueError, match="unknown tasks"):
        _runs(DIDE, tasks=["vqa"])
    with pytest.raises(ValueError, match="unknown grid"):
        get_grid("clip")


def test_a_claimed_run_is_skipped_and_a_dead_workers_lock_is_taken_over(tmp_path):
    run_dir = tmp_path / "shapes-vqa" / "dide-seed0"
    assert claim(run_dir)
    assert not claim(run_dir)  # held by a live process (us)
    release(run_dir)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    run_dir.with_name("dide-seed0.lock").write_text(dead.stdout.strip())
    assert claim(run_dir)  # its process is gone
    assert run_dir.with_name("dide-seed0.lock").read_text() == str(os.getpid())


def test_of_workers_racing_for_a_run_exactly_one_wins_on_a_fresh_folder_and_on_a_dead_workers_lock(tmp_path):
    """Two workers started at the same moment once both trained one run (the first's lock was still empty when
    the second read it and took it for a dead worker's). A claim is now a kernel lock held for the whole run:
    of four workers racing for a run, new or left by a dead worker, exactly one wins; the others see it held."""
    race = (  # the locks module alone (no torch import), so that the workers reach the start line together
        "import importlib.util, sys, time; from pathlib import Path\n"
        "spec = importlib.util.spec_from_file_location('locks', sys.argv[3])\n"
        "locks = importlib.util.module_from_spec(spec); spec.loader.exec_module(locks)\n"
        "start, go_on = float(sys.argv[2]), Path(sys.argv[4])\n"
        "while time.time() < start: time.sleep(0.0005)\n"
        "won = locks.claim(Path(sys.argv[1]))\n"
        "print(int(won), flush=True)\n"
        "while won and not go_on.exists(): time.sleep(0.01)\n"  # a winner holds its run until every worker looked
    )
    module = str(ROOT / "workbench" / "experiments" / "locks.py")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for attempt in range(6):
        folder = tmp_path / f"race{attempt}" / "dide-seed0"
        if attempt % 2:  # a lock file a dead worker left
            folder.parent.mkdir()
            folder.with_name("dide-seed0.lock").write_text(dead.stdout.strip())
        go_on = tmp_path / f"go{attempt}"
        command = [sys.executable, "-c", race, str(folder), str(time.time() + 0.5), module, str(go_on)]
        workers = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(4)]
        wins = [int(w.stdout.readline()) for w in workers]
        go_on.touch()
        assert [w.wait() for w in workers] == [0] * 4
        assert sum(wins) == 1, (attempt, wins)


# ---------------------------------------------------------------------------------------------- DiDE, faked


def _fake_run(root, run, accuracy: float, relation: float, teacher: str | None = None):
    per_type = {"relation": {"accuracy": relation, "n": 50}, "attribute": {"accuracy": 1.0, "n": 50}}
    test = {"accuracy": accuracy, "n": 100, "per_type": per_type}
    meta = {"metrics": {"test": test}, "train_seconds": 600, "steps": 3000}
    if teacher:
        meta["teacher_fingerprint"] = teacher
    out = run.dir(root) / "model"
    out.mkdir(parents=True)
    (out / "workbench.json").write_text(json.dumps(meta))


def _small_dide(seeds):
    """The DiDE grid cut to none and dide on shapes-vqa over `seeds`."""
    block = dict(tasks=("shapes-vqa",), rows=("none", "dide"), seeds=tuple(seeds))
    return dataclasses.replace(DIDE, blocks=(block,))


def _teacher(assets, accuracy=0.95):
    (assets / "shapes-vqa-teacher").mkdir(parents=True)
    meta = {"metrics": {"test": {"accuracy": accuracy, "per_type": {"relation": {"accuracy": 1.0}}}}}
    (assets / "shapes-vqa-teacher" / "workbench.json").write_text(json.dumps(meta))


def test_collect_gives_mean_and_sample_std_over_seeds_the_baseline_test_and_the_claims(tmp_path):
    grid, assets = _small_dide(range(5)), tmp_path / "assets"
    for s, (none, dide) in enumerate(zip((0.50, 0.52, 0.54, 0.51, 0.53), (0.70, 0.71, 0.72, 0.69, 0.73))):
        _fake_run(tmp_path, _one(grid, "shapes-vqa", "none", s), 0.80, none)
        _fake_run(tmp_path, _one(grid, "shapes-vqa", "dide", s), 0.90, dide)
    _teacher(assets)
    results = collect(grid, tmp_path, assets)
    rows = results["shapes-vqa"]["rows"]
    assert rows["none"]["seeds"] == [0, 1, 2, 3, 4] and rows["none"]["per_type"]["relation"]["mean"] == pytest.approx(
        0.52
    )
    assert rows["none"]["per_type"]["relation"]["std"] == pytest.approx(0.0158, abs=1e-4)  # sample std (n - 1)
    assert rows["dide"]["vs_baseline"]["baseline"] == "none" and "vs_baseline" not in rows["none"]
    assert rows["dide"]["vs_baseline"]["difference"] == pytest.approx(0.10)
    checks = results["shapes-vqa"]["checks"]
    relation = checks["dide_minus_none_relation_points"]
    assert relation["value"] == pytest.approx(19.0) and relation["seeds"] == [5, 5]
    assert relation["p_value"] < 0.001 and relation["met"] is True
    # within 1.5 points of the teacher: a one-sided t-test over the 5 seeds' gaps (all 5.0: no variance, no test)
    gap = checks["dide_gap_to_teacher_points"]
    assert gap["value"] == pytest.approx(5.0) and gap["target"] == 1.5 and gap["seeds"] == 5 and gap["met"] is False
    table = results_table(grid, results)
    assert "| student `dide` | 5 | 90.0 ± 0.0 | 100.0 ± 0.0 | 71.0 ± 1.6 | 10.0 |" in table
    assert "| teacher (fusion) | | 95.0 |" in table and "NOT met" in table
    assert "dide_gap_to_teacher_points: 5.0 (target < 1.5) (5 seeds, no t-test (no seed variance)) — NOT met" in table
    assert (
        "dide_minus_none_relation_points: 19.0 (spread 3.16) (Welch p < 0.001, 95% CI +16.69 to +21.31) — met;" in table
    )


def test_the_pre_training_stage_is_compared_with_dide_overall_by_welch_over_five_seeds_each(tmp_path):
    from scipy import stats

    block = dict(tasks=("shapes-vqa",), rows=("none", "dide", "dide-pt"), seeds=tuple(range(5)))
    grid, assets = dataclasses.replace(DIDE, blocks=(block,)), tmp_path / "assets"
    dide, pt = (0.770, 0.775, 0.765, 0.780, 0.772), (0.790, 0.785, 0.795, 0.778, 0.792)
    for s in range(5):
        _fake_run(tmp_path, _one(grid, "shapes-vqa", "none", s), 0.72 + 0.01 * s, 0.7 + 0.01 * s)
        _fake_run(tmp_path, _one(grid, "shapes-vqa", "dide", s), dide[s], 0.8 - 0.01 * s)
        _fake_run(tmp_path, _one(grid, "shapes-vqa", "dide-pt", s), pt[s], 0.8 + 0.02 * s)
    check = collect(grid, tmp_path, assets)["shapes-vqa"]["checks"]["dide-pt_minus_dide_points"]
    welch = stats.ttest_ind(pt, dide, equal_var=False)
    assert check["value"] == pytest.approx(100 * (sum(pt) - sum(dide)) / 5, abs=0.01)
    assert welch.pvalue < 0.05 and check["p_value"] == pytest.approx(welch.pvalue, abs=1e-6) and check["met"] is True
    # with four seeds of dide-pt the comparison is stated, and pending
    shutil.rmtree(_one(grid, "shapes-vqa", "dide-pt", 4).dir(tmp_path))
    assert collect(grid, tmp_path, assets)["shapes-vqa"]["checks"]["dide-pt_minus_dide_points"]["met"] is None


def test_three_seeds_leave_a_claim_pending_whatever_its_margin(tmp_path):
    grid = _small_dide(range(3))
    for s in range(3):
        _fake_run(tmp_path, _one(grid, "shapes-vqa", "none", s), 0.80, 0.50 + 0.02 * s)
        _fake_run(tmp_path, _one(grid, "shapes-vqa", "dide", s), 0.90, 0.70 + 0.01 * s)
    results = collect(grid, tmp_path, tmp_path / "assets")
    relation = results["shapes-vqa"]["checks"]["dide_minus_none_relation_points"]
    assert relation["value"] == pytest.approx(19.0) and relation["spread"] == pytest.approx(3.0)
    assert relation["p_value"] < 0.05 and relation["met"] is None  # the old rule said met
    assert "— pending (needs 5+ seeds of each)" in results_table(grid, results)


def _recording_distill(calls):
    def fake(cfg, config=None, **kw):
        calls.append(cfg.out)

    return fake


def test_run_grid_trains_unfinished_runs_with_the_registry_and_releases_their_locks(tmp_path, monkeypatch):
    calls, configs = [], []
    monkeypatch.setattr(
        "workbench.methods.distill", lambda cfg, config, **kw: (calls.append(cfg), configs.append(config))
    )
    grid = dataclasses.replace(
        DIDE, blocks=(dict(tasks=("shapes-vqa",), rows=("none", "dide (layers 0,1,2,3)"), seeds=(0,)),)
    )
    _fake_run(tmp_path, grid.runs()[0], 0.5, 0.5)
    assert run_grid(grid, tmp_path, tmp_path / "assets", progress=False) == ["shapes-vqa/dide-layers0_1_2_3-seed0"]
    (cfg,), (config,) = calls, configs
    assert cfg.out == str(tmp_path / "shapes-vqa" / "dide-layers0_1_2_3-seed0") and cfg.recipe == "dide"
    assert cfg.teacher == str(tmp_path / "assets" / "shapes-vqa-teacher") and config.layers == (0, 1, 2, 3)
    assert not list(tmp_path.rglob("*.lock"))  # released


def test_collect_keeps_recorded_runs_whose_folders_are_gone_and_prefers_present_ones(tmp_path):
    grid = dataclasses.replace(DIDE, blocks=(dict(tasks=("shapes-vqa",), rows=("none",), seeds=(0, 1)),))
    runs = grid.runs()
    _fake_run(tmp_path / "old", runs[0], 0.60, 0.5)
    _fake_run(tmp_path / "old", runs[1], 0.70, 0.5)
    previous = json.loads(json.dumps(collect(grid, tmp_path / "old", tmp_path / "assets")))  # as read back
    _fake_run(tmp_path / "new", runs[1], 0.80, 0.5)  # seed 1 re-run this session; seed 0's folder is gone
    rows = collect(grid, tmp_path / "new", tmp_path / "assets", previous=previous)["shapes-vqa"]["rows"]
    assert rows["none"]["accuracy"]["values"] == [0.60, 0.80]
    assert collect(grid, tmp_path / "new", tmp_path / "assets")["shapes-vqa"]["rows"]["none"]["seeds"] == [1]


def test_run_grid_skips_runs_the_last_results_file_records(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("workbench.methods.distill", _recording_distill(calls))
    grid = dataclasses.replace(DIDE, blocks=(dict(tasks=("shapes-vqa",), rows=("none", "kd"), seeds=(0,)),))
    _fake_run(tmp_path / "old", grid.runs()[0], 0.5, 0.5)
    previous = collect(grid, tmp_path / "old", tmp_path / "assets")
    run_grid(grid, tmp_path / "new", tmp_path / "assets", progress=False, previous=previous)
    assert calls == [str(tmp_path / "new" / "shapes-vqa" / "kd-seed0")]


def test_rerun_trains_recorded_runs_again_and_their_new_figures_replace_the_recorded_ones(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("workbench.methods.distill", _recording_distill(calls))
    grid = dataclasses.replace(DIDE, blocks=(dict(tasks=("shapes-vqa",), rows=("none",), seeds=(0, 1)),))
    runs = grid.runs()
    for run in runs:
        _fake_run(tmp_path / "old", run, 0.5, 0.5)
    previous = json.loads(json.dumps(collect(grid, tmp_path / "old", tmp_path / "assets")))
    _fake_run(tmp_path / "new", runs[1], 0.7, 0.5)  # seed 1 already re-run in this folder: it is not trained again
    run_grid(grid, tmp_path / "new", tmp_path / "assets", progress=False, previous=previous, rerun=True)
    assert calls == [str(tmp_path / "new" / "shapes-vqa" / "none-seed0")]
    _fake_run(tmp_path / "new", runs[0], 0.9, 0.5)
    rows = collect(grid, tmp_path / "new", tmp_path / "assets", previous=previous)["shapes-vqa"]["rows"]
    assert rows["none"]["accuracy"]["values"] == [0.9, 0.7]


def test_the_experiment_command_passes_rerun_to_the_runner(tmp_path, monkeypatch):
    from workbench.cli import main as cli

    seen = []
    monkeypatch.setattr("workbench.experiments.run_grid", lambda *a, **k: seen.append(k["rerun"]) or [])
    for extra, want in (([], False), (["--rerun"], True)):
        args = ["experiment", "dide", "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "r.json")]
        assert cli([*args, "--tasks", "shapes-vqa", "--rows", "none", *extra]) == 0
        assert seen.pop() is want


def test_a_dide_pt_runs_minutes_include_its_matching_stage(tmp_path):
    run = _one(DIDE, "shapes-vqa", "dide-pt")
    _fake_run(tmp_path, run, 0.8, 0.5)  # 600 s
    stage1 = run.dir(tmp_path) / "pretrain" / "model"
    stage1.mkdir(parents=True)
    (stage1 / "workbench.json").write_text(json.dumps({"train_seconds": 300}))
    grid = dataclasses.replace(DIDE, blocks=(dict(tasks=("shapes-vqa",), rows=("dide-pt",), seeds=(0,)),))
    assert collect(grid, tmp_path, tmp_path / "assets")["shapes-vqa"]["rows"]["dide-pt"]["runs"][0]["minutes"] == 15.0


def test_students_of_a_since_rebuilt_teacher_are_set_aside_and_rerun(tmp_path, monkeypatch):
    """A student records its teacher's fingerprint; after the teacher is rebuilt its row no longer counts,
    and the grid runs it again (its old folder kept aside)."""
    from workbench.models.io import weights_fingerprint

    calls = []
    monkeypatch.setattr("workbench.methods.distill", _recording_distill(calls))
    assets = tmp_path / "assets"
    (assets / "easy-vqa-teacher").mkdir(parents=True)
    (assets / "easy-vqa-teacher" / "model.safetensors").write_bytes(b"old weights")
    old = weights_fingerprint(assets / "easy-vqa-teacher")
    grid = dataclasses.replace(DIDE, blocks=(dict(tasks=("easy-vqa",), rows=("none", "kd", "dide"), seeds=(0,)),))
    runs = grid.runs()
    _fake_run(tmp_path, runs[0], 0.8, 0.8)  # `none` records no fingerprint: it learns nothing from the teacher
    _fake_run(tmp_path, runs[1], 0.9, 0.9, teacher=old)
    _fake_run(tmp_path, runs[2], 0.9, 0.9, teacher=old)
    previous = collect(grid, tmp_path, assets)
    assert set(previous["easy-vqa"]["rows"]) == {"none", "dide", "kd"}
    assert previous["easy-vqa"]["rows"]["kd"]["runs"][0]["teacher_fingerprint"] == old

    (assets / "easy-vqa-teacher" / "model.safetensors").write_bytes(b"new weights")
    assert weights_fingerprint(assets / "easy-vqa-teacher") != old
    again = collect(grid, tmp_path, assets, previous=previous)["easy-vqa"]
    assert set(again["rows"]) == {"none"}
    assert {row: r["runs"][0]["why"] for row, r in again["earlier"].items()} == {  # kept apart, for reference
        "kd": f"teacher {old}, since rebuilt",
        "dide": f"teacher {old}, since rebuilt",
    }
    shutil.rmtree(tmp_path / "easy-vqa" / "kd-seed0")  # a run only the results file remembers
    run_grid(grid, tmp_path, assets, progress=False, previous=previous)
    assert calls == [str(tmp_path / "easy-vqa" / "kd-seed0"), str(tmp_path / "easy-vqa" / "dide-seed0")]
    assert (tmp_path / "easy-vqa" / f"dide-seed0.teacher-{old}" / "model" / "workbench.json").exists()


def test_an_unfinished_run_started_against_a_since_rebuilt_teacher_is_set_aside_and_started_over(tmp_path, monkeypatch):
    """A worker died mid-run; the teacher was rebuilt before the next worker came: the folder's saved state learned
    from the earlier weights, so it is set aside (a name taken already gets a number) and the run starts afresh.
    An unfinished run whose teachers are unchanged resumes in its folder."""
    from workbench.models.io import weights_fingerprint
    from workbench.train.teachers_seen import record_teachers, teachers_of

    seen = []
    monkeypatch.setattr(
        "workbench.methods.distill", lambda cfg, config=None, **kw: seen.append((cfg.out, Path(cfg.out).exists()))
    )
    assets = tmp_path / "assets"
    (assets / "easy-vqa-teacher").mkdir(parents=True)
    (assets / "easy-vqa-teacher" / "model.safetensors").write_bytes(b"old weights")
    old = weights_fingerprint(assets / "easy-vqa-teacher")
    grid = dataclasses.replace(DIDE, blocks=(dict(tasks=("easy-vqa",), rows=("kd", "dide"), seeds=(0,)),))
    for run in grid.runs():  # both started, neither finished
        cfg = run.train_config(tmp_path, assets, grid.student)
        (Path(cfg.out) / "state").mkdir(parents=True)
        record_teachers(Path(cfg.out), teachers_of(cfg, cfg.recipe))
    run_grid(grid, tmp_path, assets, progress=False)
    kd, dide = tmp_path / "easy-vqa" / "kd-seed0", tmp_path / "easy-vqa" / "dide-seed0"
    assert seen == [(str(kd), True), (str(dide), True)]  # unchanged teacher: each resumes in its own folder

    seen.clear()
    (assets / "easy-vqa-teacher" / "model.safetensors").write_bytes(b"new weights")
    (tmp_path / "easy-vqa" / f"kd-seed0.teacher-{old}").mkdir()  # an earlier set-aside of the same name
    run_grid(grid, tmp_path, assets, progress=False)
    assert seen == [(str(kd), False), (str(dide), False)]  # set aside, so each starts from scratch
    assert (tmp_path / "easy-vqa" / f"kd-seed0.teacher-{old}-2" / "state").is_dir()
    assert (tmp_path / "easy-vqa" / f"dide-seed0.teacher-{old}" / "state").is_dir()

    seen.clear()  # a record damaged from outside: what it learned from is unknown, so it is set aside too
    (kd / "state").mkdir(parents=True)
    (kd / "teachers.json").write_text("{not json")
    run_grid(grid, tmp_path, assets, progress=False)
    assert seen[0] == (str(kd), False) and (tmp_path / "easy-vqa" / "kd-seed0.unreadable-1" / "state").is_dir()


# ---------------------------------------------------------------------------------------------- MCAD


def test_mcad_grid_has_five_seeds_of_every_row_the_claims_rows_first_and_a_smoke_preset():
    grid = get_grid("mcad")
    runs = grid.runs()
    # the baseline and mcad (the claim's two rows), seed by seed, before any ablation
    assert [(r.row, r.seed) for r in runs[:10]] == [(row, s) for s in range(5) for row in ("clip", "mcad")]
    for row in grid.rows:
        assert sorted(r.seed for r in runs if r.row == row) == [0, 1, 2, 3, 4]
    assert grid.undigested_earlier == "the leaky gallery"  # such records count for nothing
    assert {r.method for r in runs} == set(grid.rows) and runs[0].folder == "students/clip-seed0"
    smoke = get_grid("mcad", "smoke")
    assert [r.seed for r in smoke.runs()] == [0] * len(grid.rows) and smoke.budget["max_steps"] == 200
    for preset in ("full", "smoke"):  # the student is at most a quarter of the teacher (same vocabulary)
        g = get_grid("mcad", preset)
        s, d = g.budget["size"], g.teacher_budgets["dual"]["size"]
        assert (s["hidden_size"] ** 2 * s["num_layers"]) * 4 <= d["hidden_size"] ** 2 * d["num_layers"]
    with pytest.raises(ValueError, match="no preset 'fast'"):
        get_grid("mcad", "fast")
    # the full grid's teachers train on one thread whatever the machine, so a rebuild is the same teacher
    from workbench.experiments.teachers import teacher_configs

    configs = teacher_configs(grid, ROOT / "runs", ROOT / "assets")
    assert {name: cfg.threads for name, cfg in configs.items()} == {"fusion": 1, "dual": 1}


def test_mcad_runs_take_the_grids_teachers_or_the_given_ones(tmp_path):
    grid = get_grid("mcad")
    config = grid.runs()[-1].method_config(tmp_path, tmp_path / "assets")
    assert config.dual_teacher == str(tmp_path / "teachers" / "dual" / "model")
    assert config.fusion_teacher == str(tmp_path / "teachers" / "fusion-itm" / "model")
    given = grid.runs({"dual_teacher": "/clip"})[-1].method_config(tmp_path, tmp_path)
    assert given.dual_teacher == "/clip" and given.fusion_teacher == str(tmp_path / "teachers" / "fusion-itm" / "model")


def _metrics(r1_i2t, r1_t2i, params, median=2.0):
    d = lambda r1: {"R@1": r1, "R@5": min(1.0, r1 + 0.2), "R@10": min(1.0, r1 + 0.3), "median_rank": median,  # noqa: E731
                    "mean_rank": 3.0, "n": 100}  # fmt: skip
    return {"i2t": d(r1_i2t), "t2i": d(r1_t2i), "r1": (r1_i2t + r1_t2i) / 2, "n_images": 100, "n_texts": 100,
            "params": params, "index": {"seconds": 0.5}, "query_ms": {"total": 2.0}}  # fmt: skip


def _fake_student(root, run, r1, params=1_000_000, teachers=None):
    out = run.dir(root) / "model"
    out.mkdir(parents=True)
    meta = {"metrics": {"test": _metrics(r1, r1, params)}, "train_seconds": 600, "steps": 3000}
    if teachers:
        meta["teacher_fingerprints"] = teachers
    (out / "workbench.json").write_text(json.dumps(meta))


def _mcad(rows, seeds):
    grid = get_grid("mcad")
    return dataclasses.replace(grid, blocks=(dict(tasks=grid.tasks, rows=tuple(rows), seeds=tuple(seeds)),))


def test_mcad_collect_gives_mean_and_std_over_seeds_the_checks_and_a_table(tmp_path):
    grid = _mcad(("clip", "mcad"), (0, 1, 2))
    for s, r1 in enumerate((0.50, 0.52, 0.54)):
        _fake_student(tmp_path, _one(grid, grid.tasks[0], "clip", s), r1)
    for s, r1 in enumerate((0.70, 0.71, 0.72)):
        _fake_student(tmp_path, _one(grid, grid.tasks[0], "mcad", s), r1)
    teachers = {
        "dual": {**_metrics(0.8, 0.7, 5_000_000), "minutes": 90.0},
        "dual+fusion": {**_metrics(0.9, 0.8, 0), "k": 10},
        "fusion_itm": {"accuracy": 0.97, "per_type": {"match": 0.99, "position swap": 0.9}},
    }
    (tmp_path / "teachers").mkdir()
    (tmp_path / "teachers" / "eval.json").write_text(json.dumps(teachers))
    results = collect(grid, tmp_path, tmp_path / "assets")
    clip = results["rows"]["clip"]
    assert clip["r1"]["mean"] == pytest.approx(0.52) and clip["r1"]["std"] == pytest.approx(0.02)
    assert clip["i2t median_rank"]["mean"] == 2.0 and len(clip["runs"]) == 3 and clip["seeds"] == [0, 1, 2]
    assert results["rows"]["mcad"]["vs_baseline"]["baseline"] == "clip"
    checks = results["checks"]
    margin = checks["mcad_minus_clip_r1_points"]
    assert margin["value"] == pytest.approx(19.0) and margin["spread"] == pytest.approx(3.0)
    assert margin["met"] is None and margin["p_value"] < 0.05  # 3 seeds: pending
    assert checks["student_params_fraction_of_teacher"] == {"value": 0.2, "target": 0.25, "met": True}
    assert checks["student_r1_fraction_of_teacher"]["value"] == pytest.approx(0.71 / 0.75, abs=1e-3)
    share = checks["student_r1_fraction_of_teacher"]  # a bound over seeds: 3 of them is pending, not met
    assert share["met"] is None and share["seeds"] == 3 and share["target"] == 0.9
    assert checks["fusion_rerank_gain_r1_points"] == {"value": pytest.approx(10.0), "met": True}
    table = results_table(grid, results)
    assert "| student `mcad` | 3 | 71.0 ± 1.0 | 71.0 ± 1.0 | 91.0 ± 1.0 | 100.0 ± 0.0 | 2 ± 0.0 |" in table
    assert "| teacher: dual (`clip`) | | 75.0 | 80.0 |" in table and "re-rank (top 10)" in table
    assert "position swap 90.0" in table and "NOT met" not in table and "Test gallery: 100" in table
    assert "pending (needs 5+ seeds)" in table
    assert results_table(grid, {"teachers": {}, "rows": {}, "checks": {}}) == "(no finished runs yet)"


def test_mcad_students_of_a_since_rebuilt_fusion_teacher_are_earlier_and_run_again(tmp_path, monkeypatch):
    """A student records the fingerprints of the method's teachers (`teacher_fingerprints`); after the fusion
    teacher is rebuilt, a student that learned from it goes to the earlier section and trains again (its folder
    kept aside), while one that never used it (`clip`) still counts."""
    from workbench.models.io import weights_fingerprint

    calls = []
    monkeypatch.setattr("workbench.methods.distill", _recording_distill(calls))
    monkeypatch.setattr("workbench.experiments.teachers.evaluate_teachers", lambda *a, **k: None)
    grid = _mcad(("clip", "mcad"), (0,))
    for name in ("dual", "fusion"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "workbench.json").write_text("{}")
        (tmp_path / name / "model.safetensors").write_bytes(f"{name} weights".encode())
    paths = {"dual_teacher": str(tmp_path / "dual"), "fusion_teacher": str(tmp_path / "fusion")}
    old = weights_fingerprint(tmp_path / "fusion")
    prints = {"dual_teacher": weights_fingerprint(tmp_path / "dual"), "fusion_teacher": old}
    _fake_student(tmp_path, _one(grid, grid.tasks[0], "clip", 0), 0.90)
    _fake_student(tmp_path, _one(grid, grid.tasks[0], "mcad", 0), 0.95, teachers=prints)
    first = collect(grid, tmp_path, tmp_path / "assets", paths=paths)
    assert set(first["rows"]) == {"clip", "mcad"} and first["rows"]["mcad"]["runs"][0]["teacher_fingerprints"] == prints

    (tmp_path / "fusion" / "model.safetensors").write_bytes(b"fusion weights, rebuilt")
    again = collect(grid, tmp_path, tmp_path / "assets", previous=first, paths=paths)
    assert set(again["rows"]) == {"clip"} and again["rows"]["clip"]["r1"]["values"] == [0.90]
    assert [r["why"] for r in again["earlier"]["mcad"]["runs"]] == [f"fusion teacher {old}, since rebuilt"]
    run_grid(grid, tmp_path, tmp_path / "assets", progress=False, previous=again, paths=paths)
    assert calls == [str(tmp_path / "students" / "mcad-seed0")]
    assert (tmp_path / "students" / f"mcad-seed0.teacher-{old}" / "model" / "workbench.json").exists()


def test_a_fusion_teacher_rebuilt_by_the_grids_own_prepare_step_sends_its_students_back_in_the_same_call(
    tmp_path, monkeypatch
):
    """The MCAD grid builds its teachers in its prepare step: when that step rebuilds the fusion teacher (its folder
    was deleted to rebuild it), the students of the earlier build train again in that same call."""
    from workbench.experiments import runner
    from workbench.models.io import weights_fingerprint

    calls = []
    monkeypatch.setattr("workbench.methods.distill", _recording_distill(calls))
    fusion = tmp_path / "teachers" / "fusion-itm" / "model"

    def rebuild(grid, root, assets, todo, paths, progress):
        fusion.mkdir(parents=True)
        (fusion / "model.safetensors").write_bytes(b"fusion weights, rebuilt")
        return ["teachers/fusion-itm"]

    monkeypatch.setitem(runner.PREPARE, "mcad-teachers", rebuild)
    monkeypatch.setitem(runner.WAITING, "mcad-teachers", lambda *a: [])
    grid = _mcad(("clip", "mcad"), (0,))
    _fake_student(tmp_path, _one(grid, grid.tasks[0], "clip", 0), 0.90)
    _fake_student(tmp_path, _one(grid, grid.tasks[0], "mcad", 0), 0.95, teachers={"fusion_teacher": "0ld"})
    previous = collect(grid, tmp_path, tmp_path / "assets")  # before the rebuild, the mcad run counts
    assert set(previous["rows"]) == {"clip", "mcad"}
    assert run_grid(grid, tmp_path, tmp_path / "assets", progress=False, previous=previous) == [
        "teachers/fusion-itm",
        "students/mcad-seed0",
    ]
    assert calls == [str(tmp_path / "students" / "mcad-seed0")] and weights_fingerprint(fusion)
    assert (tmp_path / "students" / "mcad-seed0.teacher-0ld").is_dir()


def test_mcad_run_grid_waits_for_teachers_skips_finished_runs_and_releases_locks(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("workbench.methods.distill", _recording_distill(calls))
    monkeypatch.setattr("workbench.experiments.teachers.evaluate_teachers", lambda *a, **k: None)
    grid = dataclasses.replace(_mcad(("clip", "clipkd", "mcad"), (0,)), **get_grid("mcad", "smoke").presets["smoke"])
    _fake_student(tmp_path, grid.runs()[0], 0.5)  # clip seed 0 is finished
    # the dual teacher is given and ready; the fusion teacher is being built by another worker (claimed)
    (tmp_path / "dual").mkdir()
    (tmp_path / "dual" / "workbench.json").write_text("{}")
    fusion_run = tmp_path / "teachers" / "fusion-itm"
    assert claim(fusion_run)
    fusion_run.with_name("fusion-itm.lock").write_text(str(os.getppid()))  # a live process that is not us
    done = run_grid(grid, tmp_path, tmp_path / "assets", progress=False, paths={"dual_teacher": str(tmp_path / "dual")})
    assert done == ["students/clipkd-seed0"] and calls == [str(tmp_path / "students" / "clipkd-seed0")]
    assert not list((tmp_path / "students").glob("*.lock"))


# ---------------------------------------------------------------------------------------------- shipped files


def _without_new_statistics(document):
    """The document as the runner wrote it before the Welch test: without each row's `vs_baseline` (and MCAD
    rows' `seeds`), and without the claims' (the checks with a seed spread) test figures and verdicts: the rule
    changed, they are checked apart."""
    if isinstance(document, list):
        return [_without_new_statistics(x) for x in document]
    if not isinstance(document, dict):
        return document
    claim_fields = {"p_value", "ci95", "seeds", "met", "status"} if "spread" in document else set()
    drop = {"vs_baseline", "rule", "any_task", *claim_fields}
    return {k: _without_new_statistics(v) for k, v in document.items() if k not in drop}


@pytest.mark.parametrize(
    "name",
    [
        "dide",  # its runs of an earlier teacher or recipe come back in its `earlier` section
        "mad",
        "mcad",
    ],
)
def test_recollecting_the_shipped_results_from_their_recorded_values_reproduces_them(name, tmp_path):
    """No run folder: every figure comes from the shipped file's records; the file comes back the same, plus
    the statistics; a claim is decided (met or not) only on 5+ seeds of each row."""
    shipped = json.loads((ROOT / "assets" / "results" / f"{name}.json").read_text())
    grid = get_grid(name)
    again = collect(grid, tmp_path / "no-runs", ROOT / "assets", previous=shipped)
    if name == "mcad":  # rows list their seeds since the runner was unified (the shipped file, once re-collected)
        assert all(row.pop("seeds") == [r["seed"] for r in row["runs"]] for row in again["rows"].values())
        for row in shipped["rows"].values():
            row.pop("seeds", None)
    assert _without_new_statistics(again) == _without_new_statistics(shipped)
    assert json.dumps(_without_new_statistics(again)) == json.dumps(_without_new_statistics(shipped))  # same order
    claims = list(_claims(again))
    # a claim is decided (met or not) on 5+ seeds of each row, pending on fewer, pending naming its rows without runs
    measured = [c for c in claims if c["value"] is not None]
    assert all(c["met"] is None and c["missing"] for c in claims if c["value"] is None)  # rows with no runs
    assert measured and all((c["met"] is None) == (min(c["seeds"]) < 5) for c in measured)
    assert all(c["met"] == (c["p_value"] < 0.05 and c["value"] > 0) for c in measured if c["met"] is not None)
    assert "Welch p" in results_table(grid, again)
    for c in _bounds(again):  # against a fixed bound: a one-sided t-test, decided on 5+ seeds too
        assert (c["met"] is None) == (c["seeds"] < 5)
        on_its_side = c["value"] < c["target"] if c["side"] == "below" else c["value"] > c["target"]
        if c["p_value"] is not None:
            assert c["met"] == (c["p_value"] < 0.05 and on_its_side)
    assert results_table(grid, json.loads(json.dumps(again))) == results_table(grid, again)  # as read back


def _claims(document, bounds: bool = False):
    """Every claim with a Welch test (seeds of each row: a list) in a results document; with `bounds`, every check
    against a fixed bound (seeds of one row: an int)."""
    if isinstance(document, dict):
        if "p_value" in document and "status" in document and isinstance(document.get("seeds"), int) == bounds:
            yield document
        for v in document.values():
            yield from _claims(v, bounds)


def _bounds(document):
    return _claims(document, bounds=True)
