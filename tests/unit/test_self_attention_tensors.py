"""`self_attentions` returns the models' own attention probabilities, for the pixels and masks of the batch.

On the tiny models: every layer is there (image 0 unless asked), on the grid of the pixels given (32 x 64, not the
models' 64 x 64), and a padded batch gives padded words and padding patches exactly zero attention (the rows of
the real tokens still sum to 1 over the real keys) - the same probabilities the model computes with the masks."""

import pytest
import torch

from workbench.data.collate import Batch
from workbench.explain.attention import self_attentions
from workbench.models import create_model

MASK = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])  # example 1: 4 real words
IDS = torch.tensor([[2, 175, 123, 139, 120, 3], [2, 135, 144, 3, 0, 0]])
LAYERS = 2


@pytest.fixture(scope="module")
def models(tokenizer):
    torch.manual_seed(0)
    size = {"hidden_size": 32, "num_layers": LAYERS, "num_heads": 2}
    return {kind: create_model(kind, len(tokenizer), 3, **size).eval() for kind in ("fusion", "dual")}


def _batch(height: int = 64, width: int = 64, padded: bool = False) -> Batch:
    """With `padded`, example 1's picture is its left half: the grid's right half is padding."""
    pixel_mask = None
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(2, 1, 3, height, width, generator=g)
    if padded:
        pixel_mask = torch.ones(2, 1, height, width, dtype=torch.long)
        pixel_mask[1, :, :, width // 2 :] = 0
        pixels = pixels * pixel_mask[:, :, None]
    return Batch(pixels, IDS, MASK, torch.zeros(2, dtype=torch.long), pixel_mask=pixel_mask)


def test_teacher_joint_attention_is_the_models_own_for_image_0(models):
    model, batch = models["fusion"], _batch()
    att = self_attentions(model, batch)
    with torch.no_grad():
        out = model(batch.input_ids, batch.attention_mask, batch.pixel_values, output_attentions=True)
    assert len(att["joint"]) == LAYERS and att["text_len"] == 6 and att["grid"] == (4, 4)
    for mine, theirs in zip(att["joint"], out.attentions[0]):
        torch.testing.assert_close(mine.detach(), theirs)
    torch.testing.assert_close(att["logits"].detach(), out.logits)


def test_student_attentions_are_every_layer_of_both_towers(models):
    model, batch = models["dual"], _batch()
    att = self_attentions(model, batch)
    assert att["text_len"] == 6 and att["grid"] == (4, 4)
    assert [a.shape for a in att["image"]] == [(2, 2, 17, 17)] * LAYERS
    assert [a.shape for a in att["text"]] == [(2, 2, 6, 6)] * LAYERS
    with torch.no_grad():
        out = model(batch.input_ids, batch.attention_mask, batch.pixel_values)
    torch.testing.assert_close(att["logits"].detach(), out.logits)


@pytest.mark.parametrize("kind", ["fusion", "dual"])
def test_the_grid_is_that_of_the_pixels_given(models, kind):
    att = self_attentions(models[kind], _batch(height=32, width=64))
    assert att["grid"] == (2, 4)
    n = 1 + 8 + (6 if kind == "fusion" else 0)
    key = "joint" if kind == "fusion" else "image"
    assert [a.shape[-1] for a in att[key]] == [n] * LAYERS


def test_padded_words_get_no_attention_in_the_student_text_tower(models):
    att = self_attentions(models["dual"], _batch())
    for a in att["text"]:
        assert (a[1, :, :, 4:] == 0).all() and (a[1, :, :, :4] > 0).all() and (a[0] > 0).all()


def test_padding_patches_get_no_attention_in_the_teacher(models):
    model, batch = models["fusion"], _batch(padded=True)
    att = self_attentions(model, batch)
    with torch.no_grad():
        out = model(
            batch.input_ids,
            batch.attention_mask,
            batch.pixel_values,
            output_attentions=True,
            pixel_mask=batch.pixel_mask,
        )
    for mine, theirs in zip(att["joint"], out.attentions[0]):
        torch.testing.assert_close(mine.detach(), theirs)
        patches = mine[1, :, :, 7:].detach().reshape(2, -1, 4, 4)  # example 1's keys after [text] [image CLS]
        assert (patches[..., 2:] == 0).all() and (patches[..., :2] > 0).all()
        assert (mine[0] > 0).all()


def test_padding_patches_get_no_attention_in_the_student_image_tower(models):
    att = self_attentions(models["dual"], _batch(padded=True))
    assert len(att["image"]) == LAYERS
    for a in att["image"]:
        a = a.detach()
        assert a.shape == (2, 2, 17, 17)
        patches = a[1, :, :, 1:].reshape(2, 17, 4, 4)
        assert (patches[..., 2:] == 0).all() and (patches[..., :2] > 0).all()
        torch.testing.assert_close(a.sum(-1), torch.ones(2, 2, 17))
        assert (a[0] > 0).all()
