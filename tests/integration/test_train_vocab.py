"""The training vocabulary beside the weights: a training run writes it, and every shipped checkpoint has one,
computed from its own recorded training split (`workbench.coverage.recorded_vocabulary`)."""

import json
import re
from pathlib import Path

import pytest

from workbench.api import ask
from workbench.data import load_dataset
from workbench.models.io import TRAIN_VOCAB, load_checkpoint, weights_fingerprint
from workbench.train import TrainConfig, train

ASSETS = Path(__file__).resolve().parents[2] / "assets"
SHIPPED = sorted(p.parent.name for p in ASSETS.glob("*/workbench.json") if "train_config" in p.read_text())


def test_a_training_run_writes_the_words_of_its_training_split(tmp_path):
    cfg = TrainConfig(model="dual", dataset="shapes-ve", out=str(tmp_path / "run"), epochs=1, train_size=64,
                      val_size=16, test_size=16, batch_size=32, warmup_steps=0,
                      size={"hidden_size": 32, "num_layers": 2, "num_heads": 2})  # fmt: skip
    train(cfg, progress=False)
    folder = tmp_path / "run" / "model"
    record = json.loads((folder / TRAIN_VOCAB).read_text())
    data = load_dataset("shapes-ve", "train", 64)
    expected = {w for i in range(64) for w in re.findall(r"[a-z0-9]+", data[i].text)}  # lower-case ASCII hypotheses
    assert set(record["words"]) == expected and record["n_texts"] == 64
    assert record["source"] == {"dataset": "shapes-ve", "split": "train", "size": 64, "recipe": "hard"}
    ck = load_checkpoint(folder)
    assert ck.train_vocab == expected
    assert ask(ck, data[0].images[0], "is the zorble blorping?")["unknown_words"] == ["zorble", "blorping"]


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_checkpoint_records_its_training_words(name):
    folder = ASSETS / name
    record = json.loads((folder / TRAIN_VOCAB).read_text())
    meta = json.loads((folder / "workbench.json").read_text())
    assert record["source"]["dataset"] == meta["train_config"]["dataset"] and record["source"]["split"] == "train"
    vocab = set(record["words"])
    # the test split uses the training templates: its words were all seen in training
    test = load_dataset(meta["train_config"]["dataset"], "test", 100)
    test_words = {w for i in range(len(test)) for w in re.findall(r"[a-z0-9]+", test[i].text.lower())}
    assert test_words <= vocab, test_words - vocab
    if "teacher_fingerprint" in meta:  # the file sits beside the weights; it does not change them
        teacher = Path(meta["train_config"]["teacher"])
        if teacher.parts[0] == "assets" and (ASSETS / teacher.name).is_dir():
            assert weights_fingerprint(ASSETS / teacher.name) == meta["teacher_fingerprint"]
