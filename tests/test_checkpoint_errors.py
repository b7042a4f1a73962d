"""Bad checkpoint folders give one clear CheckpointError naming the problem; nothing is unpickled."""

import json
import shutil

import pytest

from workbench.errors import CheckpointError
from workbench.models import create_model
from workbench.models.io import load_checkpoint, save_checkpoint

LABELS = ["yes", "no", "red"]


@pytest.fixture()
def good(tmp_path, tokenizer, tiny_size):
    model = create_model("fusion", len(tokenizer), len(LABELS), **tiny_size)
    return save_checkpoint(model, tokenizer, tmp_path / "good", {"task": "vqa", "labels": LABELS})


def _copy(good, tmp_path, name="bad"):
    dest = tmp_path / name
    shutil.copytree(good, dest)
    return dest


def test_good_folder_loads(good):
    assert load_checkpoint(good).labels == LABELS


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")


def test_file_instead_of_folder(good):
    with pytest.raises(CheckpointError, match="is a file"):
        load_checkpoint(good / "config.json")


def test_pickle_only_folder_is_refused_without_unpickling(good, tmp_path):
    bad = _copy(good, tmp_path)
    (bad / "model.safetensors").unlink()
    # a pickle that would run code if it were ever loaded
    (bad / "pytorch_model.bin").write_bytes(b"cos\nsystem\n(S'touch /tmp/pwned-by-workbench'\ntR.")
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_checkpoint(bad)


@pytest.mark.parametrize("keep_bytes", [0, 100, 5000])
def test_truncated_weights(good, tmp_path, keep_bytes):
    bad = _copy(good, tmp_path)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[:keep_bytes])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(bad)


def test_corrupted_json(good, tmp_path):
    bad = _copy(good, tmp_path)
    (bad / "workbench.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(bad)


def test_missing_tokenizer(good, tmp_path):
    bad = _copy(good, tmp_path)
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (bad / f).unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match="no tokenizer"):
        load_checkpoint(bad)


def test_label_set_mismatch(good, tmp_path):
    bad = _copy(good, tmp_path)
    meta = json.loads((bad / "workbench.json").read_text())
    meta["labels"] = LABELS + ["extra"]
    (bad / "workbench.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="4 labels"):
        load_checkpoint(bad)


def test_task_and_kind_mismatch(good):
    with pytest.raises(CheckpointError, match="task 'vqa', expected 've'"):
        load_checkpoint(good, task="ve")
    with pytest.raises(CheckpointError, match="fusion model, expected a dual"):
        load_checkpoint(good, kind="dual")


def test_weights_of_another_architecture(good, tmp_path, tokenizer, tiny_size):
    other = save_checkpoint(
        create_model("dual", len(tokenizer), len(LABELS), **tiny_size),
        tokenizer,
        tmp_path / "dual",
        {"task": "vqa", "labels": LABELS},
    )
    bad = _copy(good, tmp_path)
    shutil.copy(other / "model.safetensors", bad / "model.safetensors")
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(bad)


def test_save_is_atomic_and_replaces(good, tokenizer, tiny_size):
    model = create_model("fusion", len(tokenizer), 2, **tiny_size)
    save_checkpoint(model, tokenizer, good, {"task": "vqa", "labels": ["a", "b"]})
    assert load_checkpoint(good).labels == ["a", "b"]
    assert not [p for p in good.parent.iterdir() if p.name.startswith(".")]  # no temp leftovers
