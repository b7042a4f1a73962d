"""`TrainConfig.paraphrase` (`--paraphrase`): a run's train and val splits are reworded in the training families,
its test split keeps the dataset's wording and the held-out `test-paraphrase` never enters a run; a fresh
tokenizer gets the reworded texts' words (the default one stays the shipped checkpoints'); the recorded training
vocabulary of such a run counts its training templates' words."""

from __future__ import annotations

import json

import pytest

from workbench.cli import build_parser
from workbench.cli.common import train_config
from workbench.coverage import normalise, recorded_vocabulary, words
from workbench.data import load_dataset
from workbench.data.paraphrase import INTENTS, template_of, vocabulary
from workbench.data.vocab import build_tokenizer
from workbench.errors import WorkbenchError
from workbench.models.io import load_checkpoint
from workbench.train import TrainConfig
from workbench.train.supervised import load_split

N = 60
# words of the training families (workbench/data/paraphrase.py) that none of the dataset's own templates uses:
# read off the templates by hand ("what color is the {shape}?", "does the picture contain a ...", "which is
# larger, ...", "which shape is more frequent, ...", "what kind of shape is the {colour} item?")
SHAPES_VQA_TRAIN_ONLY = {"color", "picture", "larger", "frequent", "item", "kind"}
HELD_OUT = {t for intents in INTENTS.values() for intent in intents for t in intent.held_out}


def _cfg(tmp_path, dataset="shapes-vqa", **kw) -> TrainConfig:
    return TrainConfig(dataset=dataset, out=str(tmp_path / "run"), **kw)


@pytest.mark.parametrize("dataset", ["shapes-vqa", "shapes-ve", "shapes-nlvr"])
@pytest.mark.parametrize("split", ["train", "val"])
def test_the_flag_rewords_train_and_val_in_training_families_only(tmp_path, dataset, split):
    got = load_split(_cfg(tmp_path, dataset, paraphrase=True), split, N)
    own = load_dataset(dataset, split, N)
    changed = 0
    for i in range(N):
        a, b = got[i], own[i]
        assert (a.label, a.qtype) == (b.label, b.qtype)  # the scene and its answer are the example's
        _, group, template = template_of(a.text, dataset)
        assert group in ("original", "train") and template not in HELD_OUT, a.text
        changed += a.text != b.text
    # every meaning has 1 original wording and 4 or 5 training ones: about 80% of the texts change
    assert changed >= N // 2, changed


@pytest.mark.parametrize("dataset", ["shapes-vqa", "shapes-ve", "shapes-nlvr"])
def test_the_test_split_keeps_the_datasets_wording_with_or_without_the_flag(tmp_path, dataset):
    own = [load_dataset(dataset, "test", N)[i].text for i in range(N)]
    for flag in (True, False):
        got = load_split(_cfg(tmp_path, dataset, paraphrase=flag), "test", N)
        assert [got[i].text for i in range(N)] == own
    off = load_split(_cfg(tmp_path, dataset), "train", N)
    assert [off[i].text for i in range(N)] == [load_dataset(dataset, "train", N)[i].text for i in range(N)]


def test_easy_vqa_training_questions_are_reworded_too(tmp_path):
    got = load_split(_cfg(tmp_path, "easy-vqa", paraphrase=True), "train", None)
    own = load_dataset("easy-vqa", "train", None)
    texts = [item[0] for item in got.items]
    assert len(texts) == len(own.items)
    assert sum(a != b[0] for a, b in zip(texts, own.items)) > len(texts) // 2
    assert all(template_of(t, "easy-vqa")[1] != "held-out" for t in texts)


@pytest.mark.parametrize("split", ["test-paraphrase", "val-paraphrase"])
def test_no_run_ever_reads_the_held_out_splits(tmp_path, split):
    for flag in (True, False):
        with pytest.raises(WorkbenchError, match="held-out"):
            load_split(_cfg(tmp_path, paraphrase=flag), split, 10)


def test_word_dropout_reaches_the_training_split_only(tmp_path):
    cfg = _cfg(tmp_path, paraphrase=True, word_dropout=0.3)
    plain = _cfg(tmp_path, paraphrase=True)
    train, train_plain = load_split(cfg, "train", N), load_split(plain, "train", N)
    assert sum(len(train[i].text) < len(train_plain[i].text) for i in range(N)) > N // 2
    for split in ("val", "test"):
        got, want = load_split(cfg, split, N), load_split(plain, split, N)
        assert [got[i].text for i in range(N)] == [want[i].text for i in range(N)]


def test_word_dropout_needs_reworded_text_and_a_probability(tmp_path):
    with pytest.raises(WorkbenchError, match="paraphrase"):
        _cfg(tmp_path, word_dropout=0.1)
    for bad in (-0.1, 1.0):
        with pytest.raises(WorkbenchError, match="probability"):
            _cfg(tmp_path, paraphrase=True, word_dropout=bad)


def test_only_datasets_with_reworded_texts_take_the_flag(tmp_path):
    for dataset in ("shapes-itm", "shapes-retrieval", "vqav2"):
        with pytest.raises(WorkbenchError, match="no reworded texts"):
            _cfg(tmp_path, dataset, paraphrase=True)


def test_the_command_line_flag_reaches_the_config_and_old_configs_read_as_off(tmp_path):
    for command in ("train", "distill"):
        base = [command, "--dataset", "shapes-vqa", "--out", str(tmp_path / "o")]
        assert train_config(build_parser(command).parse_args([*base, "--paraphrase"])).paraphrase is True
        assert train_config(build_parser(command).parse_args(base)).paraphrase is False
    saved = tmp_path / "train_config.json"
    saved.write_text(json.dumps({"dataset": "shapes-vqa", "out": "x"}))  # a run from before the field existed
    assert TrainConfig.from_json(saved).paraphrase is False


def test_the_paraphrase_tokenizer_extends_the_default_one_and_is_the_shipped_one():
    default, extended = build_tokenizer().get_vocab(), build_tokenizer(paraphrase=True).get_vocab()
    # the shipped checkpoints are trained on reworded text (their recipes set paraphrase): theirs, id for id
    assert extended == load_checkpoint("assets/shapes-vqa-teacher").tokenizer.get_vocab()
    assert all(extended[w] == i for w, i in default.items())  # appended: every default id is kept
    assert set(vocabulary()) <= set(extended)
    assert SHAPES_VQA_TRAIN_ONLY - {"color"} <= set(extended) - set(default)  # easy-VQA writes "color" already
    question = "does the picture contain a grey item?"
    assert not [t for t in build_tokenizer(paraphrase=True).tokenize(question) if t.startswith("##")]
    assert "##c" in build_tokenizer().tokenize(question)  # the default one reads "picture" letter by letter


def _checkpoint(tmp_path, paraphrase: bool):
    folder = tmp_path / ("para" if paraphrase else "plain")
    folder.mkdir()
    config = {"dataset": "shapes-vqa", "train_size": 40, **({"paraphrase": True} if paraphrase else {})}
    (folder / "workbench.json").write_text(json.dumps({"dataset": "shapes-vqa", "recipe": "hard",
                                                       "train_config": config}))  # fmt: skip
    return folder


def test_the_recorded_vocabulary_of_a_reworded_run_counts_its_training_templates(tmp_path):
    para, plain = recorded_vocabulary(_checkpoint(tmp_path, True)), recorded_vocabulary(_checkpoint(tmp_path, False))
    assert para["source"]["paraphrase"] == "train" and "paraphrase" not in plain["source"]
    assert set(vocabulary("shapes-vqa", "train")) <= set(para["words"])
    assert not SHAPES_VQA_TRAIN_ONLY & set(plain["words"])
    # the words of the 40 reworded training texts themselves are in it too
    texts = [load_dataset("shapes-vqa", "train", 40, paraphrase="train")[i].text for i in range(40)]
    assert {normalise(w) for t in texts for w in words(t)} <= set(para["words"])
    question = "what is the color of the item in the picture?"  # `ask` reports no unknown word for this run
    assert [w for w in words(question) if normalise(w) not in para["words"]] == []
    assert {"color", "item", "picture"} <= {w for w in words(question) if normalise(w) not in plain["words"]}


def test_train_wide_families_reach_train_and_val_and_the_recorded_vocabulary(tmp_path):
    cfg = _cfg(tmp_path, paraphrase=True, paraphrase_families="train-wide")
    assert cfg.rewording == "train-wide" and _cfg(tmp_path, paraphrase=True).rewording == "train"
    with pytest.raises(WorkbenchError, match="give --paraphrase too"):  # not silently the dataset's own wording
        _cfg(tmp_path, paraphrase_families="train-wide")
    for split in ("train", "val"):
        got = load_split(cfg, split, 200)
        groups = {template_of(got[i].text, "shapes-vqa")[1] for i in range(200)}
        assert "wider" in groups and groups <= {"original", "train", "wider"}, split
    test = load_split(cfg, "test", N)
    assert [test[i].text for i in range(N)] == [load_dataset("shapes-vqa", "test", N)[i].text for i in range(N)]
    args = ["train", "--dataset", "shapes-vqa", "--out", str(tmp_path / "o"), "--paraphrase"]
    parsed = build_parser("train").parse_args([*args, "--paraphrase-families", "train-wide"])
    assert train_config(parsed).rewording == "train-wide"


def test_train_wide_needs_a_dataset_with_wider_rewordings_and_a_known_name(tmp_path):
    with pytest.raises(WorkbenchError, match="no train-wide rewordings"):
        _cfg(tmp_path, "shapes-ve", paraphrase=True, paraphrase_families="train-wide")
    with pytest.raises(WorkbenchError, match="paraphrase_families"):
        _cfg(tmp_path, paraphrase=True, paraphrase_families="held-out")
