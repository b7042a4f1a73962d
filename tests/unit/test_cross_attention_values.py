"""`cross_attention` returns, per layer, head and token, the softmax of the q / k it was given, on the right grid.

A scripted forward pass (the tiny models' `forward` replaced) hands `cross_probs` seeded q and k per image and
layer, with 3 heads (not the 2 layers asked: a layer / head mix-up changes the shapes); the expected maps are the
softmax of `q k^T / sqrt(d)` over the other modality's keys, computed here in numpy (float64). A two-example
batch with a shorter second question checks that example `index` is read, its padded words dropped; a second
image checks `image_index`; 32 x 64 pixels (a 2 x 4 grid, not the model's 4 x 4) check the grid. On the tiny
models themselves, a padded batch (a pixel mask) gives the padding patches no attention."""

import numpy as np
import pytest
import torch

from workbench.data.collate import Batch
from workbench.explain import cross_attention
from workbench.models import create_model
from workbench.models.dual import DualOutput
from workbench.models.fusion import FusionOutput

TEXT, HEADS, DIM = 6, 3, 4
GRID = (2, 4)
P = GRID[0] * GRID[1]
MASK = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])  # example 1: 4 real tokens
LOGITS = torch.tensor([[0.5, -1.0, 2.0], [3.0, 0.25, -2.0]])


@pytest.fixture(scope="module")
def models(tokenizer):
    torch.manual_seed(0)
    size = {"hidden_size": 32, "num_layers": 2, "num_heads": 2}
    return {kind: create_model(kind, len(tokenizer), 3, **size).eval() for kind in ("fusion", "dual")}


def _batch(images: int = 1, height: int = 32, width: int = 64) -> Batch:
    return Batch(
        pixel_values=torch.zeros(2, images, 3, height, width),
        input_ids=torch.tensor(
            [[2, 175, 123, 139, 120, 3], [2, 135, 144, 3, 0, 0]]
        ),  # "what colour is circle", "how many"
        attention_mask=MASK,
        labels=torch.zeros(2, dtype=torch.long),
        qtypes=["a", "a"],
        texts=["x", "y"],
    )


def _qk(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, HEADS, n, DIM, generator=g), torch.randn(2, HEADS, n, DIM, generator=g)


def _softmax(scores: np.ndarray) -> np.ndarray:
    e = np.exp(scores - scores.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _expected(q_text, k_text, q_image, k_image, b: int, t: int) -> tuple[np.ndarray, np.ndarray]:
    """(t2i [H, t, 1 + P], i2t [H, 1 + P, t]) of example b with t real words, by hand."""
    qt, kt = q_text[b].double().numpy(), k_text[b].double().numpy()
    qi, ki = q_image[b].double().numpy(), k_image[b].double().numpy()
    scale = np.sqrt(qt.shape[-1])
    t2i = _softmax(qt[:, :t] @ ki.transpose(0, 2, 1) / scale)
    i2t = _softmax(qi @ kt[:, :t].transpose(0, 2, 1) / scale)  # padded words are no keys
    return t2i, i2t


def _fusion_forward(images: int):
    """Per image j and layer l: a joint q, k over [text] [image CLS] [patches] (seed 10 j + l)."""
    qk = [{layer: _qk(10 * j + layer, TEXT + 1 + P) for layer in (0, 1)} for j in range(images)]

    def forward(input_ids, attention_mask, pixel_values, output_attentions=False, qk_layers=(), pixel_mask=None):
        return FusionOutput(logits=LOGITS, qk=[{x % 2: d[x % 2] for x in qk_layers} for d in qk], text_len=TEXT)

    return forward, qk


def _check(ca: dict, t2i: np.ndarray, i2t: np.ndarray, layer_pos: int) -> None:
    np.testing.assert_allclose(ca["t2i"][layer_pos], t2i[:, :, 1:].reshape(HEADS, -1, *GRID), rtol=1e-5)
    np.testing.assert_allclose(ca["t2i_cls"][layer_pos], t2i[:, :, 0], rtol=1e-5)
    np.testing.assert_allclose(ca["i2t"][layer_pos], i2t[:, 1:].reshape(HEADS, *GRID, -1), rtol=1e-5)
    np.testing.assert_allclose(ca["i2t_cls"][layer_pos], i2t[:, 0], rtol=1e-5)  # the image [CLS] query


def test_teacher_maps_are_the_softmax_of_each_layer_over_the_other_modality(models, tokenizer, monkeypatch):
    forward, qk = _fusion_forward(images=1)
    monkeypatch.setattr(models["fusion"], "forward", forward)
    for index, t in ((0, 6), (1, 4)):
        ca = cross_attention(models["fusion"], _batch(), tokenizer, index=index)
        assert ca["layers"] == [0, 1] and ca["grid"] == GRID and ca["kind"] == "fusion"
        assert ca["t2i"].shape == (2, HEADS, t, *GRID) and ca["i2t"].shape == (2, HEADS, *GRID, t)
        ids = _batch().input_ids[index, :t].tolist()
        assert ca["tokens"] == tokenizer.convert_ids_to_tokens(ids)
        np.testing.assert_array_equal(ca["logits"], LOGITS[index].numpy())
        for layer in (0, 1):
            q, k = qk[0][layer]
            _check(ca, *_expected(q[:, :, :TEXT], k[:, :, :TEXT], q[:, :, TEXT:], k[:, :, TEXT:], index, t), layer)


def test_only_the_asked_layers_are_computed(models, monkeypatch):
    forward, qk = _fusion_forward(images=1)
    monkeypatch.setattr(models["fusion"], "forward", forward)
    for layers in ((1,), (-1,)):
        ca = cross_attention(models["fusion"], _batch(), layers=layers, index=1)
        assert ca["layers"] == [1] and ca["t2i"].shape[0] == 1 and ca["image_share"].shape == (1, HEADS, 4)
        q, k = qk[0][1]
        _check(ca, *_expected(q[:, :, :TEXT], k[:, :, :TEXT], q[:, :, TEXT:], k[:, :, TEXT:], 1, 4), 0)


def test_the_second_image_is_read_when_asked(models, monkeypatch):
    forward, qk = _fusion_forward(images=2)
    monkeypatch.setattr(models["fusion"], "forward", forward)
    ca = cross_attention(models["fusion"], _batch(images=2), image_index=1)
    for layer in (0, 1):
        q, k = qk[1][layer]
        _check(ca, *_expected(q[:, :, :TEXT], k[:, :, :TEXT], q[:, :, TEXT:], k[:, :, TEXT:], 0, 6), layer)


def test_student_maps_pair_text_tower_queries_with_image_tower_keys(models, tokenizer, monkeypatch):
    text = {layer: _qk(20 + layer, TEXT) for layer in (0, 1)}
    image = [{layer: _qk(30 + 10 * j + layer, 1 + P) for layer in (0, 1)} for j in range(2)]

    def forward(input_ids, attention_mask, pixel_values=None, image_states=None, qk_layers=(), pixel_mask=None):
        keep = {x % 2 for x in qk_layers}  # as `capture_qk` stores them
        return DualOutput(
            logits=LOGITS,
            qk_text={x: text[x] for x in keep},
            qk_image=[{x: d[x] for x in keep} for d in image],
        )

    monkeypatch.setattr(models["dual"], "forward", forward)
    for image_index, index, t in ((0, 1, 4), (1, 0, 6)):
        ca = cross_attention(models["dual"], _batch(images=2), tokenizer, image_index=image_index, index=index)
        assert ca["kind"] == "dual" and ca["grid"] == GRID and np.isnan(ca["image_share"]).all()
        assert ca["tokens"] == tokenizer.convert_ids_to_tokens(_batch().input_ids[index, :t].tolist())
        np.testing.assert_array_equal(ca["logits"], LOGITS[index].numpy())
        for layer in (0, 1):
            (qt, kt), (qi, ki) = text[layer], image[image_index][layer]
            _check(ca, *_expected(qt, kt, qi, ki, index, t), layer)


def test_a_deeper_text_tower_pairs_its_last_layers_with_the_image_towers(tokenizer):
    """Text 3 layers, image 2: layer l of the map is text layer l + 1 with image layer l (aligned at the end)."""
    torch.manual_seed(0)
    model = create_model("dual", len(tokenizer), 3, hidden_size=32, num_layers=2, num_heads=2, text_layers=3).eval()
    batch = _batch(height=64, width=64)
    ca = cross_attention(model, batch)
    with torch.no_grad():
        out = model(batch.input_ids, batch.attention_mask, batch.pixel_values, qk_layers=(-3, -2, -1))
    for layer in (0, 1):
        (qt, kt), (qi, ki) = out.qk_text[layer + 1], out.qk_image[0][layer]
        t2i, _ = _expected(qt, kt, qi, ki, 0, 6)
        np.testing.assert_allclose(ca["t2i"][layer], t2i[:, :, 1:].reshape(2, 6, 4, 4), rtol=1e-4, atol=1e-6)


def _padded_batch() -> Batch:
    """Example 1's picture is 64 x 32 padded to 64 x 64: its grid's two right columns are padding."""
    pixel_mask = torch.ones(2, 1, 64, 64, dtype=torch.long)
    pixel_mask[1, :, :, 32:] = 0
    g = torch.Generator().manual_seed(0)
    return Batch(
        pixel_values=torch.randn(2, 1, 3, 64, 64, generator=g) * pixel_mask[:, :, None],
        input_ids=_batch().input_ids,
        attention_mask=MASK,
        labels=torch.zeros(2, dtype=torch.long),
        pixel_mask=pixel_mask,
    )


@pytest.mark.parametrize("kind", ["fusion", "dual"])
def test_padding_patches_get_no_attention(models, kind):
    ca = cross_attention(models[kind], _padded_batch(), index=1)
    assert ca["t2i"].shape == (2, 2, 4, 4, 4)
    assert (ca["t2i"][..., 2:] == 0).all() and (ca["t2i"][..., :2] > 0).all()
    np.testing.assert_allclose(ca["t2i"].sum((-1, -2)) + ca["t2i_cls"], 1.0, rtol=1e-5)
    full = cross_attention(models[kind], _padded_batch(), index=0)  # example 0: every patch real
    assert (full["t2i"] > 0).all()


def test_padded_teacher_maps_are_its_joint_attention_renormalised_over_real_image_keys(models):
    """The fusion model's own attention (with the pixel mask) restricted to the image keys, divided by its mass."""
    model, batch = models["fusion"], _padded_batch()
    ca = cross_attention(model, batch, index=1)
    with torch.no_grad():
        out = model(
            batch.input_ids,
            batch.attention_mask,
            batch.pixel_values,
            output_attentions=True,
            pixel_mask=batch.pixel_mask,
        )
    for layer, a in enumerate(out.attentions[0]):
        joint = a[1, :, :4, TEXT:].double().numpy()  # [H, 4 real words, 1 + P]
        share = joint.sum(-1)
        renorm = joint / share[..., None]
        np.testing.assert_allclose(ca["t2i"][layer], renorm[..., 1:].reshape(2, 4, 4, 4), atol=1e-5)
        np.testing.assert_allclose(ca["image_share"][layer], share, atol=1e-5)
