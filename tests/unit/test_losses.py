"""Distillation losses against values computed by hand on small tensors."""

import math

import pytest
import torch

from workbench import losses


def test_attention_kl_by_hand():
    # one batch, one head, one query, two keys
    t = torch.tensor([[[[math.log(3.0), 0.0]]]])  # teacher probs (3/4, 1/4)
    s = torch.tensor([[[[0.0, 0.0]]]])  # student probs (1/2, 1/2)
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert losses.attention_kl(s, t).item() == pytest.approx(expected, rel=1e-6)
    assert losses.attention_kl(t, t).item() == pytest.approx(0.0, abs=1e-7)


def test_attention_kl_masked_keys_contribute_nothing_and_no_nan():
    t = torch.tensor([[[[math.log(3.0), 0.0, 50.0]]]])
    s = torch.tensor([[[[0.0, 0.0, -50.0]]]])
    mask = torch.tensor([[1, 1, 0]])
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    out = losses.attention_kl(s, t, mask)
    assert out.item() == pytest.approx(expected, rel=1e-6)
    s.requires_grad_(True)
    losses.attention_kl(s, t, mask).backward()
    assert torch.isfinite(s.grad).all() and s.grad[..., 2].abs().max() == 0


def test_attention_kl_sums_over_keys_and_averages_batch_heads_queries():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(2, 3, 4, 5, generator=g)
    t = torch.randn(2, 3, 4, 5, generator=g)
    p_t, log_t, log_s = t.softmax(-1), t.log_softmax(-1), s.log_softmax(-1)
    by_hand = (p_t * (log_t - log_s)).sum(-1).mean()
    assert losses.attention_kl(s, t).item() == pytest.approx(by_hand.item(), rel=1e-5)
    # query mask: only the first two queries of sample 0 and all of sample 1
    qm = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    per_q = (p_t * (log_t - log_s)).sum(-1)  # [2, 3, 4]
    expected = (per_q[0, :, :2].sum() + per_q[1].sum()) / (3 * 2 + 3 * 4)
    assert losses.attention_kl(s, t, query_mask=qm).item() == pytest.approx(expected.item(), rel=1e-5)


def test_attention_kl_rejects_mismatched_heads():
    with pytest.raises(ValueError, match="equal heads"):
        losses.attention_kl(torch.zeros(1, 2, 3, 4), torch.zeros(1, 4, 3, 4))


def test_soft_label_kd_by_hand_with_temperature():
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[2 * math.log(3.0), 0.0]])  # at T = 2: teacher probs (3/4, 1/4)
    expected = (0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)) * 4
    assert losses.soft_label_kd(s, t, temperature=2.0).item() == pytest.approx(expected, rel=1e-6)
    assert losses.soft_label_kd(t, t).item() == pytest.approx(0.0, abs=1e-7)


def test_soft_label_kd_multilabel_by_hand():
    s = torch.tensor([[0.0]])
    t = torch.tensor([[math.log(3.0)]])  # sigmoid = 3/4
    expected = -(0.75 * math.log(0.5) + 0.25 * math.log(0.5))
    assert losses.soft_label_kd_multilabel(s, t).item() == pytest.approx(expected, rel=1e-6)


def test_teacher_cross_scores_slice_at_the_boundary():
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, 2, 7, 4, generator=g), torch.randn(2, 2, 7, 4, generator=g)
    t2i, i2t = losses.teacher_cross_scores(q, k, text_len=3)
    assert t2i.shape == (2, 2, 3, 4) and i2t.shape == (2, 2, 4, 3)
    assert t2i[1, 0, 2, 1].item() == pytest.approx((q[1, 0, 2] @ k[1, 0, 4]).item() / 2, rel=1e-5)
    assert i2t[0, 1, 3, 0].item() == pytest.approx((q[0, 1, 6] @ k[0, 1, 0]).item() / 2, rel=1e-5)


def test_student_cross_scores_pair_the_towers():
    g = torch.Generator().manual_seed(2)
    qt, kt = torch.randn(1, 2, 3, 4, generator=g), torch.randn(1, 2, 3, 4, generator=g)
    qi, ki = torch.randn(1, 2, 5, 4, generator=g), torch.randn(1, 2, 5, 4, generator=g)
    t2i, i2t = losses.student_cross_scores((qt, kt), (qi, ki))
    torch.testing.assert_close(t2i, qt @ ki.transpose(-1, -2) / 2)
    torch.testing.assert_close(i2t, qi @ kt.transpose(-1, -2) / 2)


def test_vqa_bce_is_the_mean_binary_cross_entropy_times_the_number_of_answers():
    # one question, two answers: logits (0, ln 3), targets (1, 0.3) -> sigmoids (1/2, 3/4)
    logits = torch.tensor([[0.0, math.log(3.0)]])
    targets = torch.tensor([[1.0, 0.3]])
    per_answer = [-math.log(0.5), -(0.3 * math.log(0.75) + 0.7 * math.log(0.25))]
    expected = sum(per_answer) / 2 * 2  # mean over batch x answers, times 2 answers
    assert losses.vqa_bce(logits, targets).item() == pytest.approx(expected, rel=1e-6)
    # a question whose answers are all outside the vocabulary (zero targets) still counts: BCE towards 0
    zero = losses.vqa_bce(torch.zeros(1, 4), torch.zeros(1, 4)).item()
    assert zero == pytest.approx(4 * math.log(2.0), rel=1e-6)


def test_multilabel_soft_kd_targets_the_teachers_sigmoids_times_the_number_of_answers():
    student = torch.tensor([[0.0, 0.0, 0.0]])
    teacher = torch.tensor([[0.0, math.log(3.0), -math.log(3.0)]])  # sigmoids 1/2, 3/4, 1/4
    # BCE(p=1/2 for every student logit) = ln 2 whatever the target: mean ln 2, times 3 answers
    assert losses.soft_label_kd_multilabel(student, teacher).item() == pytest.approx(3 * math.log(2.0), rel=1e-6)
    # a student equal to its teacher sits at the minimum: the target's entropy, summed over answers
    h = lambda p: -(p * math.log(p) + (1 - p) * math.log(1 - p))  # noqa: E731
    got = losses.soft_label_kd_multilabel(teacher, teacher).item()
    assert got == pytest.approx(h(0.5) + h(0.75) + h(0.25), rel=1e-6)


# ---------------------------------------------------------------------------------------------- edges the mutants found


def test_soft_label_kd_divides_both_sides_by_the_temperature_and_defaults_to_one():
    s = torch.tensor([[1.0, -1.0, 0.5], [0.0, 2.0, -2.0]])
    t = torch.tensor([[0.0, 1.5, 0.0], [3.0, 0.0, -2.0]])

    def by_hand(temperature):
        p, log_q = (t / temperature).softmax(-1), (s / temperature).log_softmax(-1)
        return ((p * (p.log() - log_q)).sum(-1).mean() * temperature**2).item()

    assert losses.soft_label_kd(s, t, temperature=3.0).item() == pytest.approx(by_hand(3.0), rel=1e-6)
    assert losses.soft_label_kd(s, t).item() == pytest.approx(by_hand(1.0), rel=1e-6)
    assert by_hand(3.0) != pytest.approx(by_hand(1.0), rel=1e-2)


def test_attention_kl_with_a_single_real_query_is_that_querys_kl():
    t = torch.tensor([[[[math.log(3.0), 0.0], [5.0, -5.0]]]])  # query 0: teacher (3/4, 1/4); query 1 padded
    s = torch.zeros(1, 1, 2, 2)
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    got = losses.attention_kl(s, t, query_mask=torch.tensor([[1, 0]]))
    assert got.item() == pytest.approx(expected, rel=1e-6)  # divided by one real query, not more
    assert losses.attention_kl(s, t, query_mask=torch.tensor([[0, 0]])).item() == 0.0  # none real: 0, not NaN
