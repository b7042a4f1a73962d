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


def _side_effect_pickle(marker) -> bytes:
    """A pickle whose loading creates `marker` (it calls `open(marker, "w")`): loading it leaves a trace."""
    return f"cbuiltins\nopen\n(S'{marker}'\nS'w'\ntR.".encode()


def test_pickle_only_folder_is_refused_without_unpickling(good, tmp_path, monkeypatch):
    import pickle

    import torch

    control = tmp_path / "control"
    pickle.loads(_side_effect_pickle(control)).close()  # the payload does leave its trace when unpickled
    assert control.exists()
    bad = _copy(good, tmp_path)
    (bad / "model.safetensors").unlink()
    marker = tmp_path / "unpickled"
    for name in ("pytorch_model.bin", "model.pt"):
        (bad / name).write_bytes(_side_effect_pickle(marker))
    calls = []

    def record(*args, **kwargs):
        calls.append(args)
        raise AssertionError("a checkpoint load tried to unpickle something")

    for module, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(module, name, record)
    with pytest.raises(
        CheckpointError, match="holds only pickle weights .*model.pt, pytorch_model.bin.*never unpickles"
    ):
        load_checkpoint(bad)
    assert calls == [] and not marker.exists()


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


# ---------------------------------------------------------------------------------------------
# only safetensors and JSON are read: pickles next to the weights are never opened, code never runs


def _never(*args, **kwargs):
    raise AssertionError("a checkpoint load tried to unpickle something")


def test_pickle_next_to_safetensors_is_never_opened(good, tmp_path, monkeypatch):
    import pickle

    import torch

    bad = _copy(good, tmp_path)
    marker = tmp_path / "pwned"
    payload = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    for name in ("pytorch_model.bin", "model.pt", "optimizer.pkl", "training_args.bin"):
        (bad / name).write_bytes(payload)
    for module, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(module, name, _never)
    ck = load_checkpoint(bad)
    assert ck.labels == LABELS
    assert not marker.exists()


def test_tokenizer_code_in_the_folder_never_runs(good, tmp_path):
    """A tokenizer_config.json pointing at a Python file in the folder (`auto_map`): the file is never
    imported (trust_remote_code=False); the folder's tokenizer.json loads as a plain tokenizer."""
    bad = _copy(good, tmp_path)
    marker = tmp_path / "imported"
    (bad / "tokenization_evil.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nfrom transformers import BertTokenizer\n"
        "class EvilTokenizer(BertTokenizer):\n    pass\n"
    )
    config = json.loads((bad / "tokenizer_config.json").read_text())
    config["tokenizer_class"] = "EvilTokenizer"
    config["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
    (bad / "tokenizer_config.json").write_text(json.dumps(config))
    try:
        ck = load_checkpoint(bad)
    except CheckpointError as e:
        assert "tokenizer" in str(e)
    else:
        assert type(ck.tokenizer).__name__ != "EvilTokenizer"
        assert ck.tokenizer("is there a red circle?")["input_ids"]
    assert not marker.exists()


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: bytes(len(data)),  # zeroed
        lambda data: b"\xff" * 8 + data[8:],  # a header length of 2**64 - 1
        lambda data: data[:8] + b"[" + data[9:],  # the JSON header broken
        lambda data: data[:8] + data[8:].replace(b'"F32"', b'"I64"', 1),  # a tensor's dtype changed
        lambda data: data + b"trailing garbage",
    ],
    ids=["zeroed", "huge-header", "bad-header-json", "wrong-dtype", "trailing-bytes"],
)
def test_corrupted_weights(good, tmp_path, damage):
    bad = _copy(good, tmp_path)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(damage(data))
    with pytest.raises(CheckpointError, match="truncated or corrupted|does not fit"):
        load_checkpoint(bad)


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("labels", "yes", "'labels'"),
        ("labels", [1, 2, 3], "'labels'"),
        ("kind", 3, "'kind'"),
        ("task", None, "'task'"),
        ("num_images", "two", "'num_images'"),
        ("num_images", 7, "'num_images'"),
    ],
)
def test_fields_of_the_wrong_type(good, tmp_path, field, value, match):
    bad = _copy(good, tmp_path)
    meta = json.loads((bad / "workbench.json").read_text())
    meta[field] = value
    (bad / "workbench.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(bad)


@pytest.mark.parametrize("content", [b"\x80\x81 not utf-8", b"[1, 2]", b'"a string"'])
def test_json_that_is_not_an_object(good, tmp_path, content):
    bad = _copy(good, tmp_path)
    (bad / "config.json").write_bytes(content)
    with pytest.raises(CheckpointError, match="config.json"):
        load_checkpoint(bad)


def test_config_of_the_wrong_shape(good, tmp_path):
    bad = _copy(good, tmp_path)
    config = json.loads((bad / "config.json").read_text())
    config["hidden_size"] = "wide"
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="config.json"):
        load_checkpoint(bad)


def test_distilling_from_a_teacher_of_another_label_set_is_refused(good, tmp_path):
    from workbench.methods import distill
    from workbench.train import TrainConfig

    cfg = TrainConfig(dataset="shapes-vqa", out=str(tmp_path / "student"), teacher=str(good), recipe="dide")
    with pytest.raises(CheckpointError, match=r"predicts 3 labels .*shapes-vqa has \d+"):
        distill(cfg, progress=False)
    assert not (tmp_path / "student").exists()  # refused before anything was written


def test_damaged_training_state_is_a_clear_error(tmp_path, tokenizer, tiny_size):
    import torch

    from workbench.train import load_state, save_state

    model = create_model("fusion", len(tokenizer), len(LABELS), **tiny_size)
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    model(torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 4), torch.zeros(1, 1, 3, 64, 64)).logits.sum().backward()
    opt.step()
    save_state(tmp_path / "state", model, opt, sched, {"epoch": 0, "step_in_epoch": 1, "global_step": 1})
    assert load_state(tmp_path / "state", model, opt, sched)["global_step"] == 1
    data = (tmp_path / "state" / "optimizer.safetensors").read_bytes()
    (tmp_path / "state" / "optimizer.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot resume"):
        load_state(tmp_path / "state", model, opt, sched)
