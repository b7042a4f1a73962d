"""The MAD results grid (workbench/distill/mad_experiment.py): the grid as data, resumable runs, statistics,
the acceptance check and the table, on faked finished runs; plus two tiny real runs (a `full` run tested on
the compositional split too, and `none` = MAD at feature weight 0)."""

import json

import pytest
import torch

from workbench.distill import mad_experiment as mx
from workbench.distill.experiment import claim, release
from workbench.distill.mad import MAD_VARIANTS
from workbench.distill.mad_experiment import (
    BUDGETS,
    GRID,
    ROWS,
    SEEDS,
    SETTINGS,
    TASKS,
    Run,
    checks,
    collect,
    results_table,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models, shared machine
    yield
    torch.set_num_threads(old)


# ----------------------------------------------------------------------------------------------
# the grid


def test_grid_has_three_seeds_of_every_row_at_low1_on_both_tasks_first():
    assert set(ROWS) == {"none", *MAD_VARIANTS}
    for task in TASKS:
        low1 = [r for r in GRID if r.task == task and r.setting == "low1"]
        for row in ROWS:
            assert sorted(r.seed for r in low1 if r.row == row) == [0, 1, 2]
    first = GRID[: 2 * 3 * len(ROWS)]  # low1 on shapes-vqa, then low1 on shapes-ve
    assert [r.task for r in first] == ["shapes-vqa"] * 15 + ["shapes-ve"] * 15
    assert all(r.setting == "low1" for r in first)
    assert {r.row for r in GRID[: len(ROWS)]} == set(ROWS)  # seed 0 of every row before any second seed
    assert [s for s in dict.fromkeys(r.setting for r in GRID)] == ["low1", "low10", "full"]
    assert len(GRID) == len(TASKS) * len(SETTINGS) * len(ROWS) * 3


def test_every_run_has_its_own_folder(tmp_path):
    folders = {r.folder(tmp_path) for r in GRID}
    assert len(folders) == len(GRID)
    assert Run("shapes-ve", "full", "mad", 2).folder(tmp_path) == tmp_path / "shapes-ve" / "full" / "mad-seed2"


def test_budgets_are_the_protocols_data_sizes_and_reach_their_step_counts():
    assert BUDGETS["low1"]["train_size"] == 1280 and BUDGETS["low10"]["train_size"] == 12_800
    assert BUDGETS["full"]["train_size"] == 128_000
    assert BUDGETS["full"]["max_steps"] * BUDGETS["full"]["batch_size"] == 128_000  # every pair seen once
    # the table's row groups: every setting on the test split, and the full runs on the shifted domain
    assert mx.VIEWS == {
        "low1": ("low1", "test"),
        "low10": ("low10", "test"),
        "full": ("full", "test"),
        "shift": ("full", "compositional"),
    }
    assert mx.EXTRA_SPLITS == {"full": ("compositional",)}
    for budget in BUDGETS.values():
        assert budget["batch_size"] == 64
        # enough epochs for max_steps (the loop stops at whichever comes first)
        assert budget["epochs"] * (budget["train_size"] // budget["batch_size"]) >= budget["max_steps"]
        assert budget["warmup_steps"] == budget["max_steps"] // 10


def test_rows_are_the_same_model_and_budget_and_mad_rows_use_the_assets_mae(tmp_path):
    none, mad = Run("shapes-vqa", "low1", "none"), Run("shapes-vqa", "low1", "mad")
    a, b = none.config(tmp_path), mad.config(tmp_path)
    same = ("model", "dataset", "size", "train_size", "epochs", "max_steps", "batch_size", "lr", "warmup_steps", "seed")
    assert all(getattr(a, k) == getattr(b, k) for k in same)
    assert a.model == "fusion" and a.max_steps == 600 and a.recipe == "hard" and b.recipe == "mad"
    assert none.mad(tmp_path) is None
    config = Run("shapes-vqa", "low1", "mad-no-conf").mad(tmp_path / "assets")
    assert config.vision_teacher == str(tmp_path / "assets" / "shapes-mae") and not config.confidence


def test_select_and_the_cli_lists_every_setting():
    from workbench.cli import MAD_SETTINGS

    assert MAD_SETTINGS == SETTINGS
    picked = mx.select(GRID, tasks=["shapes-ve"], settings=["low10"], seeds=[1])
    assert len(picked) == len(ROWS) and {(r.task, r.setting, r.seed) for r in picked} == {("shapes-ve", "low10", 1)}
    assert mx.select(GRID) == GRID
    nones = mx.select(GRID, settings=["low1"], rows=["none"])
    assert len(nones) == len(TASKS) * len(SEEDS) and {r.row for r in nones} == {"none"}


# ----------------------------------------------------------------------------------------------
# faked finished runs


def _fake_run(root, run: Run, accuracy: float, relation: float = 0.5, compositional: float | None = None):
    test = {
        "accuracy": accuracy,
        "n": 100,
        "per_type": {"relation": {"accuracy": relation, "n": 50}, "attribute": {"accuracy": 1.0, "n": 50}},
    }
    meta = {"metrics": {"test": test}, "train_seconds": 240, "steps": 600}
    out = run.folder(root) / "model"
    out.mkdir(parents=True)
    (out / "workbench.json").write_text(json.dumps(meta))
    for split in mx.EXTRA_SPLITS.get(run.setting, ()):
        shifted = dict(test, accuracy=accuracy if compositional is None else compositional)
        mx.eval_path(run, root, split).write_text(json.dumps(shifted))


def _low1(task, row, seeds=(0, 1, 2)):
    return [Run(task, "low1", row, s) for s in seeds]


def test_collect_gives_mean_and_sample_std_over_seeds(tmp_path):
    for run, acc, rel in zip(_low1("shapes-vqa", "none"), (0.40, 0.42, 0.44), (0.30, 0.32, 0.34)):
        _fake_run(tmp_path, run, acc, rel)
    (Run("shapes-vqa", "low1", "none", 0).folder(tmp_path) / "probe.json").write_text('{"examples": 1280}')
    results = collect(tmp_path)
    assert list(results) == ["shapes-vqa"] and list(results["shapes-vqa"]) == ["low1"]
    none = results["shapes-vqa"]["low1"]["none"]
    assert none["seeds"] == [0, 1, 2]
    assert none["accuracy"]["mean"] == pytest.approx(0.42)
    assert none["accuracy"]["std"] == pytest.approx(0.02)  # sample std (n - 1)
    assert none["accuracy"]["values"] == [0.40, 0.42, 0.44]
    assert none["per_type"]["relation"]["mean"] == pytest.approx(0.32)
    assert none["per_type"]["relation"]["std"] == pytest.approx(0.02)
    assert none["runs"][0]["probe"] == {"examples": 1280} and none["runs"][0]["minutes"] == 4.0


def test_full_runs_fill_the_full_rows_in_domain_and_the_shift_rows_on_the_compositional_split(tmp_path):
    runs = [Run("shapes-ve", "full", "mad", s) for s in (0, 1)]
    _fake_run(tmp_path, runs[0], 0.80, compositional=0.60)
    _fake_run(tmp_path, runs[1], 0.90, compositional=0.70)
    unevaluated = Run("shapes-ve", "full", "none", 0)
    _fake_run(tmp_path, unevaluated, 0.9)
    mx.eval_path(unevaluated, tmp_path, "compositional").unlink()  # trained, not yet tested on the shift
    assert not mx.finished(unevaluated, tmp_path)
    results = collect(tmp_path)["shapes-ve"]
    assert list(results) == ["full", "shift"] and set(results["full"]) == set(results["shift"]) == {"mad"}
    assert (
        results["full"]["mad"]["accuracy"]["mean"] == pytest.approx(0.85) and "in_domain" not in results["full"]["mad"]
    )
    assert results["shift"]["mad"]["accuracy"]["mean"] == pytest.approx(0.65)
    assert results["shift"]["mad"]["in_domain"]["mean"] == pytest.approx(0.85)
    table = results_table(collect(tmp_path))
    assert "| `mad` | 2 | 65.0 ± 7.1 (in-domain 85.0 ± 7.1) |" in table and "| `mad` | 2 | 85.0 ± 7.1 |" in table
    # from the results file alone (folders gone), both views come back
    previous = json.loads(json.dumps(collect(tmp_path)))
    assert collect(tmp_path / "gone", previous=previous)["shapes-ve"] == previous["shapes-ve"]


def test_previous_results_survive_missing_folders_and_present_folders_win(tmp_path):
    runs = _low1("shapes-vqa", "none", (0, 1))
    _fake_run(tmp_path / "old", runs[0], 0.60)
    _fake_run(tmp_path / "old", runs[1], 0.70)
    previous = json.loads(json.dumps(collect(tmp_path / "old")))  # as read back from mad.json
    _fake_run(tmp_path / "new", runs[1], 0.80)  # seed 1 re-run; seed 0's folder is gone
    row = collect(tmp_path / "new", previous=previous)["shapes-vqa"]["low1"]["none"]
    assert row["accuracy"]["values"] == [0.60, 0.80] and row["seeds"] == [0, 1]
    assert collect(tmp_path / "new")["shapes-vqa"]["low1"]["none"]["seeds"] == [1]
    # the results file round-trips through document / read_previous
    mx.write_results(mx.document(collect(tmp_path / "old")), tmp_path / "mad.json")
    assert mx.read_previous(tmp_path / "mad.json") == previous
    assert mx.read_previous(tmp_path / "nothing.json") is None


def _checks_for(tmp_path, mad_accs, none_accs, task="shapes-vqa"):
    for run, acc in zip(_low1(task, "mad", range(len(mad_accs))), mad_accs):
        _fake_run(tmp_path, run, acc)
    for run, acc in zip(_low1(task, "none", range(len(none_accs))), none_accs):
        _fake_run(tmp_path, run, acc)
    return checks(collect(tmp_path))


def test_checks_met_when_the_margin_exceeds_the_seed_spread(tmp_path):
    c = _checks_for(tmp_path, (0.50, 0.52, 0.54), (0.40, 0.41, 0.42))
    vqa = c["mad_minus_none_low1_points"]["shapes-vqa"]
    assert vqa["value"] == pytest.approx(11.0) and vqa["spread"] == pytest.approx(3.0)
    assert vqa["met"] is True and vqa["status"] == "met"
    assert c["mad_minus_none_low1_points"]["shapes-ve"]["status"] == "pending (not run)"
    assert c["any_task"] is True  # met on one task is enough


def test_checks_not_met_when_within_the_spread(tmp_path):
    c = _checks_for(tmp_path / "a", (0.43, 0.40, 0.46), (0.40, 0.42, 0.44))
    vqa = c["mad_minus_none_low1_points"]["shapes-vqa"]
    assert vqa["value"] == pytest.approx(1.0) and vqa["spread"] == pytest.approx(5.0)
    assert vqa["met"] is False and vqa["status"] == "not met"
    assert c["any_task"] is None  # shapes-ve still pending
    _checks_for(tmp_path / "a", (0.40, 0.41, 0.42), (0.40, 0.41, 0.42), task="shapes-ve")
    assert checks(collect(tmp_path / "a"))["any_task"] is False
    table = results_table(collect(tmp_path / "a"))
    assert "MAD minus none at 1% (shapes-vqa, overall): +1.00 points (seed spread 5.00) — not met." in table
    assert "at least one task): NOT met" in table


def test_checks_pending_with_one_seed(tmp_path):
    c = _checks_for(tmp_path, (0.60,), (0.40,))
    vqa = c["mad_minus_none_low1_points"]["shapes-vqa"]
    assert vqa["value"] == pytest.approx(20.0) and vqa["spread"] is None and vqa["met"] is None
    assert vqa["status"].startswith("pending")


def test_margin_per_setting_for_every_view_and_only_low1_decides_acceptance(tmp_path):
    _checks_for(tmp_path, (0.50, 0.52, 0.54), (0.40, 0.41, 0.42))  # low1: +11.0, spread 3.0
    for s, (mad, none, mad_shift, none_shift) in enumerate([(0.80, 0.81, 0.60, 0.50), (0.82, 0.79, 0.62, 0.52)]):
        _fake_run(tmp_path, Run("shapes-vqa", "full", "mad", s), mad, compositional=mad_shift)
        _fake_run(tmp_path, Run("shapes-vqa", "full", "none", s), none, compositional=none_shift)
    _fake_run(tmp_path, Run("shapes-vqa", "low10", "mad", 0), 0.70)
    _fake_run(tmp_path, Run("shapes-vqa", "low10", "none", 0), 0.65)
    c = checks(collect(tmp_path))
    views = c["mad_minus_none_points"]["shapes-vqa"]
    assert list(views) == list(mx.VIEWS)
    assert views["low1"] == c["mad_minus_none_low1_points"]["shapes-vqa"]
    assert views["low10"]["value"] == pytest.approx(5.0) and views["low10"]["met"] is None  # one seed: no spread
    # full: mad 0.81 ± 0.01414, none 0.80 ± 0.01414 -> +1.0 within 2.83; shift: +10.0, spread 2.83
    assert views["full"]["value"] == pytest.approx(1.0) and views["full"]["spread"] == pytest.approx(2.83)
    assert views["full"]["met"] is False
    assert views["shift"]["value"] == pytest.approx(10.0) and views["shift"]["met"] is True
    assert c["mad_minus_none_points"]["shapes-ve"]["full"]["status"] == "pending (not run)"
    line = "MAD minus none per setting (shapes-vqa, overall, points): low1 +11.00 (spread 3.00), "
    line += "low10 +5.00 (one seed), full +1.00 (spread 2.83), shift +10.00 (spread 2.83)."
    assert line in results_table(collect(tmp_path))


def test_table_says_not_run_for_missing_cells(tmp_path):
    for run, acc in zip(_low1("shapes-vqa", "none"), (0.40, 0.42, 0.44)):
        _fake_run(tmp_path, run, acc, 0.3)
    table = results_table(collect(tmp_path))
    lines = table.splitlines()
    assert lines[0] == "| shapes-vqa | seeds | overall | attribute | relation | minutes |"
    assert "| `none` | 3 | 42.0 ± 2.0 | 100.0 ± 0.0 | 30.0 ± 0.0 | 4.0 |" in lines
    assert "| `mad` | 0 | not run | | | |" in lines
    assert sum("**low1**" in line for line in lines) == 2  # a row group per task
    ve = table.split("| shapes-ve |", 1)[1]
    assert ve.count("| not run |") == len(mx.VIEWS) * len(ROWS)
    assert "pending" in table
    assert results_table({}).count("| not run |") == len(TASKS) * len(mx.VIEWS) * len(ROWS)


# ----------------------------------------------------------------------------------------------
# running


def _fake_mae(assets):
    (assets / "shapes-mae").mkdir(parents=True)
    (assets / "shapes-mae" / "config.json").write_text("{}")


def test_run_grid_skips_finished_and_recorded_runs(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(mx, "train_run", lambda run, root, assets, progress=True: calls.append(run))
    assets = tmp_path / "assets"
    _fake_mae(assets)
    runs = tuple(Run("shapes-vqa", "low1", row) for row in ("none", "mad-naive", "mad", "mad-no-conf"))
    _fake_run(tmp_path / "runs", runs[0], 0.5)  # finished here
    _fake_run(tmp_path / "old", runs[1], 0.5)
    previous = collect(tmp_path / "old", runs)  # recorded by the last results file
    assert claim(runs[3].folder(tmp_path / "runs"))  # another worker has it (we hold its lock here)
    done = mx.run_grid(tmp_path / "runs", assets, runs, progress=False, previous=previous)
    assert done == ["shapes-vqa/low1/mad-seed0"] and calls == [runs[2]]
    assert not (tmp_path / "runs" / "shapes-vqa" / "low1" / "mad-seed0.lock").exists()  # released
    release(runs[3].folder(tmp_path / "runs"))


def test_run_grid_fails_before_training_without_the_mae(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(mx, "train_run", lambda run, *a, **k: calls.append(run))
    runs = (Run("shapes-vqa", "low1", "none"), Run("shapes-vqa", "low1", "mad"))
    from workbench.errors import WorkbenchError

    with pytest.raises(WorkbenchError, match="pretrain-mae --out"):
        mx.run_grid(tmp_path / "runs", tmp_path / "assets", runs, progress=False)
    assert calls == []  # not even the `none` run started
    mx.run_grid(tmp_path / "runs", tmp_path / "assets", runs[:1], progress=False)  # none needs no teacher
    assert calls == [runs[0]]


def test_cli_collects_into_the_results_file_and_the_readme_and_fails_early_without_the_mae(tmp_path, capsys):
    from workbench.cli import main

    root, assets = tmp_path / "runs", tmp_path / "assets"
    for run, acc in zip(_low1("shapes-vqa", "none"), (0.40, 0.42, 0.44)):
        _fake_run(root, run, acc)
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- mad:start -->\nold\n<!-- mad:end -->\nrest\n")
    argv = ["experiment", "mad", "--runs", str(root), "--assets", str(assets), "--collect", "--readme", str(readme)]
    assert main(argv) == 0
    doc = json.loads((assets / "results" / "mad.json").read_text())
    assert set(doc) == {"protocol", "results", "checks"}
    assert doc["results"]["shapes-vqa"]["low1"]["none"]["accuracy"]["values"] == [0.40, 0.42, 0.44]
    assert doc["protocol"]["settings"]["low1"]["train_size"] == 1280
    text = readme.read_text()
    assert "| `none` | 3 | 42.0 ± 2.0 |" in text and "old" not in text and text.endswith("rest\n")
    # the folders are gone; the next collect keeps their figures
    import shutil

    shutil.rmtree(root)
    assert main(argv) == 0
    assert json.loads((assets / "results" / "mad.json").read_text())["results"] == doc["results"]
    capsys.readouterr()
    assert main(["experiment", "mad", "--runs", str(root), "--assets", str(assets), "--settings", "low1"]) == 2
    assert "no vision teacher" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# two tiny real runs


def test_a_full_run_trains_then_tests_on_the_compositional_split_too(tmp_path, monkeypatch):
    tiny = dict(BUDGETS["full"], train_size=24, epochs=1, max_steps=3, batch_size=8, warmup_steps=1)
    monkeypatch.setitem(BUDGETS, "full", dict(tiny, val_size=8, test_size=16, save_every=0))
    run = Run("shapes-vqa", "full", "none")
    mx.train_run(run, tmp_path, tmp_path / "assets", progress=False)
    assert mx.finished(run, tmp_path)
    shifted = json.loads(mx.eval_path(run, tmp_path, "compositional").read_text())
    assert shifted["split"] == "compositional" and shifted["n"] == 16
    results = collect(tmp_path, (run,))["shapes-vqa"]
    row = results["shift"]["none"]
    assert row["accuracy"]["mean"] == shifted["accuracy"] and "in_domain" in row
    assert row["runs"][0]["steps"] == 3
    assert results["full"]["none"]["accuracy"]["mean"] == row["in_domain"]["mean"]


def test_mad_runs_of_a_task_share_one_teacher_feature_folder(tmp_path, monkeypatch):
    import workbench.distill.mad as mad

    seen = []
    monkeypatch.setattr(mad, "distill_mad", lambda cfg, config, **kw: seen.append(kw["feature_cache"]))
    for run in (
        Run("shapes-vqa", "low1", "mad", 0),
        Run("shapes-vqa", "low10", "mad-naive", 2),
        Run("shapes-ve", "low1", "mad"),
    ):
        mx.train_run(run, tmp_path, tmp_path / "assets", progress=False)
    assert seen == [tmp_path / "shapes-vqa" / "teacher-features"] * 2 + [tmp_path / "shapes-ve" / "teacher-features"]


def test_none_is_mad_at_feature_weight_zero(tmp_path):
    """The `none` row is the plain loop on hard labels; MAD with feature weight 0 (here with token selection,
    i.e. the eager-attention forward) takes the same steps: same losses, same final weights (bit-identical
    when measured; the tolerances only allow for other BLAS builds)."""
    from workbench.distill.mad import distill_mad, mad_config
    from workbench.mae import pretrain_mae
    from workbench.models.io import load_checkpoint
    from workbench.train import TrainConfig, train

    mae = tmp_path / "mae"
    tiny_mae = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    pretrain_mae(mae, steps=1, batch_size=4, progress=False, **tiny_mae)
    common = dict(
        model="fusion", dataset="shapes-vqa", train_size=48, val_size=8, test_size=8, batch_size=16, max_steps=3,
        warmup_steps=1, log_every=1, lr=1e-3, size={"hidden_size": 32, "num_layers": 2, "num_heads": 2},
    )  # fmt: skip
    train(TrainConfig(out=str(tmp_path / "none"), **common), progress=False)
    zero = mad_config("mad-no-conf", feature_weight=0.0, text_teacher=None, vision_teacher=str(mae))
    distill_mad(TrainConfig(out=str(tmp_path / "mad0"), recipe="mad-no-conf", **common), zero, progress=False)

    def losses(name):
        records = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in records if "loss" in r]

    assert len(losses("none")) == 3
    assert losses("none") == pytest.approx(losses("mad0"), rel=1e-4)
    a = load_checkpoint(tmp_path / "none" / "model").model.state_dict()
    b = load_checkpoint(tmp_path / "mad0" / "model").model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_readme_mad_section_is_the_table_of_the_results_file():
    from pathlib import Path

    from workbench.report import read_section

    root = Path(__file__).resolve().parents[2]
    section = read_section((root / "README.md").read_text(), "mad")
    path = root / "assets" / "results" / "mad.json"
    if not path.exists():
        assert section.startswith("(no results yet"), "README's mad section has a table but mad.json is missing"
        return
    results = json.loads(path.read_text())["results"]
    assert section == results_table(results).strip(), "run: workbench experiment mad --collect --readme README.md"
