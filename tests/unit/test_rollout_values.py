"""Attention rollout against hand computation: the row normalisation, leading batch axes, the classifier row of
each tower, padded words, which image and which example is read, and what `attention_rollout` returns.

`rollout` is checked on small matrices worked out by hand; `rollout_rows` / `attention_rollout` on hand-built
attention tensors (`self_attentions` replaced) whose expected rollout is computed here in numpy, one layer:
`normalise_rows(0.5 * mean_heads(A) + 0.5 * I)`, its [CLS] row."""

import numpy as np
import pytest
import torch

import workbench.explain.rollout_maps as rollout_module
from workbench.data.collate import Batch
from workbench.explain import attention_rollout, rollout
from workbench.explain.rollout_maps import rollout_rows
from workbench.models import create_model

GRID = (2, 2)
P = GRID[0] * GRID[1]
TEXT = 5
MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])  # example 1: 3 real words
IDS = torch.tensor([[2, 175, 123, 139, 3], [2, 135, 3, 0, 0]])


def test_rows_are_renormalised_to_sum_to_one():
    a = torch.tensor([[1.0, 1.0], [1.0, 3.0]])  # row sums 2 and 4
    np.testing.assert_allclose(rollout([a], residual=False, heads=False).numpy(), [[0.5, 0.5], [0.25, 0.75]])
    # with the residual: 0.5 A + 0.5 I = [[1, 0.5], [0.5, 2]], rows divided by 1.5 and 2.5
    np.testing.assert_allclose(rollout([a], heads=False).numpy(), [[2 / 3, 1 / 3], [0.2, 0.8]], rtol=1e-6)


def test_two_layers_multiply_last_layer_first():
    a1 = torch.tensor([[[0.2, 0.8], [0.6, 0.4]], [[0.6, 0.4], [0.2, 0.8]]])  # two heads, mean [[.4 .6] [.4 .6]]
    a2 = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])  # one head
    h1 = np.array([[0.7, 0.3], [0.2, 0.8]])  # 0.5 mean + 0.5 I
    h2 = np.array([[1.0, 0.0], [0.5, 0.5]])
    np.testing.assert_allclose(rollout([a1, a2]).numpy(), h2 @ h1, rtol=1e-6)


def test_leading_axes_are_rolled_out_one_matrix_each():
    """[2 examples, 3 images, 2 heads, 4, 4]: each (example, image) is its own rollout (3 != 4 tokens)."""
    g = torch.Generator().manual_seed(0)
    layers = [torch.rand(2, 3, 2, 4, 4, generator=g) for _ in range(2)]
    out = rollout(layers)
    assert out.shape == (2, 3, 4, 4)
    for b in range(2):
        for i in range(3):
            r = np.eye(4)
            for a in layers:
                h = 0.5 * a[b, i].double().numpy().mean(0) + 0.5 * np.eye(4)
                r = (h / h.sum(-1, keepdims=True)) @ r
            np.testing.assert_allclose(out[b, i].numpy(), r, rtol=1e-5)


def test_rollout_computes_in_float32_whatever_the_default_dtype():
    a = torch.tensor([[0.5, 0.5], [0.0, 1.0]], dtype=torch.float16)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        out = rollout([a, a], heads=False)
    finally:
        torch.set_default_dtype(old)
    assert out.dtype == torch.float32
    h = np.array([[0.75, 0.25], [0.0, 1.0]])
    np.testing.assert_allclose(out.numpy(), h @ h, rtol=1e-6)


def test_no_layers_is_refused():
    with pytest.raises(ValueError, match="^no attention layers to roll out$"):
        rollout([])


# ----------------------------------------------------------------------------------------------
# the classifier rows, on hand-built attention tensors


@pytest.fixture(scope="module")
def models(tokenizer):
    size = {"hidden_size": 32, "num_layers": 1, "num_heads": 2}
    return {kind: create_model(kind, len(tokenizer), 3, **size).eval() for kind in ("fusion", "dual")}


def _batch() -> Batch:
    return Batch(torch.zeros(2, 2, 3, 32, 32), IDS, MASK, torch.zeros(2, dtype=torch.long))


def _attention(seed: int, n: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """[2, 2 heads, n, n] random rows summing to 1 (keys where `mask` [2, n] is 0 get nothing)."""
    a = torch.rand(2, 2, n, n, generator=torch.Generator().manual_seed(seed)) + 0.1
    if mask is not None:
        a = a * mask[:, None, None, :]
    return a / a.sum(-1, keepdim=True)


def _cls_row(a: torch.Tensor, b: int) -> np.ndarray:
    """Row 0 of one layer's rollout of example b, by hand."""
    h = 0.5 * a[b].double().numpy().mean(0) + 0.5 * np.eye(a.shape[-1])
    return (h / h.sum(-1, keepdims=True))[0]


def _student(images: list[torch.Tensor], text: torch.Tensor):
    def fake(model, batch, image_index=0):
        return {"logits": torch.zeros(2, 3), "image": [images[image_index]], "text": [text], "grid": GRID}

    return fake


def test_student_rows_are_each_towers_cls_row_for_the_asked_image(models, monkeypatch):
    images = [_attention(1, 1 + P), _attention(2, 1 + P)]
    text = _attention(3, TEXT, MASK)  # padded words are no keys
    monkeypatch.setattr(rollout_module, "self_attentions", _student(images, text))
    for image_index, rows in (
        (0, rollout_rows(models["dual"], _batch())),
        (1, rollout_rows(models["dual"], _batch(), 1)),
    ):
        for b in (0, 1):
            img = _cls_row(images[image_index], b)
            np.testing.assert_allclose(rows["image"][b].numpy(), img[1:].reshape(GRID), rtol=1e-5)
            assert rows["image_cls"][b].item() == pytest.approx(img[0], rel=1e-5)
            words = _cls_row(text, b)
            np.testing.assert_allclose(rows["text"][b].numpy(), words * MASK[b].numpy(), rtol=1e-5)
    assert (rows["text"][1, 3:] == 0).all()  # padded words: exactly 0


def test_attention_rollout_reads_example_index_of_the_asked_image(models, tokenizer, monkeypatch):
    images = [_attention(1, 1 + P), _attention(2, 1 + P)]
    text = _attention(3, TEXT, MASK)
    monkeypatch.setattr(rollout_module, "self_attentions", _student(images, text))
    r = attention_rollout(models["dual"], _batch(), tokenizer, image_index=1, index=1)
    img = _cls_row(images[1], 1)
    np.testing.assert_allclose(r["image"], img[1:].reshape(GRID), rtol=1e-5)
    assert r["image_cls"] == pytest.approx(img[0], rel=1e-5)
    np.testing.assert_allclose(r["text"], _cls_row(text, 1)[:3], rtol=1e-5)
    assert r["text"].dtype == np.float64 and r["text"].shape == (3,)
    assert r["tokens"] == tokenizer.convert_ids_to_tokens([2, 135, 3])
    assert r["method"] == "rollout" and r["kind"] == "dual"
    assert attention_rollout(models["dual"], _batch(), index=0)["tokens"] == [str(i) for i in IDS[0].tolist()]


def test_teacher_rollout_is_the_cls_row_of_the_real_tokens(models, tokenizer, monkeypatch):
    """Joint sequence [5 words] [image CLS] [4 patches]; example 1's padded words are dropped before the rollout."""
    n = TEXT + 1 + P
    keys = torch.cat([MASK, torch.ones(2, 1 + P, dtype=torch.long)], 1)
    joint = _attention(4, n, keys)

    def fake(model, batch, image_index=0):
        return {"logits": torch.zeros(2, 3), "joint": [joint], "text_len": TEXT, "grid": GRID}

    monkeypatch.setattr(rollout_module, "self_attentions", fake)
    for index, real in ((0, list(range(n))), (1, [0, 1, 2, *range(TEXT, n)])):
        r = attention_rollout(models["fusion"], _batch(), tokenizer, index=index)
        row = _cls_row(joint[:, :, real][:, :, :, real], index)
        t = int(MASK[index].sum())
        np.testing.assert_allclose(r["text"], row[:t], rtol=1e-5)
        assert r["image_cls"] == pytest.approx(row[t], rel=1e-5)
        np.testing.assert_allclose(r["image"], row[t + 1 :].reshape(GRID), rtol=1e-5)
        assert r["tokens"] == tokenizer.convert_ids_to_tokens(IDS[index, :t].tolist())
        assert r["method"] == "rollout" and r["kind"] == "fusion"
