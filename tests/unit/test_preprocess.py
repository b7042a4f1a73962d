"""HF-faithful ViLT preprocessing: pixels identical to `transformers.ViltImageProcessor`, and a real ViLT folder
(a tiny `ViltForQuestionAnswering` saved with `save_pretrained`) giving HF's logits on non-square images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import ViltConfig, ViltForQuestionAnswering, ViltImageProcessorPil

from workbench.models.preprocess import (
    ViltImageSpec,
    collate_images,
    masked_image_embeds,
    preprocess,
    resized_shape,
)

pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = [(100, 150), (480, 640), (640, 480), (37, 500), (500, 37), (384, 384), (1000, 300), (333, 777), (7, 9)]


def _images(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


def test_resized_shape_by_hand():
    # shorter side to 384, the other scaled, both floored to a multiple of 32
    assert resized_shape(480, 640) == (384, 512)  # 640 * 384 / 480 = 512
    assert resized_shape(100, 150) == (384, 576)
    # longer side capped at int(1333 / 800 * 384) = 639, then floored: 608
    assert ViltImageSpec().longest_edge == 639
    assert resized_shape(37, 500) == (32, 608)  # 639 / 500 * 37 = 47.3 -> 47 -> 32
    assert resized_shape(1000, 300) == (608, 192)  # 639 * 300 / 1000 = 191.7 -> 192
    assert resized_shape(384, 384) == (384, 384)
    small = ViltImageSpec(shortest_edge=64, size_divisor=16)
    assert small.longest_edge == 106 and resized_shape(64, 96, small) == (64, 96)


CONFIGS = [
    {},
    {"size": 384},
    {"size": {"shortest_edge": 224}, "size_divisor": 16},
    {"image_mean": [0.4, 0.5, 0.6], "image_std": [0.2, 0.3, 0.4], "resample": 2},
]


@pytest.mark.parametrize("config", CONFIGS)
def test_pixels_equal_hf_processor_exactly(config):
    images = _images(SIZES)
    ref = ViltImageProcessorPil(**config)(images=images, return_tensors="pt")
    pixels, mask = preprocess(images, ViltImageSpec.from_dict(config))
    assert torch.equal(pixels, ref["pixel_values"])
    assert torch.equal(mask, ref["pixel_mask"])


def test_spec_from_folder(tmp_path: Path):
    assert ViltImageSpec.from_folder(tmp_path) is None
    legacy = {"do_normalize": True, "do_resize": True, "feature_extractor_type": "ViltFeatureExtractor",
              "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 3, "size": 384,
              "size_divisor": 32}  # fmt: skip
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(legacy))
    assert ViltImageSpec.from_folder(tmp_path) == ViltImageSpec()
    ViltImageProcessorPil(size={"shortest_edge": 288}).save_pretrained(tmp_path)
    assert ViltImageSpec.from_folder(tmp_path).shortest_edge == 288
    (tmp_path / "preprocessor_config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="preprocessor_config.json"):
        ViltImageSpec.from_folder(tmp_path)


def test_collate_images_pads_across_the_batch_and_image_slots():
    a, b, c, d = _images([(48, 64), (64, 48), (40, 40), (64, 96)])
    spec = ViltImageSpec(shortest_edge=32, size_divisor=16)
    pixels, mask = collate_images([[a, b], [c, d]], spec)
    single, single_mask = preprocess([a, b, c, d], spec)
    assert pixels.shape == (2, 2, 3, *single.shape[-2:]) and mask.shape == (2, 2, *single.shape[-2:])
    assert torch.equal(pixels.flatten(0, 1), single) and torch.equal(mask.flatten(0, 1), single_mask)
    assert mask[0, 0].sum() == 32 * 32 and mask[1, 1].sum() == 32 * 48  # (48, 64) -> 32 x 42 -> 32 x 32
    with pytest.raises(ValueError, match="same number of images"):
        collate_images([[a], [b, c]], spec)


# ----------------------------------------------------------------------------------------------
# a real (tiny) ViLT folder: our fusion teacher on our pixels == HF's model on HF's pixels


@pytest.fixture(scope="module")
def vilt_folder(tmp_path_factory, tokenizer) -> Path:
    torch.manual_seed(0)
    config = ViltConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=40, image_size=384, patch_size=32,
        num_labels=5, id2label={i: a for i, a in enumerate(["yes", "no", "2", "red", "circle"])},
    )  # fmt: skip
    model = ViltForQuestionAnswering(config).eval()
    with torch.no_grad():  # HF starts position embeddings and the CLS token at zero: make every term count
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    folder = tmp_path_factory.mktemp("vilt")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    ViltImageProcessorPil().save_pretrained(folder)
    return folder


def _hf_logits(folder: Path, enc, pixels, mask) -> torch.Tensor:
    model = ViltForQuestionAnswering.from_pretrained(folder).eval()
    with torch.no_grad():
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], pixel_values=pixels,
                    pixel_mask=mask)  # fmt: skip
    return out.logits


def test_teacher_logits_equal_hf_on_non_square_images(vilt_folder, tokenizer):
    from workbench.models.io import load_checkpoint

    teacher = load_checkpoint(vilt_folder).model
    spec = ViltImageSpec.from_folder(vilt_folder)
    processor = ViltImageProcessorPil.from_pretrained(vilt_folder)
    for size, question in (((200, 330), "what colour is it?"), ((500, 240), "how many circles are there?")):
        image = _images([size], seed=size[0])
        pixels, mask = preprocess(image, spec)
        assert pixels.shape[-2] != pixels.shape[-1]
        enc = tokenizer([question], return_tensors="pt")
        hf = processor(image, return_tensors="pt")
        ref = _hf_logits(vilt_folder, enc, hf["pixel_values"], hf["pixel_mask"])
        with torch.no_grad():
            ours = teacher(enc["input_ids"], enc["attention_mask"], pixels).logits
        assert (ours - ref).abs().max() < 1e-4


def test_padded_batch_with_the_pixel_mask_equals_hf(vilt_folder, tokenizer):
    """Images of different shapes in one batch: the pixel mask path (the hook FusionTeacher.forward needs)."""
    from workbench.models.io import load_checkpoint

    teacher = load_checkpoint(vilt_folder).model
    images = _images([(200, 330), (500, 240), (300, 300)], seed=3)
    pixels, mask = preprocess(images, ViltImageSpec.from_folder(vilt_folder))
    enc = tokenizer(["is it red?", "what shape is the object on the left?", "yes?"], padding=True, return_tensors="pt")
    ref = _hf_logits(vilt_folder, enc, pixels, mask)
    with torch.no_grad():
        embeds, image_mask = masked_image_embeds(teacher, pixels, mask)
        out = teacher.vilt(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], image_embeds=embeds,
                           pixel_mask=image_mask, image_token_type_idx=1)  # fmt: skip
        ours = teacher.classifier(out.pooler_output)
    assert (ours - ref).abs().max() < 1e-4
    # without the mask, padding patches would be attended to: the logits of the padded images differ
    with torch.no_grad():
        unmasked = teacher(enc["input_ids"], enc["attention_mask"], pixels).logits
    assert (unmasked - ref).abs().max() > 1e-3
