"""`--paraphrase` end to end on the command line: a tiny teacher trained on reworded questions records the flag,
its tokenizer and training vocabulary have the reworded words, `workbench eval --split test-paraphrase` measures
it on the held-out wordings, and a student distilled from it with `--paraphrase` records the flag too."""

from __future__ import annotations

import json

import pytest

from workbench.cli import main
from workbench.data.paraphrase import vocabulary
from workbench.models.io import load_checkpoint

TINY = ["--hidden-size", "32", "--num-layers", "2", "--num-heads", "2"]
STEPS = ["--epochs", "1", "--train-size", "64", "--val-size", "32", "--test-size", "32", "--batch-size", "32",
         "--max-steps", "2", "--warmup-steps", "1", "--no-progress"]  # fmt: skip


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("para") / "teacher"
    argv = ["train", "--dataset", "shapes-vqa", "--model", "fusion", "--out", str(out), *STEPS, *TINY]
    assert main([*argv, "--paraphrase"]) == 0
    return out


def test_a_reworded_run_records_the_flag_and_the_reworded_words(teacher):
    assert json.loads((teacher / "train_config.json").read_text())["paraphrase"] is True
    ck = load_checkpoint(teacher / "model")
    assert ck.meta["train_config"]["paraphrase"] is True
    assert {"picture", "larger", "frequent"} <= set(ck.tokenizer.get_vocab())  # not in the default tokenizer
    record = json.loads((teacher / "model" / "train_vocab.json").read_text())
    assert record["source"]["paraphrase"] == "train" and record["n_texts"] == 64
    assert set(vocabulary("shapes-vqa", "train")) <= set(record["words"])
    assert ck.meta["metrics"]["test"]["n"] == 32  # tested on --test-size examples of the test split


def test_eval_on_the_held_out_rewording(teacher, tmp_path):
    out = tmp_path / "eval.json"
    argv = ["eval", str(teacher / "model"), "--split", "test-paraphrase", "--size", "24", "--out", str(out)]
    assert main(argv) == 0
    metrics = json.loads(out.read_text())
    assert metrics["split"] == "test-paraphrase" and metrics["dataset"] == "shapes-vqa" and metrics["n"] == 24
    # a dataset without reworded texts has no such split: an error message, not a traceback
    assert main([*argv[:-2], "--dataset", "shapes-itm", "--out", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()


def test_a_student_distilled_with_the_flag_trains_on_reworded_text(teacher, tmp_path):
    out = tmp_path / "student"
    argv = ["distill", "--teacher", str(teacher / "model"), "--dataset", "shapes-vqa", "--out", str(out), *STEPS]
    assert main([*argv, "--paraphrase"]) == 0
    ck = load_checkpoint(out / "model")
    assert ck.meta["train_config"]["paraphrase"] is True
    assert ck.tokenizer.get_vocab() == load_checkpoint(teacher / "model").tokenizer.get_vocab()  # the teacher's
    record = json.loads((out / "model" / "train_vocab.json").read_text())
    assert record["source"]["paraphrase"] == "train"
