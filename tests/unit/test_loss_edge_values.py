"""Edge cases of the loss functions (workbench/losses.py) against hand-computed values: an instance with a single
distilled token, the attention loss's value type under a double-precision query mask, and the exact message of
a width mismatch in embedding distillation."""

import math

import pytest
import torch

from workbench import losses


def test_an_instance_with_one_selected_token_averages_over_that_one_token():
    s = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[3.0, 4.0], [1.0, 1.0]]])
    t = torch.tensor([[[0.0, 1.0], [0.0, 1.0]], [[3.0, 4.0], [-1.0, -1.0]]])
    mask = torch.tensor([[True, False], [True, True]])
    # instance 0: token 0 only, cosine distance 1; instance 1: (0 + 2) / 2 = 1. Batch mean: 1
    assert losses.token_feature_distill(s, t, mask).item() == pytest.approx(1.0)
    # mse: instance 0: ((1 - 0)^2 + (0 - 1)^2) / 2 = 1; instance 1: (0 + (4 + 4) / 2) / 2 = 2. Batch mean: 1.5
    assert losses.token_feature_distill(s, t, mask, kind="mse").item() == pytest.approx(1.5)
    w = torch.tensor([0.5, 1.5])
    assert losses.token_feature_distill(s, t, mask, w, kind="mse").item() == pytest.approx((0.5 * 1 + 1.5 * 2) / 2)


def test_attention_kl_stays_in_single_precision_under_a_double_precision_query_mask():
    student = torch.tensor([[[[0.0, 1.0], [2.0, 0.0]]]])  # [B=1, H=1, Q=2, K=2]
    teacher = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    query_mask = torch.tensor([[1.0, 0.0]], dtype=torch.float64)  # only query 0 counts
    got = losses.attention_kl(student, teacher, query_mask=query_mask)
    # query 0: p_t = softmax(1, 0), p_s = softmax(0, 1): KL = sum p_t (log p_t - log p_s)
    p = [math.e / (math.e + 1), 1 / (math.e + 1)]
    want = p[0] * (math.log(p[0]) - math.log(p[1])) + p[1] * (math.log(p[1]) - math.log(p[0]))
    assert got.dtype == torch.float32 and got.item() == pytest.approx(want, rel=1e-6)
    assert losses.attention_kl(student, teacher, query_mask=query_mask.bool()).item() == pytest.approx(want, rel=1e-6)


def test_embedding_distill_names_the_fix_for_a_width_mismatch():
    with pytest.raises(
        ValueError,
        match=r"^embedding shapes differ: student \(2, 3\), teacher \(2, 4\) \(build the student with embed_dim = "
        r"the teacher's embedding width\)$",
    ):
        losses.embedding_distill(torch.zeros(2, 3), torch.zeros(2, 4))
