"""Results of an earlier teacher or recipe (the DiDE table's `earlier` section) and the shipped models that are
grid runs: which figures count, which are kept apart for reference, and what the table says of them."""

import dataclasses
import json
from pathlib import Path

from workbench.experiments import collect, get_grid, results_table, run_grid, select
from workbench.experiments.measure import EARLIER_NOTE
from workbench.experiments.recipe import same_recipe

DIDE = get_grid("dide")


def _grid(undigested=None, seeds=(0, 1)):
    block = dict(tasks=("shapes-vqa",), rows=("none", "dide"), seeds=tuple(seeds))
    return dataclasses.replace(DIDE, blocks=(block,), undigested_earlier=undigested)


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
    kept = collect(_grid(None), tmp_path / "runs", tmp_path / "assets", previous=previous)["shapes-vqa"]
    assert set(kept["rows"]) == {"none", "dide"} and "earlier" not in kept

    moved = collect(_grid("an earlier recipe"), tmp_path / "runs", tmp_path / "assets", previous=previous)["shapes-vqa"]
    assert moved["rows"] == {}  # no claim rests on an earlier recipe: the grid's claims on the task are pending
    assert moved["checks"] and all(c["met"] is None and c["value"] is None for c in moved["checks"].values())
    assert moved["checks"]["dide_minus_none_relation_points"]["missing"] == ["dide", "none"]
    assert moved["earlier"]["none"]["accuracy"]["values"] == [0.70, 0.72]
    assert {r["why"] for r in moved["earlier"]["none"]["runs"]} == {"an earlier recipe"}
    assert EARLIER_NOTE in results_table(DIDE, {"shapes-vqa": moved})
    assert "| `none` (an earlier recipe) | 2 | 71.0 ± 1.4 |" in results_table(DIDE, {"shapes-vqa": moved})


def test_a_run_trained_now_counts_and_its_earlier_record_stays_beside_it_through_re_collection(tmp_path):
    grid = _grid("an earlier recipe")
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
    grid = _grid(None, seeds=(0,))
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


def _saved(grid, run) -> dict:
    """The `train_config` a model trained as `run` saves."""
    saved = dataclasses.asdict(run.train_config(Path("."), Path("."), grid.student))
    return {**saved, "recipe_args": dataclasses.asdict(run.method_config(Path("."), Path(".")))}


def _ship(assets: Path, name: str, meta: dict) -> None:
    (assets / name).mkdir(parents=True)
    (assets / name / "workbench.json").write_text(json.dumps(meta))


def test_a_shipped_model_trained_as_the_grid_says_fills_its_run_and_one_trained_otherwise_does_not(tmp_path):
    grid, assets = _grid("an earlier recipe", seeds=(0,)), tmp_path / "assets"
    run = _one(grid, "none")
    saved = {**_saved(grid, run), "out": "elsewhere", "teacher": "/some/teacher", "size": {"hidden_size": 128}}
    assert same_recipe(run, json.loads(json.dumps(saved)), grid.student)  # paths, sizes the grid leaves alone
    _ship(assets, "shapes-vqa-student-none", _meta(0.75, saved))
    entry = collect(grid, tmp_path / "runs", assets)["shapes-vqa"]
    (record,) = entry["rows"]["none"]["runs"]
    assert record["accuracy"] == 0.75 and record["shipped"] == "shapes-vqa-student-none"
    for field, value in (("max_steps", 2000), ("paraphrase", False), ("seed", 1)):
        assert not same_recipe(run, {**saved, field: value}, grid.student), field
    (assets / "shapes-vqa-student-none" / "workbench.json").write_text(json.dumps(_meta(0.75, {**saved, "lr": 1.0})))
    assert "none" not in collect(grid, tmp_path / "runs", assets).get("shapes-vqa", {}).get("rows", {})


def test_a_shipped_model_of_a_since_rebuilt_teacher_goes_to_the_earlier_section(tmp_path):
    from workbench.models.io import weights_fingerprint

    grid, assets = _grid("an earlier recipe", seeds=(0,)), tmp_path / "assets"
    run = _one(grid, "dide")
    (assets / "shapes-vqa-teacher").mkdir(parents=True)
    (assets / "shapes-vqa-teacher" / "model.safetensors").write_bytes(b"today's weights")
    saved = _saved(grid, run)
    _ship(assets, "shapes-vqa-student", _meta(0.8, saved, teacher="0123456789abcdef"))
    assert weights_fingerprint(assets / "shapes-vqa-teacher") != "0123456789abcdef"
    entry = collect(grid, tmp_path / "runs", assets)["shapes-vqa"]
    assert "dide" not in entry["rows"]
    assert entry["earlier"]["dide"]["runs"][0]["why"] == "teacher 0123456789abcdef, since rebuilt"


def test_a_dide_pt_record_of_a_since_rebuilt_matching_teacher_is_earlier_and_a_dide_record_still_counts(tmp_path):
    from workbench.models.io import weights_fingerprint

    block = dict(tasks=("shapes-vqa",), rows=("dide", "dide-pt"), seeds=(0,))
    grid, assets = dataclasses.replace(DIDE, blocks=(block,)), tmp_path / "assets"
    (assets / "shapes-itm-teacher").mkdir(parents=True)
    (assets / "shapes-itm-teacher" / "model.safetensors").write_bytes(b"the matching teacher, rebuilt")
    assert weights_fingerprint(assets / "shapes-itm-teacher") != "0ld"
    digests = {r.row: r.recipe_digest for r in grid.runs()}
    previous = _previous({
        "dide": [_record(0.80, 0, recipe=digests["dide"])],
        "dide-pt": [_record(0.78, 0, recipe=digests["dide-pt"], teacher_fingerprints={"pretrain_teacher": "0ld"})],
    })  # fmt: skip
    entry = collect(grid, tmp_path / "runs", assets, previous=previous)["shapes-vqa"]
    assert list(entry["rows"]) == ["dide"] and list(entry["earlier"]) == ["dide-pt"]
    assert entry["earlier"]["dide-pt"]["runs"][0]["why"] == "matching teacher 0ld, since rebuilt"


def test_the_runner_skips_a_run_its_shipped_model_already_is_unless_told_to_rerun(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("workbench.methods.distill", lambda cfg, config=None, **kw: calls.append(cfg.out))
    grid, assets = _grid("an earlier recipe", seeds=(0,)), tmp_path / "assets"
    run = _one(grid, "none")
    _ship(assets, "shapes-vqa-student-none", _meta(0.75, _saved(grid, run)))
    run_grid(grid, tmp_path / "runs", assets, select={"rows": ["none"]}, progress=False)
    assert calls == []
    run_grid(grid, tmp_path / "runs", assets, select={"rows": ["none"]}, progress=False, rerun=True)
    assert calls == [str(tmp_path / "runs" / "shapes-vqa" / "none-seed0")]


def test_a_folder_trained_to_another_recipe_is_earlier_and_is_set_aside_and_trained_again(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("workbench.methods.distill", lambda cfg, config=None, **kw: calls.append(cfg.out))
    grid = _grid(None, seeds=(0,))
    run = _one(grid, "none")
    saved = _saved(grid, run)
    out = run.dir(tmp_path / "runs") / "model"
    out.mkdir(parents=True)
    (out / "workbench.json").write_text(json.dumps(_meta(0.7, {**saved, "max_steps": 10})))  # a 10-step run
    entry = collect(grid, tmp_path / "runs", tmp_path / "assets")["shapes-vqa"]
    assert "none" not in entry["rows"] and entry["earlier"]["none"]["runs"][0]["why"].startswith("an earlier recipe")
    run_grid(grid, tmp_path / "runs", tmp_path / "assets", select={"rows": ["none"]}, progress=False)
    assert calls == [str(tmp_path / "runs" / "shapes-vqa" / "none-seed0")]
    assert (tmp_path / "runs" / "shapes-vqa" / "none-seed0.recipe-1" / "model" / "workbench.json").exists()
    (out / "workbench.json").parent.mkdir(parents=True)
    (out / "workbench.json").write_text(json.dumps(_meta(0.8, saved)))  # trained as the grid says: it counts
    assert (
        collect(grid, tmp_path / "runs", tmp_path / "assets")["shapes-vqa"]["rows"]["none"]["runs"][0]["accuracy"]
        == 0.8
    )


def test_a_record_counts_wherever_the_file_kept_it_and_loses_its_reason(tmp_path, monkeypatch):
    """A run whose first record is earlier and whose second is current (e.g. its teacher was restored) counts,
    is not trained again, and its current record carries no `why`."""
    calls = []
    monkeypatch.setattr("workbench.methods.distill", lambda cfg, config=None, **kw: calls.append(cfg.out))
    grid = _grid(None, seeds=(0,))
    run = _one(grid, "none")
    previous = _previous({"none": [_record(0.6, 0, recipe="0ld")]})
    previous["shapes-vqa"]["earlier"] = {"none": {"runs": [_record(0.7, 0, recipe=run.recipe_digest, why="x")]}}
    entry = collect(grid, tmp_path / "runs", tmp_path / "assets", previous=previous)["shapes-vqa"]
    (record,) = entry["rows"]["none"]["runs"]
    assert record["accuracy"] == 0.7 and "why" not in record
    assert entry["earlier"]["none"]["runs"][0]["accuracy"] == 0.6
    run_grid(grid, tmp_path / "runs", tmp_path / "assets", select={"rows": ["none"]}, progress=False,
             previous=previous)  # fmt: skip
    assert calls == []


def test_a_shipped_model_with_other_method_settings_or_training_fields_is_not_the_run(tmp_path):
    grid = _grid("an earlier recipe", seeds=(0,))
    run = _one(grid, "dide")
    saved = dataclasses.asdict(run.train_config(Path("."), Path("."), grid.student))
    saved["recipe_args"] = dataclasses.asdict(run.method_config(Path("."), Path(".")))
    assert same_recipe(run, json.loads(json.dumps(saved)), grid.student)
    assert not same_recipe(run, {**saved, "recipe_args": {**saved["recipe_args"], "temperature": 2.0}}, grid.student)
    assert not same_recipe(run, {**saved, "word_dropout": 0.1}, grid.student)
    older = {k: v for k, v in saved.items() if k != "word_dropout"}  # a config from before the field: its default
    assert same_recipe(run, older, grid.student)


def _retrieval_record(r1, seed, **extra):
    """One MCAD run as the results file records it (R@K per direction, size and speed)."""
    per_direction = {f"{d} {k}": v for d in ("i2t", "t2i") for k, v in
                     (("R@1", r1), ("R@5", 1.0), ("R@10", 1.0), ("median_rank", 1.0))}  # fmt: skip
    return {"seed": seed, "r1": r1, **per_direction, "params": 1_751_553, "index_s": 0.5, "n_images": 1000,
            "query_ms": 2.5, "minutes": 8.0, "steps": 1000, **extra}  # fmt: skip


def test_mad_and_mcad_files_keep_runs_of_an_earlier_recipe_through_re_collection(tmp_path):
    for name in ("mad", "mcad"):
        grid = get_grid(name)
        if name == "mad":
            shipped = json.loads((Path(__file__).resolve().parents[2] / "assets" / "results" / "mad.json").read_text())
            stale = json.loads(json.dumps(shipped))
            runs = stale["results"]["shapes-ve"]["low1"]["mad"]["runs"]
        else:  # three current `clip` runs of today's recipe
            digest = {r.seed: r.recipe_digest for r in grid.runs() if r.row == "clip"}
            runs = [_retrieval_record(0.95 + s / 100, s, recipe=digest[s]) for s in range(3)]
            stale = {"teachers": {}, "rows": {"clip": {"runs": runs}}}
        runs[0]["recipe"] = "0ld"
        first = collect(grid, tmp_path / name, tmp_path / "assets", previous=stale)
        kept = first["earlier"]["shapes-ve"]["low1"]["mad"] if name == "mad" else first["earlier"]["clip"]
        assert [r["seed"] for r in kept["runs"]] == [runs[0]["seed"]] and kept["runs"][0]["why"]
        if name == "mcad":
            assert [r["seed"] for r in first["rows"]["clip"]["runs"]] == [1, 2]
        again = collect(grid, tmp_path / name, tmp_path / "assets", previous=json.loads(json.dumps(first)))
        assert again == json.loads(json.dumps(first))


def test_mcad_records_from_before_digests_are_earlier_for_the_leaky_gallery_and_shown_below_the_line(tmp_path):
    """The MCAD grid's undigested records were measured on the leaky gallery: its reason reaches each record and
    the retrieval table prints them below the marked line, after the current rows."""
    grid = get_grid("mcad")
    digest = {r.seed: r.recipe_digest for r in grid.runs() if r.row == "clip"}
    previous = {
        "teachers": {},
        "rows": {
            "clip": {
                "runs": [_retrieval_record(0.96, 0, recipe=digest[0]), _retrieval_record(0.94, 1, recipe=digest[1])]
            },
            "mcad-scalar": {"runs": [_retrieval_record(0.90, 0), _retrieval_record(0.92, 1)]},  # no digest
        },
    }
    got = collect(grid, tmp_path / "runs", tmp_path / "assets", previous=previous)
    assert list(got["rows"]) == ["clip"] and list(got["earlier"]) == ["mcad-scalar"]
    assert {r["why"] for r in got["earlier"]["mcad-scalar"]["runs"]} == {"the leaky gallery"}
    lines = results_table(grid, got).splitlines()
    marker = next(i for i, line in enumerate(lines) if EARLIER_NOTE in line)
    clip = next(i for i, line in enumerate(lines) if line.startswith("| student `clip` | 2 | 95.0 ± 1.4 |"))
    assert clip < marker and lines[marker + 1].startswith("| `mcad-scalar` (the leaky gallery) | 2 | 91.0 ± 1.4 |")
