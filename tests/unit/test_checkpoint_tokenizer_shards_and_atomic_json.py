"""Checkpoint folders as they come: how the tokenizer is found and loaded (a BERT tokenizer directly, anything else
through AutoTokenizer, a bare vocab.txt, offline and without the folder's code), sharded weights, a pre-training
head without a pooler, damaged JSON named by its type, and JSON written atomically (across filesystems too, and
without a visible leftover when the write fails)."""

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, BertTokenizer, ViltConfig, ViltForQuestionAnswering, ViltForTokenClassification

from workbench.errors import CheckpointError
from workbench.models import create_model
from workbench.models.io import load_checkpoint, read_tokenizer, save_checkpoint, write_json_atomic

pytestmark = pytest.mark.usefixtures("one_thread")

LABELS = ["yes", "no", "red"]
QUESTION = "is there a red circle?"


@pytest.fixture()
def fusion(tmp_path, tokenizer, tiny_size):
    model = create_model("fusion", len(tokenizer), len(LABELS), **tiny_size)
    return save_checkpoint(model, tokenizer, tmp_path / "fusion", {"task": "vqa", "labels": LABELS})


@pytest.fixture()
def dual(tmp_path, tokenizer, tiny_size):
    model = create_model("dual", len(tokenizer), len(LABELS), **tiny_size)
    return save_checkpoint(model, tokenizer, tmp_path / "dual", {"task": "vqa", "labels": LABELS})


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture()
def transformers_warnings():
    """The messages transformers logs at WARNING and above while the test runs."""
    logger = logging.getLogger("transformers")
    handler, level = Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    yield handler.messages
    logger.removeHandler(handler)
    logger.setLevel(level)


# ---------------------------------------------------------------------------------------------- the tokenizer


def test_a_bert_tokenizer_loads_directly_without_reading_our_model_config(dual, tokenizer, transformers_warnings):
    """Our folders name `BertTokenizer` in tokenizer_config.json: it loads as one, and transformers never reads the
    model's config.json (AutoTokenizer would, and warn that it does not know the model type `workbench-dual`)."""
    AutoTokenizer.from_pretrained(str(dual), local_files_only=True)
    assert any("workbench-dual" in m for m in transformers_warnings)  # the warning the direct load avoids
    transformers_warnings.clear()
    ck = load_checkpoint(dual)
    assert type(ck.tokenizer) is BertTokenizer
    assert ck.tokenizer(QUESTION)["input_ids"] == tokenizer(QUESTION)["input_ids"]
    assert not [m for m in transformers_warnings if "model of type" in m]


def test_a_tokenizer_config_without_a_class_loads_through_autotokenizer(fusion, tokenizer):
    _edit_json(fusion / "tokenizer_config.json", lambda c: c.pop("tokenizer_class"))
    ck = load_checkpoint(fusion)
    assert ck.tokenizer(QUESTION)["input_ids"] == tokenizer(QUESTION)["input_ids"]


def _vocab_only(folder: Path, tokenizer) -> Path:
    """`folder`'s tokenizer as a bare vocab.txt (an older or hand-made HF folder): no tokenizer.json or config."""
    vocab = tokenizer.get_vocab()
    (folder / "vocab.txt").write_text("\n".join(sorted(vocab, key=vocab.get)) + "\n")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    return folder


def test_a_folder_with_only_a_vocab_txt_loads_its_tokenizer(fusion, tokenizer):
    folder = _vocab_only(fusion, tokenizer)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["config.json", "model.safetensors", "vocab.txt", "workbench.json"]
    ids = tokenizer(QUESTION)["input_ids"]
    assert load_checkpoint(folder).tokenizer(QUESTION)["input_ids"] == ids
    assert read_tokenizer(folder)(QUESTION)["input_ids"] == ids


def test_a_folder_without_tokenizer_files_reads_as_no_tokenizer(fusion):
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (fusion / name).unlink()
    assert read_tokenizer(fusion) is None


@pytest.mark.parametrize("value", [True, [512], "512"])
def test_a_model_max_length_that_is_not_a_whole_number_is_refused(fusion, value):
    _edit_json(fusion / "tokenizer_config.json", lambda c: c.update(model_max_length=value))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(fusion)
    assert str(e.value) == f"could not load the tokenizer in {fusion}: model_max_length {value!r} is not a whole number"


def test_the_tokenizer_is_read_offline_without_folder_code_and_tried_on_a_question(fusion, dual, monkeypatch):
    """Both loaders get local_files_only=True (never the network) and trust_remote_code=False (never code from the
    folder); the tokenizer is then tried on a question, truncated at 16 tokens, so a setting that loads but cannot
    tokenize fails at load."""
    loads, calls = [], []
    for cls in (BertTokenizer, AutoTokenizer):
        original = cls.from_pretrained.__func__

        def spy(klass, path, *args, _original=original, **kwargs):
            loads.append((klass.__name__, kwargs))
            return _original(klass, path, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    original_call = BertTokenizer.__call__

    def call(self, *args, **kwargs):
        calls.append((args, kwargs))
        return original_call(self, *args, **kwargs)

    monkeypatch.setattr(BertTokenizer, "__call__", call)
    load_checkpoint(dual)
    _edit_json(fusion / "tokenizer_config.json", lambda c: c.pop("tokenizer_class"))
    load_checkpoint(fusion)  # through AutoTokenizer
    offline = {"local_files_only": True, "trust_remote_code": False}
    assert loads[0] == ("BertTokenizer", offline) and ("AutoTokenizer", offline) in loads
    assert [c for c in loads if c[0] == "AutoTokenizer"] == [("AutoTokenizer", offline)]
    assert calls[0] == ((QUESTION,), {"truncation": True, "max_length": 16})


# ---------------------------------------------------------------------------------------------- weights


def _vilt_folder(model, tokenizer, folder: Path, **save) -> Path:
    model.save_pretrained(folder, **save)
    tokenizer.save_pretrained(folder)
    return folder


def _tiny_vilt_config(tokenizer, **kw) -> ViltConfig:
    size = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    return ViltConfig(vocab_size=len(tokenizer), max_position_embeddings=16, image_size=64, patch_size=32, **size, **kw)


def test_a_sharded_hf_vilt_folder_loads_and_a_misfit_names_the_index(tmp_path, tokenizer):
    torch.manual_seed(0)
    config = _tiny_vilt_config(tokenizer, num_labels=3, id2label={0: "a", 1: "b", 2: "c"})
    hf = ViltForQuestionAnswering(config).eval()
    folder = _vilt_folder(hf, tokenizer, tmp_path / "sharded", max_shard_size="50KB")
    assert not (folder / "model.safetensors").exists() and (folder / "model.safetensors.index.json").exists()
    ck = load_checkpoint(folder)
    assert ck.labels == ["a", "b", "c"]
    assert torch.equal(ck.model.classifier[3].weight, hf.classifier[3].weight)
    _edit_json(folder / "config.json", lambda c: c.update(intermediate_size=48))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(folder)
    assert str(e.value).startswith(f"{folder / 'model.safetensors.index.json'} does not fit the fusion model")


def test_a_pretraining_head_without_a_pooler_loads_as_a_start_with_a_fresh_pooler(tmp_path, tokenizer):
    """ViltForTokenClassification has no pooler: as a starting point (`for_init`) its encoder is kept and the pooler,
    like the classifier, is left fresh instead of being reported missing."""
    torch.manual_seed(1)
    hf = ViltForTokenClassification(_tiny_vilt_config(tokenizer, num_labels=5))
    folder = _vilt_folder(hf, tokenizer, tmp_path / "token-classification")
    ck = load_checkpoint(folder, for_init=True)
    assert ck.meta["head"] == "ViltForTokenClassification" and ck.labels == []
    weight = ck.model.vilt.embeddings.text_embeddings.word_embeddings.weight
    assert torch.equal(weight, hf.vilt.embeddings.text_embeddings.word_embeddings.weight)


def test_a_load_leaves_the_random_generator_where_it_was(fusion, tokenizer, tmp_path):
    """Building a model draws random numbers (a fresh teacher its image positions and [CLS] token too); a load
    does not move the generator, since the folder's weights replace them. So what a seeded run draws after loading
    a teacher (its student, say) does not depend on the teacher. Also for a pre-training head, whose fresh
    classifier is initialised."""
    from workbench.models.fusion import FusionTeacher

    config = ViltConfig.from_dict(json.loads((fusion / "config.json").read_text()))
    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    FusionTeacher(config, len(LABELS), 1, init_positions=False)
    assert not torch.equal(torch.rand(4), expected)  # building does move the generator
    hf = _vilt_folder(ViltForTokenClassification(_tiny_vilt_config(tokenizer, num_labels=5)), tokenizer, tmp_path)
    for folder, for_init in ((fusion, False), (hf, True)):
        torch.manual_seed(0)
        load_checkpoint(folder, for_init=for_init)
        assert torch.equal(torch.rand(4), expected), folder


# ---------------------------------------------------------------------------------------------- damaged JSON


@pytest.mark.parametrize("content,kind", [("[1, 2]", "list"), ('"a string"', "str"), ("3", "int")])
def test_json_that_is_not_an_object_is_named_by_its_type(fusion, content, kind):
    (fusion / "config.json").write_text(content)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(fusion)
    assert str(e.value) == f"{fusion / 'config.json'} holds a JSON {kind}, not an object; the folder is damaged"


# ---------------------------------------------------------------------------------------------- atomic JSON


def test_atomic_json_lands_on_another_filesystem_than_the_temporary_folder():
    """The temporary file is made beside the target, so the final rename never crosses filesystems (here: /dev/shm,
    a tmpfs, against the system's temporary folder on the root filesystem)."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tempfile.gettempdir()).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the temporary folder")
    folder = Path(tempfile.mkdtemp(dir=shm, prefix="workbench-test-"))
    try:
        write_json_atomic(folder / "metrics.json", {"accuracy": 0.5, "n": [1, 2]})
        assert json.loads((folder / "metrics.json").read_text()) == {"accuracy": 0.5, "n": [1, 2]}
        assert sorted(p.name for p in folder.iterdir()) == ["metrics.json"]
        assert oct((folder / "metrics.json").stat().st_mode & 0o777) == "0o644"
    finally:
        shutil.rmtree(folder)


class Watching:
    """A tokenizer whose `save_pretrained` first records the folder it is given and what the checkpoint's parent
    folder shows at that moment (the save is then half done)."""

    def __init__(self, tokenizer, parent: Path):
        self.tokenizer, self.parent, self.seen = tokenizer, parent, {}

    def save_pretrained(self, folder):
        visible = sorted(p.name for p in self.parent.iterdir() if not p.name.startswith("."))
        self.seen = {"folder": Path(folder), "visible": visible}
        return self.tokenizer.save_pretrained(folder)


def test_a_checkpoint_being_written_is_hidden_beside_its_final_place(tmp_path, tokenizer, tiny_size):
    """Half-written, a checkpoint is a hidden folder next to where it lands (a listing of the runs never shows it),
    then renamed into place."""
    (tmp_path / "runs").mkdir()
    watching = Watching(tokenizer, tmp_path / "runs")
    model = create_model("fusion", len(tokenizer), len(LABELS), **tiny_size)
    save_checkpoint(model, watching, tmp_path / "runs" / "teacher", {"task": "vqa", "labels": LABELS})
    assert watching.seen["visible"] == [] and watching.seen["folder"].parent == tmp_path / "runs"
    assert watching.seen["folder"].name.startswith(".teacher.tmp-")
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["teacher"]
    assert load_checkpoint(tmp_path / "runs" / "teacher").labels == LABELS


def test_a_checkpoint_saves_to_another_filesystem_than_the_temporary_folder(tokenizer, tiny_size):
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tempfile.gettempdir()).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the temporary folder")
    folder = Path(tempfile.mkdtemp(dir=shm, prefix="workbench-test-"))
    try:
        model = create_model("fusion", len(tokenizer), len(LABELS), **tiny_size)
        save_checkpoint(model, tokenizer, folder / "teacher", {"task": "vqa", "labels": LABELS})
        assert sorted(p.name for p in folder.iterdir()) == ["teacher"]
        assert load_checkpoint(folder / "teacher").labels == LABELS
    finally:
        shutil.rmtree(folder)


def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_nothing_visible(tmp_path):
    target = tmp_path / "metrics.json"
    write_json_atomic(target, {"accuracy": 0.5})
    with pytest.raises(TypeError):
        write_json_atomic(target, {"accuracy": 0.75, "model": object()})  # not JSON: fails half-way
    assert json.loads(target.read_text()) == {"accuracy": 0.5}
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["metrics.json"]
