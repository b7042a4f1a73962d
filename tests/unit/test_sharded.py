"""Sharded safetensors folders (`model.safetensors.index.json`): loaded into one state dict, safely."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import ViltConfig, ViltForQuestionAnswering

from workbench.errors import CheckpointError
from workbench.models.sharded import (
    INDEX,
    load_sharded_state_dict,
    load_weights,
    read_index,
    weight_files,
    weights_digest,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> ViltForQuestionAnswering:
    torch.manual_seed(0)
    size = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    config = ViltConfig(vocab_size=100, max_position_embeddings=16, image_size=64, patch_size=32, num_labels=3, **size)
    return ViltForQuestionAnswering(config).eval()


@pytest.fixture
def sharded(model, tmp_path: Path) -> Path:
    model.save_pretrained(tmp_path / "sharded", max_shard_size="50KB")
    return tmp_path / "sharded"


def test_a_sharded_folder_loads_into_the_full_state_dict(model, sharded):
    shards = sorted(p.name for p in sharded.glob("model-*.safetensors"))
    assert len(shards) > 1 and (sharded / INDEX).is_file() and not (sharded / "model.safetensors").exists()
    state = load_sharded_state_dict(sharded)
    expected = model.state_dict()
    assert set(state) == set(expected)
    assert all(torch.equal(state[k], expected[k]) for k in expected)
    assert set(load_weights(sharded)) == set(expected)
    assert [p.name for p in weight_files(sharded)] == shards
    assert sorted(read_index(sharded)) == shards


def test_single_file_folder_and_digest(model, sharded, tmp_path: Path):
    model.save_pretrained(tmp_path / "single")
    single = tmp_path / "single"
    assert [p.name for p in weight_files(single)] == ["model.safetensors"]
    assert set(load_weights(single)) == set(model.state_dict())
    assert len(weights_digest(single)) == 16 and weights_digest(single) != weights_digest(sharded)
    assert weights_digest(tmp_path) is None and weight_files(tmp_path) == []
    with pytest.raises(CheckpointError, match="neither model.safetensors nor"):
        load_weights(tmp_path)


def test_a_digest_is_read_once_and_again_after_the_file_changes(model, tmp_path: Path, monkeypatch):
    """The digest of unchanged weights comes from memory (no second read); weights rewritten since, even of the
    same size with the modification time put back, are hashed again; so is a file changed within
    `RACY_SECONDS`, whose timestamps a rewrite in the same tick would not move."""
    import builtins
    import hashlib
    import os

    from workbench.models import sharded

    folder = tmp_path / "m"
    model.save_pretrained(folder)
    path = folder / "model.safetensors"
    reads = []
    real_open = builtins.open

    def counting_open(f, *a, **k):
        reads.append(str(f))
        return real_open(f, *a, **k)

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(sharded, "RACY_SECONDS", 1e9)  # "just written" whatever the load between save and hash
    first = weights_digest(folder)
    assert weights_digest(folder) == first and reads.count(str(path)) == 2  # just written: not remembered
    monkeypatch.setattr(sharded, "RACY_SECONDS", -1e9)  # as if written long ago
    weights_digest(folder)
    reads.clear()
    assert weights_digest(folder) == first and reads == []  # remembered
    monkeypatch.setattr(builtins, "open", real_open)
    monkeypatch.setattr(sharded, "RACY_SECONDS", 2.0)  # the files below are changed just now

    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # the same size, other bytes
    stat = path.stat()
    replaced = tmp_path / "replaced"
    replaced.write_bytes(bytes(data))
    os.replace(replaced, path)  # how atomic writers save: a new file under the old name
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert weights_digest(folder) == hashlib.sha256(bytes(data)).hexdigest()[:16] != first

    with open(path, "r+b") as f:  # rewritten in place, just now: the same inode, the modification time put back
        f.write(b"\0")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert weights_digest(folder) == hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _edit_index(folder: Path, edit) -> None:
    index = json.loads((folder / INDEX).read_text())
    edit(index["weight_map"])
    (folder / INDEX).write_text(json.dumps(index))


def test_a_missing_shard_is_named(sharded):
    victim = sorted(sharded.glob("model-*.safetensors"))[-1]
    victim.unlink()
    with pytest.raises(CheckpointError, match=victim.name):
        load_weights(sharded)


@pytest.mark.parametrize("target", ["../model-00001-of-00002.safetensors", "/etc/passwd", "pytorch_model.bin",
                                    "sub/model.safetensors"])  # fmt: skip
def test_shards_outside_the_folder_or_not_safetensors_are_refused(sharded, target):
    _edit_index(sharded, lambda wm: wm.__setitem__(next(iter(wm)), target))
    with pytest.raises(CheckpointError, match="shards must be .safetensors files in the folder"):
        load_weights(sharded)


def test_index_and_shard_disagree(sharded):
    def move_one(wm):  # a tensor the index puts in another shard than the one holding it
        names = sorted(set(wm.values()))
        key = next(k for k, v in wm.items() if v == names[0])
        wm[key] = names[1]

    _edit_index(sharded, move_one)
    with pytest.raises(CheckpointError, match="does not hold what"):
        load_weights(sharded)


def test_damaged_index_or_shard(sharded, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(sharded, broken)
    (broken / INDEX).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_weights(broken)
    (broken / INDEX).write_text(json.dumps({"metadata": {}}))
    with pytest.raises(CheckpointError, match="no weight_map"):
        load_weights(broken)
    shard = sorted(sharded.glob("model-*.safetensors"))[0]
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_weights(sharded)


def test_a_sharded_vilt_folder_fills_the_fusion_teacher(model, sharded):
    """What `load_checkpoint` gets once it reads weights through `load_weights`: every teacher parameter."""
    from workbench.models.fusion import FusionTeacher

    teacher = FusionTeacher(model.config, 3, init_positions=False)
    result = teacher.load_state_dict(load_weights(sharded), strict=False)
    assert not [k for k in result.missing_keys if not k.endswith("position_ids")] and not result.unexpected_keys
    assert torch.equal(teacher.classifier[3].weight, model.classifier[3].weight)
