"""Results of an earlier teacher or recipe (the DiDE table's `earlier` section) and the shipped models that are
grid runs: which figures count, which are kept apart for reference, and what the table says of them."""

import dataclasses
import json
from pathlib import Path

from workbench.experiments import collect, get_grid, results_table, run_grid, select
from workbench.experiments.measure import same_recipe

DIDE = get_grid("dide")


def _grid(undigested="current", seeds=(0, 1)):
    block = dict(tasks=("shapes-vqa",), rows=("none", "dide"), seeds=tuple(seeds))
    return dataclasses.replace(DIDE, blocks=(block,), undigested_records=undigested)


def _one(grid, row, seed=0):
    (run,) = select(grid.runs(), tasks=["shapes-vqa"], rows=[row], seeds=[seed])
    return run


def _record(accuracy, seed, **extra):
    per_type = {"relation": accuracy}
    return {"seed": seed, "accuracy": accuracy, "per_type": per_type, "n": 100, "minutes": 10.0, "steps": 3000, **extra}


def _previous(rows: dict) -> dict:
    """A DiDE results file as an earlier runner wrote it: {row: [record, ...]} on shapes-vqa."""
    return {"shapes-vqa": {"teacher": None, "rows": {name: {"runs": runs} for name, runs in rows.items()}}}


def _meta(accuracy, train_config, teacher=None):
    test = {"accuracy": accuracy, "n": 100, "per_type": {"relation": {"accuracy": accuracy, "n": 50}}}
    meta = {"metrics": {"test": test}, "train_seconds": 600, "steps": 3000, "train_config": train_config}
    return {**meta, "teacher_fingerprint": teacher} if teacher else meta


def _fake_run(root, run, accuracy):
    out = run.dir(root) / "model"
    out.mkdir(parents=True)
    (out / "workbench.json").write_text(json.dumps(_meta(accuracy, {})))


def test_records_from_before_recipe_digests_count_or_go_to_the_earlier_section_as_the_grid_says(tmp_path):
    previous = _previous({"none": [_record(0.70, 0), _record(0.72, 1)], "dide": [_record(0.80, 0)]})
    kept = collect(_grid("current"), tmp_path / "runs", tmp_path / "assets", previous=previous)["shapes-vqa"]
    assert set(kept["rows"]) == {"none", "dide"} and "earlier" not in kept

    moved = collect(_grid("earlier"), tmp_path / "runs", tmp_path / "assets", previous=previous)["shapes-vqa"]
    assert moved["rows"] == {} and moved["checks"] == {}  # no claim rests on an earlier recipe
    assert moved["earlier"]["none"]["accuracy"]["values"] == [0.70, 0.72]
    assert {r["why"] for r in moved["earlier"]["none"]["runs"]} == {"an earlier recipe"}
    assert "earlier teacher or recipe" in results_table(DIDE, {"shapes-vqa": moved})
    assert "| `none` (an earlier recipe) | 2 | 71.0 ± 1.4 |" in results_table(DIDE, {"shapes-vqa": moved})


def test_a_run_trained_now_counts_and_its_earlier_record_stays_beside_it_through_re_collection(tmp_path):
    grid = _grid("earlier")
    previous = _previous({"none": [_record(0.70, 0), _record(0.72, 1)]})
    _fake_run(tmp_path / "runs", _one(grid, "none", 1), 0.90)  # seed 1 trained to today's recipe
    first = collect(grid, tmp_path / "runs", tmp_path / "assets", previous=previous)
    entry = first["shapes-vqa"]
    assert entry["rows"]["none"]["accuracy"]["values"] == [0.90]
    assert entry["rows"]["none"]["runs"][0]["recipe"] == _one(grid, "none", 1).recipe_digest
    assert entry["earlier"]["none"]["accuracy"]["values"] == [0.70, 0.72]  # the earlier row stays whole
    # the folder is gone, the file remembers both; read back from JSON, the document comes back the same
    again = collect(grid, tmp_path / "gone", tmp_path / "assets", previous=json.loads(json.dumps(first)))
    assert again == json.loads(json.dumps(first))


def test_a_recorded_run_of_another_budget_is_of_an_earlier_recipe_and_runs_again(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("workbench.methods.distill", lambda cfg, config=None, **kw: calls.append(cfg.out))
    grid = _grid("current", seeds=(0,))
    run = _one(grid, "none")
    previous = _previous({"none": [_record(0.70, 0, recipe=run.recipe_digest)]})
    assert collect(grid, tmp_path / "runs", tmp_path / "assets", previous=previous)["shapes-vqa"]["rows"]["none"]
    longer = dataclasses.replace(grid, budget={**grid.budget, "max_steps": 4000})
    assert _one(longer, "none").recipe_digest != run.recipe_digest
    entry = collect(longer, tmp_path / "runs", tmp_path / "assets", previous=previous)["shapes-vqa"]
    assert "none" not in entry["rows"] and entry["earlier"]["none"]["runs"][0]["why"].startswith("an earlier recipe")
    run_grid(longer, tmp_path / "runs", tmp_path / "assets", select={"rows": ["none"]}, progress=False,
             previous=previous)  # fmt: skip
    assert calls == [str(tmp_path / "runs" / "shapes-vqa" / "none-seed0")]


def _ship(assets: Path, name: str, meta: dict) -> None:
    (assets / name).mkdir(parents=True)
    (assets / name / "workbench.json").write_text(json.dumps(meta))


def test_a_shipped_model_trained_as_the_grid_says_fills_its_run_and_one_trained_otherwise_does_not(tmp_path):
    grid, assets = _grid("earlier", seeds=(0,)), tmp_path / "assets"
    run = _one(grid, "none")
    saved = {"seed": 0, "dataset": "shapes-vqa", "recipe": "none", "out": "elsewhere", "teacher": "/some/teacher",
             **run.budget, "size": {"hidden_size": 128}, "recipe_args": {"hard": 1.0}}  # fmt: skip
    assert same_recipe(run, json.loads(json.dumps(saved)))  # paths and the sizes the grid leaves alone differ
    _ship(assets, "shapes-vqa-student-none", _meta(0.75, saved))
    entry = collect(grid, tmp_path / "runs", assets)["shapes-vqa"]
    (record,) = entry["rows"]["none"]["runs"]
    assert record["accuracy"] == 0.75 and record["shipped"] == "shapes-vqa-student-none"
    for field, value in (("max_steps", 2000), ("paraphrase", False), ("seed", 1)):
        assert not same_recipe(run, {**saved, field: value}), field
    (assets / "shapes-vqa-student-none" / "workbench.json").write_text(json.dumps(_meta(0.75, {**saved, "lr": 1.0})))
    assert "none" not in collect(grid, tmp_path / "runs", assets).get("shapes-vqa", {}).get("rows", {})


def test_a_shipped_model_of_a_since_rebuilt_teacher_goes_to_the_earlier_section(tmp_path):
    from workbench.models.io import weights_fingerprint

    grid, assets = _grid("earlier", seeds=(0,)), tmp_path / "assets"
    run = _one(grid, "dide")
    (assets / "shapes-vqa-teacher").mkdir(parents=True)
    (assets / "shapes-vqa-teacher" / "model.safetensors").write_bytes(b"today's weights")
    saved = {"seed": 0, "dataset": "shapes-vqa", "recipe": "dide", **run.budget}
    _ship(assets, "shapes-vqa-student", _meta(0.8, saved, teacher="0123456789abcdef"))
    assert weights_fingerprint(assets / "shapes-vqa-teacher") != "0123456789abcdef"
    entry = collect(grid, tmp_path / "runs", assets)["shapes-vqa"]
    assert "dide" not in entry["rows"]
    assert entry["earlier"]["dide"]["runs"][0]["why"] == "teacher 0123456789abcdef, since rebuilt"


def test_the_runner_skips_a_run_its_shipped_model_already_is_unless_told_to_rerun(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("workbench.methods.distill", lambda cfg, config=None, **kw: calls.append(cfg.out))
    grid, assets = _grid("earlier", seeds=(0,)), tmp_path / "assets"
    run = _one(grid, "none")
    _ship(assets, "shapes-vqa-student-none", _meta(0.75, {"seed": 0, "dataset": "shapes-vqa", "recipe": "none",
                                                          **run.budget}))  # fmt: skip
    run_grid(grid, tmp_path / "runs", assets, select={"rows": ["none"]}, progress=False)
    assert calls == []
    run_grid(grid, tmp_path / "runs", assets, select={"rows": ["none"]}, progress=False, rerun=True)
    assert calls == [str(tmp_path / "runs" / "shapes-vqa" / "none-seed0")]
