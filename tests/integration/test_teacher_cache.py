"""The teacher's outputs on disk (`workbench.methods.teacher_cache`): a cached run follows the uncached run (to
float rounding: the teacher's outputs for an example change in their last bits with the batch it is padded in)
and never runs the teacher again on examples it has; entries do not depend on how a batch was padded."""

import json

import pytest
import torch

from workbench.methods import distill, get_method
from workbench.methods.teacher_cache import TeacherOutputCache, assemble, cache_key_batch, entry_of, teacher_outputs
from workbench.models import create_model
from workbench.models.io import load_checkpoint, save_checkpoint
from workbench.train import TrainConfig

TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2}


@pytest.fixture(scope="module")
def teacher_folder(tmp_path_factory, tokenizer):
    from workbench.data import load_dataset

    folder = tmp_path_factory.mktemp("teacher") / "t"
    labels = list(load_dataset("shapes-vqa", "val", 1).labels)
    torch.manual_seed(0)
    model = create_model("fusion", len(tokenizer), len(labels), **TINY)
    save_checkpoint(model, tokenizer, folder, {"task": "vqa", "labels": labels})
    return folder


def _run(tmp_path, teacher, name, cache=None, epochs=2):
    cfg = TrainConfig(dataset="shapes-vqa", out=str(tmp_path / name), teacher=str(teacher), recipe="dide",
                      train_size=32, val_size=8, test_size=8, batch_size=16, epochs=epochs, warmup_steps=1,
                      log_every=1)  # fmt: skip
    distill(cfg, get_method("dide").config(teacher_cache=cache), progress=False)
    return load_checkpoint(tmp_path / name / "model").model.state_dict()


def test_a_cached_run_is_the_uncached_run_and_skips_the_teacher_after_its_first_epoch(
    teacher_folder, tmp_path, monkeypatch
):
    from workbench.models.fusion import FusionTeacher

    plain = _run(tmp_path, teacher_folder, "plain")
    calls = []
    forward = FusionTeacher.forward
    monkeypatch.setattr(FusionTeacher, "forward", lambda self, *a, **k: calls.append(k.get("qk_layers"))
                        or forward(self, *a, **k))  # fmt: skip
    cached = _run(tmp_path, teacher_folder, "cached", cache=str(tmp_path / "cache"))
    training_calls = [c for c in calls if c]  # evaluation calls the student only; the teacher's have qk layers
    assert len(training_calls) == 2  # epoch 1: two steps of 16; epoch 2: both batches from disk
    for name in plain:
        torch.testing.assert_close(plain[name], cached[name], atol=1e-4, rtol=1e-4)

    def logged(name):  # every step's soft-label and attention losses: the teacher's targets, step by step
        lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        return [v for r in map(json.loads, lines) if "t2i" in r for v in (r["soft"], r["t2i"], r["i2t"])]

    assert len(logged("plain")) == 12 and logged("cached") == pytest.approx(logged("plain"), rel=1e-5)
    shards = list((tmp_path / "cache").rglob("shard-*.safetensors"))
    assert shards and not list((tmp_path / "cache").rglob("*.tmp"))
    recorded = json.loads((tmp_path / "cached" / "model" / "workbench.json").read_text())
    assert recorded["train_config"]["recipe_args"]["teacher_cache"] == str(tmp_path / "cache")

    # a second run over the same data (another seed of a grid) never runs the teacher
    calls.clear()
    _run(tmp_path, teacher_folder, "again", cache=str(tmp_path / "cache"), epochs=1)
    assert not [c for c in calls if c]


def test_entries_are_independent_of_the_batch_padding(real_fixtures, tmp_path, tokenizer):
    """Non-square images in padded batches (a HF ViLT folder): an example's cached scores, put back into
    another batch's padding, equal the teacher's scores in that batch at every real position."""
    from workbench.data import Collator, load_dataset
    from workbench.data.fixtures import save_tiny_vilt

    data = load_dataset("vqav2", "train", 8, data_root=real_fixtures["vqav2"])
    ck = load_checkpoint(save_tiny_vilt(tmp_path / "vilt", tokenizer, data.labels))
    collate = Collator.for_checkpoint(ck)
    big = collate([data[i] for i in range(8)])
    small = collate([data[i] for i in (5, 2)])
    assert big.pixel_mask is not None
    with torch.no_grad():
        out_big = ck.model(big.input_ids, big.attention_mask, big.pixel_values, qk_layers=(-1,),
                           pixel_mask=big.pixel_mask)  # fmt: skip
        t_big = teacher_outputs(ck.model, big, (-1,))
        t_small = teacher_outputs(ck.model, small, (-1,))
        out_small = ck.model(small.input_ids, small.attention_mask, small.pixel_values, pixel_mask=small.pixel_mask)
    entries = [entry_of(t_big, big, i, out_big.image_masks) for i in range(8)]
    assert cache_key_batch(big)[5] == cache_key_batch(small)[0]  # the key ignores the padding
    again = assemble([entries[5], entries[2]], small, out_small.image_masks, n_images=1, n_layers=1)
    torch.testing.assert_close(again["logits"], t_small["logits"], atol=1e-5, rtol=1e-5)
    (t2i, i2t), (want_t2i, want_i2t) = again["cross"][0][0], t_small["cross"][0][0]
    text = small.attention_mask.bool()[:, None, :, None]
    image = (out_small.image_masks[0].bool() if out_small.image_masks[0] is not None
             else torch.ones(t2i.shape[0], t2i.shape[-1], dtype=torch.bool))[:, None, None, :]  # fmt: skip
    real = text & image
    torch.testing.assert_close(t2i[real.expand_as(t2i)], want_t2i[real.expand_as(t2i)], atol=1e-4, rtol=1e-4)
    real_t = image.transpose(-1, -2) & text.transpose(-1, -2)
    torch.testing.assert_close(i2t[real_t.expand_as(i2t)], want_i2t[real_t.expand_as(i2t)], atol=1e-4, rtol=1e-4)


def test_a_damaged_shard_is_ignored_with_a_warning_and_bfloat16_halves_the_size(tmp_path):
    teacher = torch.nn.Linear(2, 2)
    cache = TeacherOutputCache(tmp_path, teacher, shard_size=2)
    cache.put("a", {"logits": torch.ones(100)})
    cache.put("b", {"logits": torch.zeros(100)})  # a full shard: written
    (shard,) = list(tmp_path.rglob("shard-*.safetensors"))
    assert torch.equal(TeacherOutputCache(tmp_path, teacher).get(["a"])[0]["logits"], torch.ones(100))
    shard.write_bytes(b"not a safetensors file")
    with pytest.warns(UserWarning, match="unreadable teacher-output shard"):
        assert TeacherOutputCache(tmp_path, teacher).get(["a", "b"]) == [None, None]
    half = TeacherOutputCache(tmp_path / "half", teacher, dtype="bfloat16", shard_size=1)
    half.put("a", {"logits": torch.ones(100)})
    (small,) = list((tmp_path / "half").rglob("shard-*.safetensors"))
    assert small.stat().st_size < 0.6 * 400 + 200
    with pytest.raises(ValueError, match="dtype"):
        TeacherOutputCache(tmp_path, teacher, dtype="int8")
