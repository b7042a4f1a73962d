"""Relevancy maps land on the right cell of the patch grid, for a hand-built attention peak.

The attention tensors and the target logits are built by hand (`self_attentions` is replaced), so the gradient
of the target logit with respect to each attention map is a known weight matrix `W`. One layer of Chefer et
al.'s rule gives the classifier row `e_0 + mean_heads(max(W * A, 0))[0]`, computed here independently; the test
reads it back through `relevancy` at a cell off the diagonal (a row / column swap moves it), per example of a
padded batch (a mix-up of examples or of the text / image [CLS] offsets moves it too)."""

import numpy as np
import pytest
import torch

import workbench.explain.relevancy_maps as relevancy_module
from workbench.data.collate import Batch
from workbench.explain import image_maps, relevancy
from workbench.models import create_model

GRID = (4, 4)
P = GRID[0] * GRID[1]
TEXT = 6  # text tokens of the batch; example 1 has 2 padded ones
MASK = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
PEAK = {0: (1, 2), 1: (3, 0)}  # per example: the cell the [CLS] query attends to (off the diagonal)
NEGATIVE = {0: (2, 3), 1: (0, 1)}  # a cell whose gradient is negative: clamped to 0
HEAD_PEAKS = (0.6, 1.0)  # the mass each head puts on the peak (mean 0.8)
LABELS = 3


@pytest.fixture(scope="module")
def models(tokenizer):
    size = {"hidden_size": 32, "num_layers": 1, "num_heads": 2}
    return {kind: create_model(kind, len(tokenizer), LABELS, **size).eval() for kind in ("fusion", "dual")}


def _batch() -> Batch:
    return Batch(
        pixel_values=torch.zeros(2, 1, 3, 64, 64),
        input_ids=torch.arange(2 * TEXT).reshape(2, TEXT) + 100,
        attention_mask=MASK,
        labels=torch.zeros(2, dtype=torch.long),
        qtypes=["a", "a"],
        texts=["x", "y"],
    )


def _peaked(n: int, first_patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, W) [2, 2 heads, n, n]: each head's [CLS] row puts HEAD_PEAKS[h] on the example's peak patch and
    spreads the rest evenly; other rows are uniform. W is 1, 3 on the peak key, -1 on the negative key."""
    a = torch.full((2, 2, n, n), 1.0 / n)
    w = torch.ones(2, 2, n, n)
    for b in range(2):
        peak = first_patch + PEAK[b][0] * GRID[1] + PEAK[b][1]
        negative = first_patch + NEGATIVE[b][0] * GRID[1] + NEGATIVE[b][1]
        for h, p in enumerate(HEAD_PEAKS):
            a[b, h, 0] = (1 - p) / (n - 1)
            a[b, h, 0, peak] = p
        w[b, :, :, peak] = 3.0
        w[b, :, :, negative] = -1.0
    return a.requires_grad_(True), w


def _expected_row(a: torch.Tensor, w: torch.Tensor, b: int) -> np.ndarray:
    """e_0 + mean over heads of max(W * A, 0), row 0, example b: by hand, in float64."""
    a, w = a.detach().double().numpy()[b], w.double().numpy()[b]
    row = np.zeros(a.shape[-1])
    for h in range(a.shape[0]):
        row += np.maximum(w[h, 0] * a[h, 0], 0.0) / a.shape[0]
    row[0] += 1.0
    return row


def _logits(score: torch.Tensor) -> torch.Tensor:
    """[2, LABELS]: label 0 scores `score` per example (the predicted answer), the others far below."""
    return torch.cat([score[:, None], torch.full((2, LABELS - 1), -1e3)], 1)


def _fusion_attentions(a: torch.Tensor, w: torch.Tensor):
    """A stand-in `self_attentions` of the fusion model: one joint layer `a`; label 0's logit is sum(W * A)."""

    def fake(*args, **kw):
        return {"logits": _logits((w * a).sum((1, 2, 3))), "joint": [a], "text_len": TEXT, "grid": GRID}

    return fake


def test_fusion_relevancy_puts_the_peak_on_its_cell_and_the_rest_by_hand(models, monkeypatch):
    n = TEXT + 1 + P
    a, w = _peaked(n, first_patch=TEXT + 1)  # joint sequence: [text] [image CLS] [patches]
    monkeypatch.setattr(relevancy_module, "self_attentions", _fusion_attentions(a, w))
    batch = _batch()
    for b in (0, 1):
        rel = relevancy(models["fusion"], batch, index=b)
        row = _expected_row(a, w, b)
        assert rel["image"].shape == GRID
        assert np.unravel_index(rel["image"].argmax(), GRID) == PEAK[b]
        assert rel["image"][PEAK[b]] == pytest.approx(3.0 * 0.8, rel=1e-5)
        assert rel["image"][NEGATIVE[b]] == 0.0
        np.testing.assert_allclose(rel["image"], row[TEXT + 1 :].reshape(GRID), rtol=1e-5)
        assert rel["image_cls"] == pytest.approx(row[TEXT], rel=1e-5)
        real = int(MASK[b].sum())
        np.testing.assert_allclose(rel["text"], row[:real], rtol=1e-5)  # the real tokens only
        assert rel["target"] == 0 and rel["prob"] == pytest.approx(1.0)
    maps = image_maps(models["fusion"], batch, "relevancy")
    assert [np.unravel_index(m.argmax(), GRID) for m in maps] == [PEAK[0], PEAK[1]]


def test_fusion_relevancy_zeroes_the_padded_text_tokens(models, monkeypatch):
    n = TEXT + 1 + P
    a, w = _peaked(n, first_patch=TEXT + 1)
    monkeypatch.setattr(relevancy_module, "self_attentions", _fusion_attentions(a, w))
    rows = relevancy_module.relevancy_rows(models["fusion"], _batch())
    assert rows["text"].shape == (2, TEXT)
    assert (rows["text"][1, 4:] == 0).all() and (rows["text"][1, :4] > 0).all() and (rows["text"][0] > 0).all()


def test_student_relevancy_reads_the_image_towers_cls_row_onto_the_grid(models, monkeypatch):
    a_img, w_img = _peaked(1 + P, first_patch=1)  # image tower: [CLS] [patches]
    a_txt = torch.full((2, 2, TEXT, TEXT), 1.0 / TEXT).requires_grad_(True)
    w_txt = torch.arange(TEXT, dtype=torch.float).expand(2, 2, TEXT, TEXT)  # gradient grows along the words

    def fake(*args, **kw):
        score = (w_img * a_img).sum((1, 2, 3)) + (w_txt * a_txt).sum((1, 2, 3))
        return {"logits": _logits(score), "image": [a_img], "text": [a_txt], "text_len": TEXT, "grid": GRID}

    monkeypatch.setattr(relevancy_module, "self_attentions", fake)
    for b in (0, 1):
        rel = relevancy(models["dual"], _batch(), index=b)
        row = _expected_row(a_img, w_img, b)
        assert np.unravel_index(rel["image"].argmax(), GRID) == PEAK[b]
        np.testing.assert_allclose(rel["image"], row[1:].reshape(GRID), rtol=1e-5)
        assert rel["image_cls"] == pytest.approx(row[0], rel=1e-5)
        text = _expected_row(a_txt, w_txt, b)[: int(MASK[b].sum())]
        np.testing.assert_allclose(rel["text"], text, rtol=1e-5)


def test_relevancy_follows_the_gradient_of_the_asked_label(models, monkeypatch):
    """Label 2's logit reads only the negative cell, with a positive weight: asking for label 2 moves the peak
    there; the predicted label (0) keeps it at the attention peak."""
    n = TEXT + 1 + P
    a, w = _peaked(n, first_patch=TEXT + 1)
    w2 = torch.zeros_like(w)
    for b in (0, 1):
        w2[b, :, 0, TEXT + 1 + NEGATIVE[b][0] * GRID[1] + NEGATIVE[b][1]] = 50.0

    def fake(*args, **kw):
        logits = torch.stack([(w * a).sum((1, 2, 3)), torch.full((2,), -1e3), (w2 * a).sum((1, 2, 3))], 1)
        return {"logits": logits, "joint": [a], "text_len": TEXT, "grid": GRID}

    monkeypatch.setattr(relevancy_module, "self_attentions", fake)
    assert np.unravel_index(relevancy(models["fusion"], _batch(), index=1)["image"].argmax(), GRID) == PEAK[1]
    asked = relevancy(models["fusion"], _batch(), target=2, index=1)
    assert asked["target"] == 2 and np.unravel_index(asked["image"].argmax(), GRID) == NEGATIVE[1]
    per_example = relevancy_module.relevancy_rows(models["fusion"], _batch(), target=[2, 0])
    assert per_example["target"].tolist() == [2, 0]
    assert np.unravel_index(per_example["image"][0].argmax(), GRID) == NEGATIVE[0]
    assert np.unravel_index(per_example["image"][1].argmax(), GRID) == PEAK[1]
