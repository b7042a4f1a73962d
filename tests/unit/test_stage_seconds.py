"""A run in stages (`dide-pt`: its matching stage in <out>/pretrain, then the task) counts its whole training time
in its final model's metadata, and a shipped copy keeps it: the results file's minutes read the same from a run
folder and from assets/ on a fresh clone."""

import json
import os
from dataclasses import replace

from workbench.cli.rebuild import ship
from workbench.train import TrainConfig
from workbench.train.stages import STAGE_DIR, earlier_stage_seconds


def _model(folder, **meta):
    folder.mkdir(parents=True)
    (folder / "workbench.json").write_text(json.dumps({"train_seconds": 10.0, **meta}))
    return folder


def test_only_the_runs_own_earlier_stage_counts(tmp_path):
    out = tmp_path / "run"
    stage = _model(out / STAGE_DIR / "model", train_seconds=12.5, earlier_stage_seconds=2.0)
    cfg = TrainConfig(dataset="shapes-vqa", out=str(out))
    assert earlier_stage_seconds(cfg) == 0.0  # no init_from
    assert earlier_stage_seconds(replace(cfg, init_from=str(stage))) == 14.5  # its own stage, with that one's
    # fine-tuning from another run's model, or from a checkpoint of this run that is not its stage, adds nothing
    other = _model(tmp_path / "other" / "model", train_seconds=99.0)
    inside = _model(out / "model-copy", train_seconds=99.0)
    assert earlier_stage_seconds(replace(cfg, init_from=str(other))) == 0.0
    assert earlier_stage_seconds(replace(cfg, init_from=str(inside))) == 0.0
    # a relative --out names the same stage
    rel = TrainConfig(dataset="shapes-vqa", out="run", init_from=f"run/{STAGE_DIR}/model")
    here = os.getcwd()
    try:
        os.chdir(tmp_path)
        assert earlier_stage_seconds(rel) == 14.5
    finally:
        os.chdir(here)


def test_shipping_a_stage_model_of_before_the_field_fills_it_from_the_run(tmp_path):
    run = tmp_path / "run"
    _model(run / STAGE_DIR / "model", train_seconds=12.5)
    _model(run / "model", train_seconds=20.0)
    ship(run / "model", tmp_path / "assets" / "student")
    assert json.loads((tmp_path / "assets" / "student" / "workbench.json").read_text())["earlier_stage_seconds"] == 12.5
    # a model that records it keeps its own figure; a run without stages gets none
    (run / "model" / "workbench.json").write_text(json.dumps({"train_seconds": 20.0, "earlier_stage_seconds": 3.0}))
    ship(run / "model", tmp_path / "assets" / "student")
    assert json.loads((tmp_path / "assets" / "student" / "workbench.json").read_text())["earlier_stage_seconds"] == 3.0
    _model(tmp_path / "plain" / "model", train_seconds=20.0)
    ship(tmp_path / "plain" / "model", tmp_path / "assets" / "plain")
    assert "earlier_stage_seconds" not in json.loads((tmp_path / "assets" / "plain" / "workbench.json").read_text())
