"""The MAD grid (workbench/configs/grids.py: MAD) on the one runner: the grid as data, resumable runs, the
views, the claims and the table, on faked finished runs; plus tiny real runs (a `full` run tested on the
compositional split too, and the `none` row = MAD at feature weight 0)."""

import dataclasses
import json

import pytest
import torch

from workbench.experiments import claim, collect, get_grid, release, results_table, run_grid, select, train_run
from workbench.experiments.layout_views import margins_line
from workbench.experiments.measure import eval_path, finished

pytestmark = pytest.mark.usefixtures("one_thread")

MAD = get_grid("mad")
TASKS, ROWS, VIEWS = MAD.tasks, tuple(MAD.rows), tuple(MAD.views)


FIVE = dataclasses.replace(MAD, seeds=(0, 1, 2, 3, 4))  # the grid with the seeds a claim needs


def _run(task, setting, row, seed=0, grid=MAD):
    (run,) = select(grid.runs(), tasks=[task], settings=[setting], rows=[row], seeds=[seed])
    return run


def _low1(task, row, seeds=(0, 1, 2), grid=MAD):
    return [_run(task, "low1", row, s, grid) for s in seeds]


# ----------------------------------------------------------------------------------------------
# the grid


def test_grid_has_three_seeds_of_every_row_at_low1_on_both_tasks_first():
    from workbench.methods import method_names

    # every fusion-student method of the registry: MAD's variants, and `hard` as the `none` row
    assert {MAD.rows[r]["method"] for r in ROWS} == set(method_names(student="fusion"))
    assert MAD.rows["none"]["method"] == "hard"
    runs = MAD.runs()
    for task in TASKS:
        for row in ROWS:
            seeds = sorted(r.seed for r in runs if r.task == task and r.setting == "low1" and r.row == row)
            assert seeds[:3] == [0, 1, 2]
    first = runs[: 2 * 3 * len(ROWS)]  # low1 on shapes-vqa, then low1 on shapes-ve
    assert [r.task for r in first] == ["shapes-vqa"] * 15 + ["shapes-ve"] * 15
    assert all(r.setting == "low1" for r in first)
    assert {r.row for r in runs[: len(ROWS)]} == set(ROWS)  # seed 0 of every row before any second seed
    assert list(dict.fromkeys(r.setting for r in runs)) == ["low1", "low10", "full"]
    # then seeds 3 and 4 of the claim's two rows at low1 (a Welch test over 5 seeds of each), then the README's
    # all-pairs claim (shapes-ve, mad vs none at full) likewise, then the other settings' margins
    extra = runs[len(TASKS) * len(MAD.settings) * len(ROWS) * 3 :]
    assert sorted((r.setting, r.task, r.row, r.seed) for r in extra) == sorted(
        (setting, t, row, s) for setting in MAD.settings for t in TASKS for row in ("none", "mad") for s in (3, 4)
    )
    assert [r.setting for r in extra] == ["low1"] * 8 + ["full"] * 4 + ["low10"] * 8 + ["full"] * 4
    # so every view's margin (shift is the full runs on another split) is decided over 5 seeds of each row
    for task in TASKS:
        for setting in MAD.settings:
            for row in ("none", "mad"):
                seeds = sorted(r.seed for r in runs if (r.task, r.setting, r.row) == (task, setting, row))
                assert seeds == [0, 1, 2, 3, 4]


def test_every_run_has_its_own_folder(tmp_path):
    assert len({r.folder for r in MAD.runs()}) == len(MAD.runs())
    assert _run("shapes-ve", "full", "mad", 2).dir(tmp_path) == tmp_path / "shapes-ve" / "full" / "mad-seed2"


def test_budgets_are_the_protocols_data_sizes_and_reach_their_step_counts():
    budgets = MAD.settings
    assert budgets["low1"]["train_size"] == 1280 and budgets["low10"]["train_size"] == 12_800
    assert budgets["full"]["train_size"] == 128_000
    assert budgets["full"]["max_steps"] * budgets["full"]["batch_size"] == 128_000  # every pair seen once
    # the table's row groups: every setting on the test split, and the full runs on the shifted domain
    assert {v: (s["setting"], s["split"]) for v, s in MAD.views.items()} == {
        "low1": ("low1", "test"),
        "low10": ("low10", "test"),
        "full": ("full", "test"),
        "shift": ("full", "compositional"),
    }
    assert MAD.extra_splits("full") == ("compositional",) and MAD.extra_splits("low1") == ()
    for budget in budgets.values():
        assert budget["batch_size"] == 64
        assert budget["warmup_steps"] == budget["max_steps"] // 10


def test_rows_are_the_same_model_and_budget_and_mad_rows_use_the_assets_mae(tmp_path):
    none, mad = _run("shapes-vqa", "low1", "none"), _run("shapes-vqa", "low1", "mad")
    a, b = none.train_config(tmp_path, tmp_path, MAD.student), mad.train_config(tmp_path, tmp_path, MAD.student)
    same = ("model", "dataset", "size", "train_size", "epochs", "max_steps", "batch_size", "lr", "warmup_steps", "seed")
    assert all(getattr(a, k) == getattr(b, k) for k in same)
    assert a.model == "fusion" and a.max_steps == 600 and a.recipe == "hard" and b.recipe == "mad"
    assert not hasattr(none.method_config(tmp_path, tmp_path), "vision_teacher")  # `none` has no teachers
    config = _run("shapes-vqa", "low1", "mad-no-conf").method_config(tmp_path / "runs", tmp_path / "assets")
    assert config.vision_teacher == str(tmp_path / "assets" / "shapes-mae") and not config.confidence


def test_mad_runs_of_a_task_share_one_teacher_feature_folder(tmp_path):
    """The 12 MAD runs of a setting see the same images: the vision teacher's features are cached per task."""
    caches = [
        _run(task, setting, row, seed).method_config(tmp_path, tmp_path / "assets").feature_cache
        for task, setting, row, seed in (
            ("shapes-vqa", "low1", "mad", 0), ("shapes-vqa", "low10", "mad-naive", 2), ("shapes-ve", "low1", "mad", 0)
        )
    ]  # fmt: skip
    assert caches == [str(tmp_path / "shapes-vqa" / "teacher-features")] * 2 + [
        str(tmp_path / "shapes-ve" / "teacher-features")
    ]


def test_select_picks_tasks_settings_seeds_and_rows():
    picked = select(MAD.runs(), tasks=["shapes-ve"], settings=["low10"], seeds=[1])
    assert len(picked) == len(ROWS) and {(r.task, r.setting, r.seed) for r in picked} == {("shapes-ve", "low10", 1)}
    nones = select(MAD.runs(), settings=["low1"], rows=["none"])
    assert len(nones) == len(TASKS) * 5 and {r.row for r in nones} == {"none"}  # seeds 0-4 of the claim's row


# ----------------------------------------------------------------------------------------------
# faked finished runs


def _fake_run(root, run, accuracy: float, relation: float = 0.5, compositional: float | None = None):
    per_type = {"relation": {"accuracy": relation, "n": 50}, "attribute": {"accuracy": 1.0, "n": 50}}
    test = {"accuracy": accuracy, "n": 100, "per_type": per_type}
    out = run.dir(root) / "model"
    out.mkdir(parents=True)
    (out / "workbench.json").write_text(json.dumps({"metrics": {"test": test}, "train_seconds": 240, "steps": 600}))
    for split in MAD.extra_splits(run.setting):
        shifted = dict(test, accuracy=accuracy if compositional is None else compositional)
        eval_path(run, root, split).write_text(json.dumps(shifted))


def _collect(root, previous=None, grid=MAD):
    return collect(grid, root, root / "assets", previous=previous)


def test_collect_gives_mean_and_sample_std_over_seeds(tmp_path):
    for run, acc, rel in zip(_low1("shapes-vqa", "none"), (0.40, 0.42, 0.44), (0.30, 0.32, 0.34)):
        _fake_run(tmp_path, run, acc, rel)
    (_run("shapes-vqa", "low1", "none").dir(tmp_path) / "probe.json").write_text('{"examples": 1280}')
    results = _collect(tmp_path)["results"]
    assert list(results) == ["shapes-vqa"] and list(results["shapes-vqa"]) == ["low1"]
    none = results["shapes-vqa"]["low1"]["none"]
    assert none["seeds"] == [0, 1, 2] and none["accuracy"]["values"] == [0.40, 0.42, 0.44]
    assert none["accuracy"]["mean"] == pytest.approx(0.42) and none["accuracy"]["std"] == pytest.approx(0.02)
    assert none["per_type"]["relation"]["mean"] == pytest.approx(0.32)
    assert none["per_type"]["relation"]["std"] == pytest.approx(0.02)
    assert none["runs"][0]["probe"] == {"examples": 1280} and none["runs"][0]["minutes"] == 4.0


def test_full_runs_fill_the_full_rows_in_domain_and_the_shift_rows_on_the_compositional_split(tmp_path):
    runs = [_run("shapes-ve", "full", "mad", s) for s in (0, 1)]
    _fake_run(tmp_path, runs[0], 0.80, compositional=0.60)
    _fake_run(tmp_path, runs[1], 0.90, compositional=0.70)
    unevaluated = _run("shapes-ve", "full", "none")
    _fake_run(tmp_path, unevaluated, 0.9)
    eval_path(unevaluated, tmp_path, "compositional").unlink()  # trained, not yet tested on the shift
    assert not finished(MAD, unevaluated, tmp_path)
    doc = _collect(tmp_path)
    results = doc["results"]["shapes-ve"]
    assert list(results) == ["full", "shift"] and set(results["full"]) == set(results["shift"]) == {"mad"}
    assert (
        results["full"]["mad"]["accuracy"]["mean"] == pytest.approx(0.85) and "in_domain" not in results["full"]["mad"]
    )
    assert results["shift"]["mad"]["accuracy"]["mean"] == pytest.approx(0.65)
    assert results["shift"]["mad"]["in_domain"]["mean"] == pytest.approx(0.85)
    table = results_table(MAD, doc)
    assert "| `mad` | 2 | 65.0 ± 7.1 (in-domain 85.0 ± 7.1) |" in table and "| `mad` | 2 | 85.0 ± 7.1 |" in table
    # from the results file alone (folders gone), both views come back
    previous = json.loads(json.dumps(doc))
    assert _collect(tmp_path / "gone", previous=previous)["results"]["shapes-ve"] == previous["results"]["shapes-ve"]


def test_previous_results_survive_missing_folders_and_present_folders_win(tmp_path):
    runs = _low1("shapes-vqa", "none", (0, 1))
    _fake_run(tmp_path / "old", runs[0], 0.60)
    _fake_run(tmp_path / "old", runs[1], 0.70)
    previous = json.loads(json.dumps(_collect(tmp_path / "old")))  # as read back from mad.json
    _fake_run(tmp_path / "new", runs[1], 0.80)  # seed 1 re-run; seed 0's folder is gone
    row = _collect(tmp_path / "new", previous)["results"]["shapes-vqa"]["low1"]["none"]
    assert row["accuracy"]["values"] == [0.60, 0.80] and row["seeds"] == [0, 1]
    assert _collect(tmp_path / "new")["results"]["shapes-vqa"]["low1"]["none"]["seeds"] == [1]
    assert (
        set(previous) == {"protocol", "results", "checks"}
        and previous["protocol"]["settings"]["low1"]["train_size"] == 1280
    )


def _checks_for(root, mad_accs, none_accs, task="shapes-vqa", grid=MAD):
    for run, acc in zip(_low1(task, "mad", range(len(mad_accs)), grid), mad_accs):
        _fake_run(root, run, acc)
    for run, acc in zip(_low1(task, "none", range(len(none_accs)), grid), none_accs):
        _fake_run(root, run, acc)
    return _collect(root, grid=grid)["checks"]


def test_checks_met_with_five_seeds_and_a_significant_margin(tmp_path):
    c = _checks_for(tmp_path, (0.50, 0.52, 0.54, 0.51, 0.53), (0.40, 0.41, 0.42, 0.43, 0.39), grid=FIVE)
    vqa = c["mad_minus_none_low1_points"]["shapes-vqa"]
    assert vqa["value"] == pytest.approx(11.0) and vqa["seeds"] == [5, 5] and vqa["p_value"] < 0.001
    assert vqa["met"] is True and vqa["status"] == "met"
    # not run on shapes-ve: pending, naming the rows it waits for
    waiting = "pending (no runs of `mad`, `none` under today's recipe)"
    assert c["mad_minus_none_low1_points"]["shapes-ve"]["status"] == waiting
    assert c["any_task"] is True  # met on one task is enough


def test_checks_not_met_with_five_seeds_within_the_noise(tmp_path):
    c = _checks_for(tmp_path, (0.43, 0.40, 0.46, 0.41, 0.45), (0.40, 0.42, 0.44, 0.43, 0.41), grid=FIVE)
    vqa = c["mad_minus_none_low1_points"]["shapes-vqa"]
    assert vqa["p_value"] > 0.05 and vqa["met"] is False and vqa["status"] == "not met"
    assert c["any_task"] is None  # shapes-ve still pending
    same = (0.40, 0.41, 0.42, 0.43, 0.44)
    _checks_for(tmp_path, same, same, task="shapes-ve", grid=FIVE)
    doc = _collect(tmp_path, grid=FIVE)
    assert doc["checks"]["any_task"] is False
    table = results_table(FIVE, doc)
    line = "MAD minus none at 1% (shapes-vqa, overall): +1.00 points (5 seeds each; "
    assert line + "Welch p = 0.481, 95% CI -2.20 to +4.20) — NOT met." in table
    assert "at least one task): NOT met" in table
    assert "Welch p < 0.05 over 5+ seeds of each" in table


def test_three_seeds_leave_the_claim_pending_whatever_the_margin(tmp_path):
    c = _checks_for(tmp_path, (0.50, 0.52, 0.54), (0.40, 0.41, 0.42))
    vqa = c["mad_minus_none_low1_points"]["shapes-vqa"]
    assert vqa["value"] == pytest.approx(11.0) and vqa["spread"] == pytest.approx(3.0) and vqa["p_value"] < 0.05
    assert vqa["met"] is None and vqa["status"] == "pending (needs 5+ seeds of each)"
    one = _checks_for(tmp_path / "one", (0.60,), (0.40,))["mad_minus_none_low1_points"]["shapes-vqa"]
    assert one["value"] == pytest.approx(20.0) and one["spread"] is None and one["met"] is None


def test_margin_per_setting_for_every_view_and_only_low1_decides_acceptance(tmp_path):
    _checks_for(tmp_path, (0.50, 0.52, 0.54), (0.40, 0.41, 0.42))  # low1: +11.0, spread 3.0
    for s, (mad, none, mad_shift, none_shift) in enumerate([(0.80, 0.81, 0.60, 0.50), (0.82, 0.79, 0.62, 0.52)]):
        _fake_run(tmp_path, _run("shapes-vqa", "full", "mad", s), mad, compositional=mad_shift)
        _fake_run(tmp_path, _run("shapes-vqa", "full", "none", s), none, compositional=none_shift)
    _fake_run(tmp_path, _run("shapes-vqa", "low10", "mad"), 0.70)
    _fake_run(tmp_path, _run("shapes-vqa", "low10", "none"), 0.65)
    doc = _collect(tmp_path)
    c = doc["checks"]
    views = c["mad_minus_none_points"]["shapes-vqa"]
    assert list(views) == list(VIEWS) and views["low1"] == c["mad_minus_none_low1_points"]["shapes-vqa"]
    assert views["low10"]["value"] == pytest.approx(5.0) and views["low10"]["met"] is None  # one seed: no spread
    # full: mad 0.81 ± 0.01414, none 0.80 ± 0.01414 -> +1.0 within 2.83; shift: +10.0, spread 2.83
    assert views["full"]["value"] == pytest.approx(1.0) and views["full"]["spread"] == pytest.approx(2.83)
    assert views["shift"]["value"] == pytest.approx(10.0) and views["shift"]["p_value"] < 0.05
    assert c["mad_minus_none_points"]["shapes-ve"]["full"]["missing"] == ["mad", "none"]
    line = "low1 +11.00 (3 seeds each, Welch p = 0.0"  # a small p-value over 3 seeds reads as pending
    margins = margins_line(c, "shapes-vqa")
    assert margins.startswith(line) and "low10 +5.00 (one seed each: pending (needs 5+ seeds of each))" in margins
    assert margins.split(", low10")[0].endswith(": pending (needs 5+ seeds of each))")
    assert "full +1.00 (2 seeds each" in margins
    assert "MAD minus none per setting (shapes-vqa, overall, points): " + line in results_table(MAD, doc)


def test_table_says_not_run_for_missing_cells(tmp_path):
    for run, acc in zip(_low1("shapes-vqa", "none"), (0.40, 0.42, 0.44)):
        _fake_run(tmp_path, run, acc, 0.3)
    table = results_table(MAD, _collect(tmp_path))
    lines = table.splitlines()
    assert lines[0] == "| shapes-vqa | seeds | overall | attribute | relation | minutes |"
    assert "| `none` | 3 | 42.0 ± 2.0 | 100.0 ± 0.0 | 30.0 ± 0.0 | 4.0 |" in lines
    assert "| `mad` | 0 | not run | | | |" in lines
    assert sum("**low1**" in line for line in lines) == 2  # a row group per task
    assert table.split("| shapes-ve |", 1)[1].count("| not run |") == len(VIEWS) * len(ROWS)
    assert "pending" in table
    assert results_table(MAD, {}).count("| not run |") == len(TASKS) * len(VIEWS) * len(ROWS)


# ----------------------------------------------------------------------------------------------
# running


def _fake_mae(assets):
    (assets / "shapes-mae").mkdir(parents=True)
    (assets / "shapes-mae" / "config.json").write_text("{}")


def _low1_grid(rows):
    block = dict(setting="low1", tasks=("shapes-vqa",), rows=tuple(rows), seeds=(0,))
    return dataclasses.replace(MAD, blocks=(block,))


def test_run_grid_skips_finished_recorded_and_claimed_runs(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("workbench.experiments.runner.train_run", lambda grid, run, *a, **k: calls.append(run))
    assets = tmp_path / "assets"
    _fake_mae(assets)
    grid = _low1_grid(("none", "mad-naive", "mad", "mad-no-conf"))
    runs = grid.runs()
    _fake_run(tmp_path / "runs", runs[0], 0.5)  # finished here
    _fake_run(tmp_path / "old", runs[1], 0.5)
    previous = collect(grid, tmp_path / "old", assets)  # recorded by the last results file
    assert claim(runs[3].dir(tmp_path / "runs"))  # another worker has it (we hold its lock here)
    done = run_grid(grid, tmp_path / "runs", assets, progress=False, previous=previous)
    assert done == ["shapes-vqa/low1/mad-seed0"] and calls == [runs[2]]
    assert not (tmp_path / "runs" / "shapes-vqa" / "low1" / "mad-seed0.lock").exists()  # released
    release(runs[3].dir(tmp_path / "runs"))


def test_run_grid_fails_before_training_without_the_mae(tmp_path, monkeypatch):
    from workbench.errors import WorkbenchError

    calls = []
    monkeypatch.setattr("workbench.experiments.runner.train_run", lambda grid, run, *a, **k: calls.append(run))
    grid = _low1_grid(("none", "mad"))
    with pytest.raises(WorkbenchError, match="pretrain-mae --out"):
        run_grid(grid, tmp_path / "runs", tmp_path / "assets", progress=False)
    assert calls == []  # not even the `none` run started
    run_grid(grid, tmp_path / "runs", tmp_path / "assets", select={"rows": ["none"]}, progress=False)
    assert calls == [grid.runs()[0]]  # none needs no teacher


# ----------------------------------------------------------------------------------------------
# tiny real runs

TINY = dict(train_size=24, epochs=1, max_steps=3, batch_size=8, warmup_steps=1, val_size=8, test_size=16, save_every=0)


def test_a_full_run_trains_then_tests_on_the_compositional_split_too(tmp_path, monkeypatch):
    from workbench.train import train

    # the runner's part: train (here the plain loop on a fusion student), then the extra split
    monkeypatch.setattr("workbench.methods.distill", lambda cfg, config, **kw: train(cfg, **kw))
    grid = dataclasses.replace(MAD, settings={**MAD.settings, "full": dict(MAD.settings["full"], **TINY)})
    run = _run("shapes-vqa", "full", "none", grid=grid)
    train_run(grid, run, tmp_path, tmp_path / "assets", progress=False)
    assert finished(grid, run, tmp_path)
    shifted = json.loads(eval_path(run, tmp_path, "compositional").read_text())
    assert shifted["split"] == "compositional" and shifted["n"] == 16
    results = collect(grid, tmp_path, tmp_path / "assets")["results"]["shapes-vqa"]
    row = results["shift"]["none"]
    assert row["accuracy"]["mean"] == shifted["accuracy"] and "in_domain" in row and row["runs"][0]["steps"] == 3
    assert results["full"]["none"]["accuracy"]["mean"] == row["in_domain"]["mean"]


def test_the_none_row_is_mad_at_feature_weight_zero(tmp_path):
    """The grid's `none` row (the registry's `none` on the fusion student) and MAD with feature weight 0 (here
    with token selection, i.e. the eager-attention forward) take the same steps: same losses, same final
    weights (bit-identical when measured; the tolerances only allow for other BLAS builds)."""
    from workbench.mae import pretrain_mae
    from workbench.methods import distill, get_method
    from workbench.models.io import load_checkpoint

    mae = tmp_path / "mae"
    pretrain_mae(mae, steps=1, batch_size=4, progress=False,
                 hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)  # fmt: skip
    size = {"hidden_size": 32, "num_layers": 2, "num_heads": 2}
    tiny = dict(train_size=48, val_size=8, test_size=8, batch_size=16, max_steps=3, epochs=1, warmup_steps=1,
                log_every=1, lr=1e-3, save_every=0, size=size)  # fmt: skip
    grid = dataclasses.replace(MAD, settings={"low1": tiny})
    none = _run("shapes-vqa", "low1", "none", grid=grid)
    train_run(grid, none, tmp_path, tmp_path / "assets", progress=False)
    zero = get_method("mad-no-conf").config(feature_weight=0.0, text_teacher=None, vision_teacher=str(mae))
    mad0 = dataclasses.replace(
        none.train_config(tmp_path, tmp_path, "fusion"), out=str(tmp_path / "mad0"), recipe="mad-no-conf"
    )
    distill(mad0, zero, progress=False)

    def losses(folder):
        records = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in records if "loss" in r]

    assert len(losses(none.dir(tmp_path))) == 3
    assert losses(none.dir(tmp_path)) == pytest.approx(losses(tmp_path / "mad0"), rel=1e-4)
    a = load_checkpoint(none.dir(tmp_path) / "model").model.state_dict()
    b = load_checkpoint(tmp_path / "mad0" / "model").model.state_dict()
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
