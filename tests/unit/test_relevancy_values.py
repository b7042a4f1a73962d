"""Relevancy against hand computation: leading batch axes, the float32 result, padded words, which image and which
example is read, and what `relevancy` returns.

`relevancy_matrix` is checked against Chefer et al.'s rule written out in numpy (`R = I`, `R += A_bar @ R` with
`A_bar = mean_heads(max(dA * A, 0))`); `relevancy_rows` / `relevancy` on hand-built attention tensors
(`self_attentions` replaced) whose target logit is `sum(W * A)`, so the gradient is the known weight `W`."""

import numpy as np
import pytest
import torch

import workbench.explain.relevancy_maps as relevancy_module
from workbench.data.collate import Batch
from workbench.explain import relevancy
from workbench.explain.relevancy_maps import relevancy_matrix, relevancy_rows
from workbench.models import create_model

GRID = (2, 2)
P = GRID[0] * GRID[1]
TEXT = 5
MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])  # example 1: 3 real words
IDS = torch.tensor([[2, 175, 123, 139, 3], [2, 135, 3, 0, 0]])
LABELS = 3


def _by_hand(attentions: list[np.ndarray], grads: list[np.ndarray]) -> np.ndarray:
    """[H, N, N] per layer -> R [N, N]."""
    r = np.eye(attentions[0].shape[-1])
    for a, g in zip(attentions, grads):
        r = r + np.maximum(g * a, 0.0).mean(0) @ r
    return r


def test_leading_axes_are_one_relevancy_matrix_each():
    """[2 examples, 3 images, 2 heads, 4, 4] (3 != 4 tokens): each (example, image) is its own matrix."""
    g = torch.Generator().manual_seed(0)
    a = [torch.rand(2, 3, 2, 4, 4, generator=g) for _ in range(2)]
    d = [torch.randn(2, 3, 2, 4, 4, generator=g) for _ in range(2)]
    out = relevancy_matrix(a, d)
    assert out.shape == (2, 3, 4, 4)
    for b in range(2):
        for i in range(3):
            expected = _by_hand([x[b, i].double().numpy() for x in a], [x[b, i].double().numpy() for x in d])
            np.testing.assert_allclose(out[b, i].numpy(), expected, rtol=1e-5)


def test_relevancy_is_float32_whatever_the_default_dtype():
    a = torch.tensor([[[0.25, 0.75], [0.5, 0.5]]], dtype=torch.float16)
    g = torch.tensor([[[2.0, -1.0], [1.0, 1.0]]], dtype=torch.float16)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        out = relevancy_matrix([a], [g])
    finally:
        torch.set_default_dtype(old)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), [[1.5, 0.0], [0.5, 1.5]])


def test_no_layers_is_refused():
    with pytest.raises(ValueError, match="^no attention layers$"):
        relevancy_matrix([], [])


# ----------------------------------------------------------------------------------------------
# the classifier rows, on hand-built attention tensors


@pytest.fixture(scope="module")
def models(tokenizer):
    size = {"hidden_size": 32, "num_layers": 1, "num_heads": 2}
    return {kind: create_model(kind, len(tokenizer), LABELS, **size).eval() for kind in ("fusion", "dual")}


def _batch() -> Batch:
    return Batch(torch.zeros(2, 2, 3, 32, 32), IDS, MASK, torch.zeros(2, dtype=torch.long))


def _attention(seed: int, n: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """[2, 2 heads, n, n] random rows summing to 1 (keys where `mask` [2, n] is 0 get nothing), with gradients."""
    a = torch.rand(2, 2, n, n, generator=torch.Generator().manual_seed(seed)) + 0.1
    if mask is not None:
        a = a * mask[:, None, None, :]
    return (a / a.sum(-1, keepdim=True)).requires_grad_(True)


def _weights(seed: int, n: int) -> torch.Tensor:
    return torch.randn(2, 2, n, n, generator=torch.Generator().manual_seed(seed))


def _row(a: torch.Tensor, w: torch.Tensor, b: int) -> np.ndarray:
    """The [CLS] row of one layer's relevancy of example b (the gradient of the target logit is w), by hand."""
    return _by_hand([a[b].detach().double().numpy()], [w[b].double().numpy()])[0]


def _student(images: list[torch.Tensor], w_img: torch.Tensor, text: torch.Tensor, w_txt: torch.Tensor):
    """Label 1's logit is sum(W * A) over the towers (the predicted answer); the others far below."""

    def fake(model, batch, image_index=0):
        score = (w_img * images[image_index]).sum((1, 2, 3)) + (w_txt * text).sum((1, 2, 3))
        logits = torch.stack([torch.full((2,), -1e3), score, torch.full((2,), -1e3)], 1)
        return {"logits": logits, "image": [images[image_index]], "text": [text], "text_len": TEXT, "grid": GRID}

    return fake


def test_student_rows_are_each_towers_cls_row_for_the_asked_image(models, monkeypatch):
    images = [_attention(1, 1 + P), _attention(2, 1 + P)]
    text = _attention(3, TEXT, MASK)  # padded words are no keys
    w_img, w_txt = _weights(4, 1 + P), _weights(5, TEXT)
    monkeypatch.setattr(relevancy_module, "self_attentions", _student(images, w_img, text, w_txt))
    for image_index in (0, 1):
        rows = relevancy_rows(models["dual"], _batch(), image_index=image_index)
        if image_index == 0:
            assert torch.equal(rows["image"], relevancy_rows(models["dual"], _batch())["image"])
        assert rows["target"].tolist() == [1, 1] and torch.allclose(rows["prob"], torch.ones(2))
        for b in (0, 1):
            img = _row(images[image_index], w_img, b)
            np.testing.assert_allclose(rows["image"][b].numpy(), img[1:].reshape(GRID), rtol=1e-5, atol=1e-7)
            assert rows["image_cls"][b].item() == pytest.approx(img[0], rel=1e-5)
            np.testing.assert_allclose(rows["text"][b].numpy(), _row(text, w_txt, b) * MASK[b].numpy(), rtol=1e-5)
        assert (rows["text"][1, 3:] == 0).all()  # padded words: exactly 0


def test_relevancy_reads_example_index_of_the_asked_image(models, tokenizer, monkeypatch):
    images = [_attention(1, 1 + P), _attention(2, 1 + P)]
    text = _attention(3, TEXT, MASK)
    w_img, w_txt = _weights(4, 1 + P), _weights(5, TEXT)
    monkeypatch.setattr(relevancy_module, "self_attentions", _student(images, w_img, text, w_txt))
    rel = relevancy(models["dual"], _batch(), tokenizer=tokenizer, image_index=1, index=1)
    img = _row(images[1], w_img, 1)
    np.testing.assert_allclose(rel["image"], img[1:].reshape(GRID), rtol=1e-5, atol=1e-7)
    assert rel["image_cls"] == pytest.approx(img[0], rel=1e-5)
    np.testing.assert_allclose(rel["text"], _row(text, w_txt, 1)[:3], rtol=1e-5)
    assert rel["text"].dtype == np.float64 and rel["text"].shape == (3,)
    assert rel["tokens"] == tokenizer.convert_ids_to_tokens([2, 135, 3])
    assert rel["method"] == "relevancy" and rel["kind"] == "dual" and rel["target"] == 1
    assert relevancy(models["dual"], _batch(), index=0)["tokens"] == [str(i) for i in IDS[0].tolist()]


def test_teacher_relevancy_names_its_kind_and_tokens(models, tokenizer, monkeypatch):
    n = TEXT + 1 + P
    keys = torch.cat([MASK, torch.ones(2, 1 + P, dtype=torch.long)], 1)
    joint, w = _attention(6, n, keys), _weights(7, n)

    def fake(model, batch, image_index=0):
        score = (w * joint).sum((1, 2, 3))
        logits = torch.stack([score, torch.full((2,), -1e3), torch.full((2,), -1e3)], 1)
        return {"logits": logits, "joint": [joint], "text_len": TEXT, "grid": GRID}

    monkeypatch.setattr(relevancy_module, "self_attentions", fake)
    rel = relevancy(models["fusion"], _batch(), tokenizer=tokenizer, index=1)
    row = _row(joint, w, 1)
    np.testing.assert_allclose(rel["text"], row[:3], rtol=1e-5)
    assert rel["image_cls"] == pytest.approx(row[TEXT], rel=1e-5)
    np.testing.assert_allclose(rel["image"], row[TEXT + 1 :].reshape(GRID), rtol=1e-5, atol=1e-7)
    assert rel["tokens"] == tokenizer.convert_ids_to_tokens([2, 135, 3])
    assert rel["method"] == "relevancy" and rel["kind"] == "fusion" and rel["target"] == 0


@pytest.mark.parametrize(("target", "expected"), [(None, [1, 1]), (2, [2, 2]), ([[0]], [0, 0]), ([2, 0], [2, 0])])
def test_the_target_is_the_prediction_one_label_or_one_label_per_example(models, monkeypatch, target, expected):
    images, text = [_attention(1, 1 + P)], _attention(3, TEXT, MASK)
    monkeypatch.setattr(relevancy_module, "self_attentions", _student(images, _weights(4, 1 + P), text, _weights(5, 5)))
    rows = relevancy_rows(models["dual"], _batch(), target=target)
    assert rows["target"].tolist() == expected
    assert rows["prob"].tolist() == [1.0 if t == 1 else 0.0 for t in expected]


@pytest.mark.parametrize("target", [[], [0, 1, 2]])
def test_a_target_list_of_another_length_is_refused(models, monkeypatch, target):
    """Two examples: no target, or three, is neither one label nor one per example (an empty list used to give
    every example the relevancy of a zero gradient, without an error)."""
    images, text = [_attention(1, 1 + P)], _attention(3, TEXT, MASK)
    monkeypatch.setattr(relevancy_module, "self_attentions", _student(images, _weights(4, 1 + P), text, _weights(5, 5)))
    with pytest.raises(ValueError, match=rf"^expected one target or one per example \(2\), got {len(target)}$"):
        relevancy_rows(models["dual"], _batch(), target=target)
