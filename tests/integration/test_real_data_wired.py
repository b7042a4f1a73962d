"""The real-data pieces wired into the library: `load_dataset` reads the real names, the `Collator` builds
VQA targets / scores and (for a HF ViLT folder) aspect-ratio pixels with a pixel mask, the fusion teacher
equals HF on them, the dual student reads the same non-square padded batches, `evaluate` reports the VQA
score per answer type, and sharded folders load."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch
from transformers import ViltForImagesAndTextClassification, ViltForQuestionAnswering

from workbench.data import Collator, DatasetLayoutError, load_dataset, num_images
from workbench.data.fixtures import save_tiny_vilt, vqa_labels
from workbench.data.vqav2 import IGNORE_INDEX
from workbench.evaluate import compare_models, confusion_matrix, evaluate, format_metrics
from workbench.models import create_model
from workbench.models.io import load_checkpoint, save_checkpoint, weights_fingerprint
from workbench.models.preprocess import ViltImageSpec
from workbench.vqa_score import ANSWER_TYPES, batch_vqa_scores

pytestmark = pytest.mark.usefixtures("one_thread")

LABELS = {"vqav2": vqa_labels(), "nlvr2": ("False", "True")}
STUDENT = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "patch_size": 32, "image_size": 64}


@pytest.fixture(scope="module")
def vilt(tmp_path_factory, tokenizer) -> dict[str, Path]:
    """Tiny HF ViLT folders (random weights): VQA on the VQAv2 fixture's answers, and NLVR2."""
    root = tmp_path_factory.mktemp("vilt")
    return {name: save_tiny_vilt(root / name, tokenizer, LABELS[name], num_images(name)) for name in LABELS}


def _examples(real_fixtures, name: str, labels, n: int, split: str = "val"):
    ds = load_dataset(name, split, data_root=real_fixtures[name], labels=labels)
    return ds, [ds[i] for i in range(n)]


def _padded_shapes(mask: torch.Tensor) -> list[tuple[int, int]]:
    """(height, width) of the real pixels of each image of a [B, n, H, W] pixel mask."""
    return [(int(m.any(1).sum()), int(m.any(0).sum())) for m in mask.flatten(0, 1)]


# ----------------------------------------------------------------------------------------------
# datasets by name and the collator


def test_load_dataset_reads_real_names_and_needs_a_data_root(real_fixtures):
    ds = load_dataset("vqav2", "val", 5, data_root=real_fixtures["vqav2"], labels=vqa_labels())
    assert len(ds) == 5 and ds.labels == vqa_labels()
    assert len(load_dataset("nlvr2", "train", data_root=real_fixtures["nlvr2"])) == 32
    assert num_images("nlvr2") == 2 and num_images("shapes-nlvr") == 2 and num_images("vqav2") == 1
    with pytest.raises(DatasetLayoutError, match="--data-root"):
        load_dataset("vqav2", "val")
    with pytest.raises(ValueError, match="takes no data root"):
        load_dataset("shapes-vqa", "val", 4, data_root=real_fixtures["vqav2"])


def test_vqav2_batch_carries_targets_scores_and_pixel_mask(real_fixtures, vilt, tokenizer):
    ck = load_checkpoint(vilt["vqav2"])
    assert ck.image_spec == ViltImageSpec(shortest_edge=64, size_divisor=32)
    ds, examples = _examples(
        real_fixtures,
        "vqav2",
        ck.labels,
        len(load_dataset("vqav2", "val", data_root=real_fixtures["vqav2"], labels=ck.labels)),
    )  # noqa: E501
    batch = Collator.for_checkpoint(ck)(examples[:8])
    b, a = 8, len(ck.labels)
    assert batch.targets.shape == batch.scores.shape == (b, a) and batch.targets.dtype == torch.float32
    assert batch.pixel_values.shape[:3] == (b, 1, 3) and batch.pixel_mask.shape == (
        b,
        1,
        *batch.pixel_values.shape[-2:],
    )
    shapes = _padded_shapes(batch.pixel_mask)
    assert all(h != w for h, w in shapes) and len(set(shapes)) > 1  # aspect ratio kept, then padded
    for i, e in enumerate(examples[:8]):
        assert torch.equal(batch.targets[i], torch.from_numpy(e.meta["targets"]))
        assert torch.equal(batch.scores[i], torch.from_numpy(e.meta["scores"]))
    moved = batch.to("cpu")
    assert moved.pixel_mask is not None and moved.targets is not None and moved.scores is not None
    # a question none of whose answers is in the vocabulary: gold -100, zero targets and scores
    unanswerable = [i for i, e in enumerate(examples) if e.label == IGNORE_INDEX]
    assert unanswerable
    full = Collator.for_checkpoint(ck)(examples)
    assert not full.targets[unanswerable].any() and not full.scores[unanswerable].any()
    # the square pipeline (our own checkpoints) carries the targets too, and no pixel mask
    square = Collator(tokenizer, 64)(examples[:3])
    assert square.pixel_mask is None and square.pixel_values.shape == (3, 1, 3, 64, 64)
    assert square.targets.shape == (3, a) and square.scores is not None


def test_our_checkpoints_keep_the_square_pipeline_unless_saved_with_a_spec(tokenizer, tmp_path):
    model = create_model("dual", len(tokenizer), 3, **STUDENT)
    ours = load_checkpoint(save_checkpoint(model, tokenizer, tmp_path / "ours", {"task": "vqa", "labels": list("abc")}))
    assert ours.image_spec is None and ours.image_pipeline is None
    assert Collator.for_checkpoint(ours).image_pipeline is None
    spec = ViltImageSpec(shortest_edge=64, size_divisor=32)
    meta = {"task": "vqa", "labels": list("abc")}
    student = load_checkpoint(save_checkpoint(model, tokenizer, tmp_path / "student", meta, image_spec=spec))
    assert student.image_spec == spec  # a student of a HF ViLT teacher reads images as its teacher
    assert ViltImageSpec.from_folder(tmp_path / "student") == spec


# ----------------------------------------------------------------------------------------------
# the fusion teacher equals HF on non-square padded batches


@pytest.mark.parametrize("name", ["vqav2", "nlvr2"])
def test_fusion_teacher_equals_hf_through_the_collator(real_fixtures, vilt, name):
    ck = load_checkpoint(vilt[name])
    _, examples = _examples(real_fixtures, name, ck.labels, 6)
    batch = Collator.for_checkpoint(ck)(examples)
    shapes = _padded_shapes(batch.pixel_mask)
    assert all(h != w for h, w in shapes) and len(set(shapes)) > 1
    hf_class = ViltForQuestionAnswering if name == "vqav2" else ViltForImagesAndTextClassification
    hf = hf_class.from_pretrained(vilt[name]).eval()
    one = name == "vqav2"  # HF's VQA model takes [B, 3, H, W]; its NLVR2 one [B, 2, 3, H, W]
    with torch.no_grad():
        ref = hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                 pixel_values=batch.pixel_values[:, 0] if one else batch.pixel_values,
                 pixel_mask=batch.pixel_mask[:, 0] if one else batch.pixel_mask).logits  # fmt: skip
        out = ck.model(batch.input_ids, batch.attention_mask, batch.pixel_values, pixel_mask=batch.pixel_mask)
    assert (out.logits - ref).abs().max() < 1e-4
    assert len(out.image_masks) == num_images(name)
    gh, gw = out.grid
    assert all(m.shape == (6, 1 + gh * gw) for m in out.image_masks)
    real = [h // 32 * (w // 32) for h, w in shapes]  # patches of each image (32-px patches)
    assert [int(m.sum()) - 1 for m in torch.stack(out.image_masks, 1).flatten(0, 1)] == real


# ----------------------------------------------------------------------------------------------
# the dual student on the same images


def test_dual_student_runs_on_a_non_square_padded_batch(real_fixtures, vilt, tokenizer):
    ck = load_checkpoint(vilt["vqav2"])
    _, examples = _examples(real_fixtures, "vqav2", ck.labels, 6)
    batch = Collator.for_checkpoint(ck)(examples)
    torch.manual_seed(0)
    student = create_model("dual", len(tokenizer), len(ck.labels), **STUDENT).eval()
    with torch.no_grad():
        out = student(batch.input_ids, batch.attention_mask, batch.pixel_values, qk_layers=(-1,),
                      pixel_mask=batch.pixel_mask)  # fmt: skip
        assert out.logits.shape == (6, len(ck.labels)) and torch.isfinite(out.logits).all()
        gh, gw = out.grid
        assert out.qk_image[0][1][1].shape == (6, 2, 1 + gh * gw, 16)  # keys on the padded grid
        features = student.encode_image(batch.pixel_values[:, 0], pixel_mask=batch.pixel_mask[:, 0])
        # the mask is honoured: each image's real tokens are what the image alone (unpadded) gives
        for i, (h, w) in enumerate(_padded_shapes(batch.pixel_mask)):
            alone = student.encode_image(batch.pixel_values[i : i + 1, 0, :, :h, :w])
            tokens = [0] + [1 + r * gw + c for r in range(h // 32) for c in range(w // 32)]
            assert (features[i, tokens] - alone[0]).abs().max() < 1e-5
            assert out.image_masks[0][i].nonzero().flatten().tolist() == tokens


def test_dual_student_square_path_is_unchanged_and_a_stem_takes_other_sizes(tokenizer):
    torch.manual_seed(0)
    student = create_model("dual", len(tokenizer), 3, **STUDENT).eval()
    pixels = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        hf = student.image_tower(pixel_values=pixels, interpolate_pos_encoding=True).last_hidden_state
        assert torch.equal(student.encode_image(pixels), hf)  # HF's ViT code path, bit for bit
        ones = torch.ones(2, 64, 64, dtype=torch.long)
        assert (student.encode_image(pixels, pixel_mask=ones) - hf).abs().max() < 1e-5
        wide = torch.rand(1, 3, 64, 96) * 2 - 1  # unpadded, non-square: position interpolation
        masked = student.encode_image(wide, pixel_mask=torch.ones(1, 64, 96, dtype=torch.long))
        assert (student.encode_image(wide) - masked).abs().max() < 1e-5
        stem = create_model("dual", len(tokenizer), 3, **{**STUDENT, "patch_size": 16, "conv_stem": (8,)}).eval()
        assert stem.encode_image(wide).shape == (1, 1 + 4 * 6, 32)


def test_the_image_feature_cache_takes_non_square_images(tokenizer):
    from workbench.cache import ImageFeatureCache

    torch.manual_seed(0)
    student = create_model("dual", len(tokenizer), 3, **STUDENT).eval()
    cache, wide, tall = ImageFeatureCache(), torch.rand(1, 3, 64, 96), torch.rand(1, 3, 96, 64)
    with torch.no_grad():
        a, hit_a = cache.get_or_compute(wide, student.encode_image)
        b, hit_b = cache.get_or_compute(tall, student.encode_image)
        again, hit = cache.get_or_compute(wide.clone(), student.encode_image)
    assert (hit_a, hit_b, hit) == (False, False, True) and a.shape == b.shape == (1, 7, 32) and again is a


# ----------------------------------------------------------------------------------------------
# evaluation: the VQA score per answer type


def test_evaluate_a_hf_vilt_folder_on_vqav2_reports_the_vqa_score_per_answer_type(real_fixtures, vilt):
    ck = load_checkpoint(vilt["vqav2"])
    ds = load_dataset("vqav2", "val", data_root=real_fixtures["vqav2"], labels=ck.labels)
    collator = Collator.for_checkpoint(ck)
    metrics = evaluate(ck.model, ds, collator, batch_size=8, return_predictions=True)
    vqa = metrics["vqa_score"]
    assert vqa["n"] == metrics["n"] == len(ds) and set(vqa["per_type"]) <= set(ANSWER_TYPES)
    assert sum(m["n"] for m in vqa["per_type"].values()) == len(ds)
    by_hand = []  # the official accuracy of each top answer, from the dataset's own score vectors
    for start in range(0, len(ds), 8):
        batch = collator([ds[i] for i in range(start, min(start + 8, len(ds)))])
        with torch.no_grad():
            logits = ck.model(batch.input_ids, batch.attention_mask, batch.pixel_values, pixel_mask=batch.pixel_mask)
        by_hand += batch_vqa_scores(logits.logits, batch.scores).tolist()
    assert vqa["accuracy"] == pytest.approx(sum(by_hand) / len(by_hand))
    assert [p["score"] for p in metrics["predictions"]] == pytest.approx(by_hand)
    assert "VQA score" in format_metrics(metrics) and "yes/no" in format_metrics(metrics)
    ve = load_dataset("snli-ve", "val", data_root=real_fixtures["snli-ve"])  # no VQA scores: no VQA score
    assert "vqa_score" not in evaluate(ck.model, ve, collator, limit=2)


def test_compare_models_copes_with_questions_outside_the_vocabulary(real_fixtures, vilt, tokenizer):
    ck = load_checkpoint(vilt["vqav2"])
    ds = load_dataset("vqav2", "val", data_root=real_fixtures["vqav2"], labels=ck.labels)
    student = create_model("dual", len(tokenizer), len(ck.labels), **STUDENT).eval()
    rows = compare_models(ck.model, student, ds, Collator.for_checkpoint(ck), agreement=None, batch_size=8)
    assert len(rows) == len(ds) and any(r["gold"] == "" for r in rows)
    assert all(0 <= r["teacher_score"] <= 1 and 0 <= r["student_score"] <= 1 for r in rows)
    m = confusion_matrix(rows, list(ck.labels))
    assert m.sum() == sum(r["gold"] != "" for r in rows)


# ----------------------------------------------------------------------------------------------
# sharded folders


def test_a_sharded_folder_loads_and_answers_as_the_single_file_one(real_fixtures, vilt, tmp_path):
    single = vilt["vqav2"]
    sharded = tmp_path / "sharded"
    ViltForQuestionAnswering.from_pretrained(single).save_pretrained(sharded, max_shard_size="20KB")
    for f in single.iterdir():  # tokenizer and preprocessor files
        if not (f.name.startswith("model") or f.name == "config.json"):
            shutil.copy(f, sharded / f.name)
    assert (sharded / "model.safetensors.index.json").is_file() and not (sharded / "model.safetensors").exists()
    assert len(list(sharded.glob("model-*.safetensors"))) > 1
    a, b = load_checkpoint(single), load_checkpoint(sharded)
    assert b.labels == a.labels and b.image_spec == a.image_spec
    _, examples = _examples(real_fixtures, "vqav2", a.labels, 4)
    batch = Collator.for_checkpoint(b)(examples)
    with torch.no_grad():
        la = a.model(batch.input_ids, batch.attention_mask, batch.pixel_values, pixel_mask=batch.pixel_mask).logits
        lb = b.model(batch.input_ids, batch.attention_mask, batch.pixel_values, pixel_mask=batch.pixel_mask).logits
    assert torch.equal(la, lb)
    # the fingerprint of a single-file folder is what it always was: the file's SHA-256, 16 hex digits
    assert weights_fingerprint(single) == hashlib.sha256((single / "model.safetensors").read_bytes()).hexdigest()[:16]
    assert weights_fingerprint(sharded) not in (None, weights_fingerprint(single))


# ----------------------------------------------------------------------------------------------
# what the distillation objectives read from a VQA batch


def test_label_terms_on_a_vqa_batch(real_fixtures, vilt, tokenizer):
    from workbench.methods.dual_student import TeacherObjective
    from workbench.methods.labels import SoftLabelConfig

    ck = load_checkpoint(vilt["vqav2"])
    _, examples = _examples(real_fixtures, "vqav2", ck.labels, 24)
    batch = Collator.for_checkpoint(ck)(examples)
    assert (batch.labels == IGNORE_INDEX).any()
    student = create_model("dual", len(tokenizer), len(ck.labels), **STUDENT)
    logits = student(batch.input_ids, batch.attention_mask, batch.pixel_values, pixel_mask=batch.pixel_mask).logits
    with torch.no_grad():
        teacher = ck.model(batch.input_ids, batch.attention_mask, batch.pixel_values, pixel_mask=batch.pixel_mask)
    objective = TeacherObjective("kd", SoftLabelConfig(hard=1.0, soft=1.0), ck.model)
    total, logs = objective.label_terms(logits, teacher.logits, batch)
    assert torch.isfinite(total) and set(logs) == {"accuracy", "soft", "ce"}
    total.backward()
    assert student.classifier[-1].weight.grad is not None
    # the gold-label accuracy counts the -100 questions as wrong (no answer can match them), never fails
    correct = (logits.argmax(-1) == batch.labels).float().mean().item()
    assert logs["accuracy"] == pytest.approx(correct)
