"""MCAD and retrieval-distillation losses against values computed by hand on 2 x 2 (and 4 x 4) tensors."""

import math

import pytest
import torch

from workbench import losses

LOG3 = math.log(3.0)
KL_34 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # KL((3/4, 1/4) || (1/2, 1/2))


def _sp(x: float) -> float:  # -log sigmoid(x) = log(1 + e^-x): cross-entropy of a two-way row with margin x
    return math.log1p(math.exp(-x))


def test_clip_contrastive_is_the_mean_of_row_and_column_cross_entropies():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0]])
    rows = (_sp(2 - 1) + _sp(3 - 0)) / 2  # image->text: row 0 [2, 1], row 1 [0, 3]
    cols = (_sp(2 - 0) + _sp(3 - 1)) / 2  # text->image: column 0 [2, 0], column 1 [1, 3]
    assert losses.clip_contrastive(logits).item() == pytest.approx((rows + cols) / 2, rel=1e-6)


def test_affinity_kl_rows_and_columns_by_hand():
    # every row of the teacher is (3/4, 1/4); its columns are uniform; the student is uniform everywhere
    teacher = torch.tensor([[LOG3, 0.0], [LOG3, 0.0]])
    student = torch.zeros(2, 2)
    i2t, t2i = losses.affinity_kl(student, teacher)
    assert i2t.item() == pytest.approx(KL_34, rel=1e-6)
    assert t2i.item() == pytest.approx(0.0, abs=1e-7)
    # the transpose swaps the two directions
    i2t, t2i = losses.affinity_kl(student.T, teacher.T)
    assert (i2t.item(), t2i.item()) == pytest.approx((0.0, KL_34), rel=1e-6, abs=1e-7)
    # temperature T divides both matrices and the loss is scaled by T^2
    i2t, _ = losses.affinity_kl(student, 2 * teacher, temperature=2.0)
    assert i2t.item() == pytest.approx(4 * KL_34, rel=1e-6)
    with pytest.raises(ValueError, match="shapes differ"):
        losses.affinity_kl(torch.zeros(2, 3), torch.zeros(2, 2))


def test_embedding_distill_cosine_and_squared_l2_by_hand():
    s = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    t = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert losses.embedding_distill(s, t, "cosine").item() == pytest.approx((1 + 0) / 2)
    assert losses.embedding_distill(s, t, "squared-l2").item() == pytest.approx((2 + 0) / 2)  # ||(1,-1)||^2 = 2
    with pytest.raises(ValueError, match="embed_dim"):
        losses.embedding_distill(torch.zeros(2, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="unknown embedding loss"):
        losses.embedding_distill(s, t, "l1")


def test_fusion_pair_mask_is_the_diagonal_plus_top_k_of_rows_and_columns():
    logits = torch.tensor(
        [
            [5.0, 9.0, 0.0, 0.0],  # row 0's top-1: column 1
            [0.0, 5.0, 0.0, 1.0],  # row 1's top-1: column 1 (already the diagonal)
            [0.0, 0.0, 1.0, 0.0],  # row 2: ties at 0 and the diagonal 1 -> column 2
            [0.0, 0.0, 8.0, 5.0],  # row 3's top-1: column 2
        ]
    )
    mask = losses.fusion_pair_mask(logits, k=1)
    # column tops: column 0 -> row 0, column 1 -> row 0, column 2 -> row 3, column 3 -> row 3
    expected = torch.tensor(
        [
            [1, 1, 0, 0],
            [0, 1, 0, 0],
            [0, 0, 1, 0],
            [0, 0, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(mask, expected)
    assert losses.fusion_pair_mask(logits, k=0).all() and losses.fusion_pair_mask(logits, k=4).all()


def test_fused_teacher_logits_add_alpha_times_log_match_and_fill_unscored_with_the_minimum():
    dual = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    g = torch.tensor([[math.log(0.9), float("nan")], [math.log(0.1), math.log(0.8)]])
    z = losses.fused_teacher_logits(dual, g, alpha=1.0)
    expected = torch.tensor([[1 + math.log(0.9), math.log(0.1)], [math.log(0.1), 1 + math.log(0.8)]])
    torch.testing.assert_close(z, expected)
    # half the weight: the fusion probabilities enter as P^alpha
    z = losses.fused_teacher_logits(dual, g, alpha=0.5)
    assert z[0, 0].item() == pytest.approx(1 + 0.5 * math.log(0.9))
    # alpha = 0 (or no fusion scores): the dual teacher alone
    assert losses.fused_teacher_logits(dual, g, alpha=0.0) is dual
    assert losses.fused_teacher_logits(dual, None) is dual
    with pytest.raises(ValueError, match="scored no pair"):
        losses.fused_teacher_logits(dual, torch.full((2, 2), float("nan")))


def test_the_fusion_teacher_vetoes_a_hard_negative_the_dual_teacher_prefers():
    """Product of experts: softmax(S + G) = p_dual * P_match / Z; a mixture could not flip the order."""
    dual = torch.tensor([[1.0, 2.0]])  # image 0: the dual teacher prefers caption 1 (a hard negative)
    g = torch.tensor([[math.log(0.9), math.log(0.01)]])  # the fusion teacher: caption 0 matches, 1 does not
    p = losses.fused_teacher_logits(dual, g).softmax(-1)[0]
    want = torch.tensor([math.e * 0.9, math.e**2 * 0.01])
    torch.testing.assert_close(p, want / want.sum())
    assert p.argmax() == 0


def test_modified_teacher_features_by_hand():
    u = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # image embeddings
    w = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # caption embeddings
    z = torch.tensor([[LOG3, 0.0], [0.0, 0.0]])  # rows (3/4, 1/4), (1/2, 1/2); columns (3/4, 1/4), (1/2, 1/2)
    u2, w2 = losses.modified_teacher_features(u, w, z, beta=1.0)

    def unit(x, y):
        n = math.hypot(x, y)
        return [x / n, y / n]

    # u'_0 = u_0 + 3/4 w_0 + 1/4 w_1 = (1.25, 0.75); u'_1 = u_1 + (w_0 + w_1) / 2 = (0.5, 1.5)
    torch.testing.assert_close(u2, torch.tensor([unit(1.25, 0.75), unit(0.5, 1.5)]))
    # w'_0 = w_0 + 3/4 u_0 + 1/4 u_1 = (0.75, 1.25); w'_1 = w_1 + (u_0 + u_1) / 2 = (1.5, 0.5)
    torch.testing.assert_close(w2, torch.tensor([unit(0.75, 1.25), unit(1.5, 0.5)]))
    same = losses.modified_teacher_features(u, w, z, beta=0.0)
    assert same[0] is u and same[1] is w


def test_losses_send_finite_gradients_to_the_student_only():
    torch.manual_seed(0)
    s_img = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1).requires_grad_(True)
    s_txt = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1).requires_grad_(True)
    t_img, t_txt = torch.nn.functional.normalize(torch.randn(2, 4, 8), dim=-1)
    s = 10 * s_img @ s_txt.T
    g = torch.randn(4, 4).masked_fill(~losses.fusion_pair_mask(t_img @ t_txt.T, 1), float("nan"))
    z = losses.fused_teacher_logits(10 * t_img @ t_txt.T, g)
    u, w = losses.modified_teacher_features(t_img, t_txt, z)
    total = losses.clip_contrastive(s) + sum(losses.affinity_kl(s, z, 2.0))
    total = total + losses.embedding_distill(s_img, u) + losses.embedding_distill(s_txt, w, "squared-l2")
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(s_img.grad).all() and s_img.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------- edges the mutants found


def test_affinity_kl_divides_the_columns_by_the_temperature_too():
    teacher = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, -1.0], [1.0, 1.0, 0.0]])
    student = torch.tensor([[0.5, -1.0, 0.0], [1.0, 0.0, 2.0], [0.0, -2.0, 1.0]])

    def kl_rows(s, t, temperature):
        p, log_q = (t / temperature).softmax(-1), (s / temperature).log_softmax(-1)
        return ((p * (p.log() - log_q)).sum(-1).mean() * temperature**2).item()

    i2t, t2i = losses.affinity_kl(student, teacher, temperature=2.0)
    assert i2t.item() == pytest.approx(kl_rows(student, teacher, 2.0), rel=1e-6)
    assert t2i.item() == pytest.approx(kl_rows(student.T, teacher.T, 2.0), rel=1e-6)
    assert t2i.item() != pytest.approx(kl_rows(student.T, teacher.T, 1.0), rel=1e-2)


def test_squared_l2_sums_over_dimensions_and_averages_over_the_batch():
    s = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])  # 2 examples of 3 dimensions
    t = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert losses.embedding_distill(s, t, "squared-l2").item() == pytest.approx((1 + 5) / 2)
    with pytest.raises(ValueError, match=r"\(build the student with embed_dim = the teacher's embedding width\)"):
        losses.embedding_distill(torch.zeros(2, 3), torch.zeros(2, 2))


def test_every_pair_is_scored_when_k_is_not_below_the_batch():
    logits = torch.randn(3, 3, generator=torch.Generator().manual_seed(0))
    for k in (0, -1, 3, 5):
        mask = losses.fusion_pair_mask(logits, k)
        assert mask.dtype == torch.bool and mask.shape == (3, 3) and bool(mask.all())


def test_the_fused_logits_need_one_scored_pair_and_the_default_beta_is_one_half():
    with pytest.raises(ValueError, match="^the fusion teacher scored no pair$"):
        losses.fused_teacher_logits(torch.zeros(2, 2), torch.full((2, 2), float("nan")))
    u = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8]]), dim=-1)
    w = torch.nn.functional.normalize(torch.tensor([[0.0, 1.0], [1.0, 1.0]]), dim=-1)
    z = torch.tensor([[1.0, 0.0], [0.5, 2.0]])
    default = losses.modified_teacher_features(u, w, z)
    half = losses.modified_teacher_features(u, w, z, beta=0.5)
    assert all(torch.allclose(a, b) for a, b in zip(default, half))
    assert not torch.allclose(default[0], losses.modified_teacher_features(u, w, z, beta=1.0)[0])


def test_fused_feature_targets_add_the_fused_feature_at_full_weight_by_default():
    u, v = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    f = torch.tensor([[1.0, 1.0]])
    got_u, got_v = losses.fused_feature_targets(u, v, f)
    torch.testing.assert_close(got_u, torch.nn.functional.normalize(torch.tensor([[2.0, 1.0]]), dim=-1))
    torch.testing.assert_close(got_v, torch.nn.functional.normalize(torch.tensor([[1.0, 2.0]]), dim=-1))
