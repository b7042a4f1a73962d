"""Every loss of the workbench, as pure functions on tensors (no models, no state), one meaning per name.

Sections: label losses (hard and soft, single- and multi-label), DiDE's cross-modal attention distillation,
MAD's token-feature distillation (token selection, confidence weights), retrieval distillation (MCAD and its
baselines). The methods in `workbench.methods` combine them; docs/methods.md gives the formulas.

Notation: scores are pre-softmax attention logits `q k^T * scale`, shaped [batch, heads, queries,
keys]; `key_mask` is [batch, keys] with 1 for a real token and 0 for padding.
"""

from __future__ import annotations

import torch
from torch import nn


def _masked_log_softmax(scores: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    if key_mask is None:
        return scores.float().log_softmax(-1)
    keep = key_mask[:, None, None, :].bool()
    return scores.float().masked_fill(~keep, float("-inf")).log_softmax(-1)


def attention_kl(
    student_scores: torch.Tensor,
    teacher_scores: torch.Tensor,
    key_mask: torch.Tensor | None = None,
    query_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL(softmax(teacher) || softmax(student)) per head and query, summed over keys, averaged.

    DiDE's attention distillation (T = 1, no head averaging). Masked keys get -inf scores and
    contribute exactly zero (no NaN from 0 * log 0). The mean is over batch x heads x queries;
    with `query_mask` [batch, queries] only real queries are averaged (padded text queries of the
    text-to-image map say nothing).
    """
    if student_scores.shape != teacher_scores.shape:
        raise ValueError(
            f"score shapes differ: student {tuple(student_scores.shape)}, teacher "
            f"{tuple(teacher_scores.shape)} (DiDE needs equal heads and tokens)"
        )
    log_s = _masked_log_softmax(student_scores, key_mask)
    log_t = _masked_log_softmax(teacher_scores, key_mask)
    p_t = log_t.exp()
    per_key = torch.where(p_t > 0, p_t * (log_t - log_s), torch.zeros_like(p_t))
    per_query = per_key.sum(-1)  # [B, H, Q]
    if query_mask is None:
        return per_query.mean()
    weights = query_mask[:, None, :].to(per_query.dtype).expand_as(per_query)
    return (per_query * weights).sum() / weights.sum().clamp(min=1)


def soft_label_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Hinton KD: KL(softmax(z_T / T) || softmax(z_S / T)) * T^2, averaged over the batch."""
    t = temperature
    log_s = (student_logits.float() / t).log_softmax(-1)
    log_t = (teacher_logits.float() / t).log_softmax(-1)
    return (log_t.exp() * (log_t - log_s)).sum(-1).mean() * t * t


def soft_label_kd_multilabel(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Multi-label soft-label KD (VQA): BCE(z_S, sigmoid(z_T)) averaged over batch x answers, times the number of
    answers. The factor is the official DiDE code's (and ViLT's on its VQA loss): a mean over 3,129 answers
    would otherwise make the term ~3,000 times smaller than a softmax KL on the same logits. The teacher's logits
    are a target: they get no gradient."""
    target = teacher_logits.detach().float().sigmoid()
    bce = nn.functional.binary_cross_entropy_with_logits(student_logits.float(), target)
    return bce * student_logits.shape[-1]


def vqa_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """ViLT's VQA loss: BCE of the logits against soft VQA targets [B, A] (a score in [0, 1] per answer, zero
    rows for questions whose answers are all outside the vocabulary), averaged over batch x answers and
    multiplied by the number of answers A (as ViLT's `compute_vqa`)."""
    bce = nn.functional.binary_cross_entropy_with_logits(logits.float(), targets.float())
    return bce * logits.shape[-1]


# ----------------------------------------------------------------------------------------------
# DiDE cross-modal scores: the teacher's recomputed from sliced q/k, the student's "virtual" ones


def _scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5


def teacher_cross_scores(q: torch.Tensor, k: torch.Tensor, text_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fusion teacher, sequence [text (text_len)] [image]: (t2i, i2t) pre-softmax scores.

    As in the official DiDE code, q and k are sliced at the modality boundary and the scores are
    recomputed over the other modality's keys only, not read off renormalised joint attention.
    """
    q_t, q_i = q[:, :, :text_len], q[:, :, text_len:]
    k_t, k_i = k[:, :, :text_len], k[:, :, text_len:]
    return _scores(q_t, k_i), _scores(q_i, k_t)


def student_cross_scores(
    text_qk: tuple[torch.Tensor, torch.Tensor], image_qk: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dual student: text-tower q against image-tower k (t2i) and the reverse (i2t).

    The towers never attend to each other; this "virtual" cross-attention exists only in the loss.
    """
    (q_t, k_t), (q_i, k_i) = text_qk, image_qk
    return _scores(q_t, k_i), _scores(q_i, k_t)


# ----------------------------------------------------------------------------------------------
# MAD: token-feature distillation from unimodal teachers into the fusion student (`workbench.methods.mad`)


@torch.no_grad()
def select_image_tokens(t2i_attention: torch.Tensor, text_mask: torch.Tensor, k: int) -> torch.Tensor:
    """[B, P] bool: per instance, the `k` image patches with the highest text-to-image attention.

    t2i_attention: [B, H, T, P] attention probabilities from text queries to image patch keys (a slice of
    the joint softmax, not renormalised); text_mask: [B, T], 1 for a real text token ([CLS] and [SEP]
    included). The score of a patch is the mean over heads, then over the real text tokens. Ties are broken
    towards the lower patch index (a stable sort), so the choice is deterministic. k >= P selects all.
    """
    b, _, _, p = t2i_attention.shape
    if k >= p:
        return torch.ones(b, p, dtype=torch.bool, device=t2i_attention.device)
    if k <= 0:
        return torch.zeros(b, p, dtype=torch.bool, device=t2i_attention.device)
    per_query = t2i_attention.float().mean(1)  # [B, T, P]
    m = text_mask.to(per_query)[..., None]
    score = (per_query * m).sum(1) / m.sum(1).clamp(min=1)  # [B, P]
    top = torch.sort(score, dim=1, descending=True, stable=True).indices[:, :k]
    chosen = torch.zeros(b, p, dtype=torch.bool, device=score.device)
    return chosen.scatter_(1, top, True)


@torch.no_grad()
def confidence_weights(teacher_probs_of_gold: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """[B] per-instance weights, proportional to the teacher side's probability of the gold answer and
    scaled to sum to the batch size (mean 1: a batch of equal confidences gets the uniform weights, and the
    loss keeps its scale). Computed without gradient and detached; a batch of all-zero confidences gets 1s.
    """
    p = teacher_probs_of_gold.detach().float().clamp(min=0)
    total = p.sum()
    if total <= eps:
        return torch.ones_like(p)
    return p * (p.numel() / total)


def token_feature_distill(
    student_tokens: torch.Tensor,
    teacher_tokens: torch.Tensor,
    mask: torch.Tensor,
    weights: torch.Tensor | None = None,
    kind: str = "cosine",
) -> torch.Tensor:
    """Weighted token-level feature distillation (the student side already projected to the teacher's width).

    student_tokens, teacher_tokens: [B, N, D]; mask: [B, N] (True / 1: distil this token); weights: [B]
    (None: 1). Per token: `cosine` 1 - cos(s, t); `mse` mean over D of (s - t)^2. Per instance: the mean over
    its masked tokens (an instance with none contributes 0). Result: sum_i weights_i * instance_i / B.
    """
    if student_tokens.shape != teacher_tokens.shape:
        raise ValueError(
            f"feature shapes differ: student {tuple(student_tokens.shape)}, teacher {tuple(teacher_tokens.shape)}"
        )
    s, t = student_tokens.float(), teacher_tokens.float()
    if kind == "cosine":
        per_token = 1 - nn.functional.cosine_similarity(s, t, dim=-1)
    elif kind == "mse":
        per_token = (s - t).pow(2).mean(-1)
    else:
        raise ValueError(f"unknown token feature loss {kind!r}; expected 'cosine' or 'mse'")
    m = mask.to(per_token.dtype)
    per_instance = (per_token * m).sum(1) / m.sum(1).clamp(min=1)
    w = torch.ones_like(per_instance) if weights is None else weights.to(per_instance).detach()
    return (w * per_instance).sum() / per_instance.shape[0]


# ----------------------------------------------------------------------------------------------
# Retrieval distillation (MCAD and its baselines, `workbench.methods.mcad`). Notation: a batch of B
# aligned pairs (image i, caption i); `logits` are [B, B] image-text similarity matrices, row i =
# image i against every caption (image->text), column j = caption j against every image
# (text->image), matching pairs on the diagonal. Embeddings are L2-normalised [B, D].


def clip_contrastive(logits: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE: mean of the cross-entropies of rows (image->text) and columns
    (text->image) against the diagonal."""
    target = torch.arange(logits.shape[0], device=logits.device)
    logits = logits.float()
    return 0.5 * (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target))


def affinity_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distribution distillation on similarity matrices: (image->text, text->image) terms.

    Each is `soft_label_kd` (KL(teacher || student) of softmaxes at temperature T, times T^2,
    averaged over queries) on the rows, respectively on the columns. TinyCLIP's affinity mimicking,
    CLIP-KD's contrastive relational distillation and MCAD's distribution distillation are this
    loss with different teacher matrices.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"similarity shapes differ: {tuple(student_logits.shape)} vs {tuple(teacher_logits.shape)}")
    i2t = soft_label_kd(student_logits, teacher_logits, temperature)
    t2i = soft_label_kd(student_logits.T, teacher_logits.T, temperature)
    return i2t, t2i


def embedding_distill(student: torch.Tensor, teacher: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """Student embeddings towards teacher embeddings of the same width, averaged over the batch.

    `cosine`: 1 - cos(s, t). `squared-l2`: ||s - t||^2 summed over dimensions (CLIP-KD's feature
    distillation; on unit vectors it equals 2 * (1 - cos); not `token_feature_distill`'s `mse`, a mean).
    Widths must agree: a student is built
    with its retrieval projection sized to the teacher's embedding width, so that projection is the
    learned map between the two spaces.
    """
    if student.shape != teacher.shape:
        raise ValueError(
            f"embedding shapes differ: student {tuple(student.shape)}, teacher {tuple(teacher.shape)} "
            "(build the student with embed_dim = the teacher's embedding width)"
        )
    s, t = student.float(), teacher.float()
    if kind == "cosine":
        return (1 - nn.functional.cosine_similarity(s, t, dim=-1)).mean()
    if kind == "squared-l2":
        return (s - t).pow(2).sum(-1).mean()
    raise ValueError(f"unknown embedding loss {kind!r}; expected 'cosine' or 'squared-l2'")


def fusion_pair_mask(teacher_logits: torch.Tensor, k: int) -> torch.Tensor:
    """[B, B] bool: the pairs the fusion teacher scores — the diagonal, each image's top-k captions
    and each caption's top-k images under the dual teacher (k <= 0 or k >= B: every pair).

    Ours (the paper scores every in-batch pair): a single-stream pass per pair makes B^2 passes per
    step (64 x 64 = 4,096, ~15 s on our CPU); outside the dual teacher's top-k its probabilities
    are already near zero, so a correction there barely moves the distributions.
    """
    b = teacher_logits.shape[0]
    if k <= 0 or k >= b:
        return torch.ones(b, b, dtype=torch.bool, device=teacher_logits.device)
    mask = torch.eye(b, dtype=torch.bool, device=teacher_logits.device)
    mask.scatter_(1, teacher_logits.topk(k, dim=1).indices, True)
    mask.scatter_(0, teacher_logits.topk(k, dim=0).indices, True)
    return mask


def fused_teacher_logits(
    dual_logits: torch.Tensor, fusion_log_match: torch.Tensor | None, alpha: float = 1.0
) -> torch.Tensor:
    """MCAD's modified teacher similarities: `Z = S_dual + alpha * G`.

    `S_dual`: the dual teacher's logits (its own temperature applied). `G[i, j]`: the fusion
    teacher's log P(match | image i, caption j) from its image-text matching head; NaN marks pairs it
    did not score (see `fusion_pair_mask`), which get the smallest scored value in the batch (the
    dual teacher ranked them below its top-k; they are taken to match no better than the worst
    candidate the fusion teacher saw). `alpha = 0` gives the dual teacher alone.

    Why a sum of logits (ours; the paper does not give the formula): each row's softmax is then
    proportional to p_dual(caption | image) * P_fusion(match)^alpha — a product of experts, so the
    single-stream teacher can veto a hard negative the dual teacher likes. A convex mix of the two
    softmaxes could not: it keeps at least (1 - weight) of the dual teacher's mass on that negative.
    """
    if fusion_log_match is None or alpha == 0:
        return dual_logits
    g = fusion_log_match.float()
    scored = ~torch.isnan(g)
    if not scored.any():
        raise ValueError("the fusion teacher scored no pair")
    g = torch.where(scored, g, g[scored].min())
    return dual_logits.float() + alpha * g


def fused_feature_targets(
    image_emb: torch.Tensor, text_emb: torch.Tensor, fused: torch.Tensor, gamma: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """MCAD's fused features (our instantiation of "incorporating the fused single-stream features into the
    image and text features of the dual-stream model"): `fused[i]` is the fusion teacher's joint
    representation of the matched pair (image i, caption i), mapped into the dual teacher's space
    (`workbench.retrieval.adapter`), and it is added to both sides of that pair:

        u~_i = normalize(u_i + gamma * f_i),   v~_i = normalize(v_i + gamma * f_i)

    The modified similarity distributions are then `scale * u~ v~^T`: pairs whose joint representations are
    alike come closer, and each image moves towards what the fusion teacher saw in it together with its
    caption. `gamma = 0` gives the dual teacher's features.
    """
    if gamma == 0:
        return image_emb, text_emb
    f = fused.float()
    u = nn.functional.normalize(image_emb.float() + gamma * f, dim=-1)
    v = nn.functional.normalize(text_emb.float() + gamma * f, dim=-1)
    return u, v


def modified_teacher_features(
    image_emb: torch.Tensor, text_emb: torch.Tensor, logits: torch.Tensor, beta: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """MCAD's modified teacher features (our instantiation): each teacher embedding plus `beta`
    times the other modality's embeddings averaged under the modified teacher's distribution,
    re-normalised:

        u'_i = normalize(u_i + beta * sum_j softmax_row(Z)_ij w_j)
        w'_j = normalize(w_j + beta * sum_i softmax_col(Z)_ij u_i)

    This is the step after the fused features (`fused_feature_targets`, which add the fusion teacher's
    joint representation, mapped into the dual space by a frozen adapter, to the dual teacher's features):
    the targets are then mixed across modalities under Z. In the scalar ablation (`mcad-scalar`) the fused
    signal reaches the features only this way, through Z (`fused_teacher_logits`): where the fusion
    teacher vetoes a hard negative, that caption no longer pulls on the image's target. `beta = 0` gives
    the teacher's embeddings.
    """
    if beta == 0:
        return image_emb, text_emb
    z = logits.float()
    row, col = z.softmax(dim=1), z.softmax(dim=0)
    u = nn.functional.normalize(image_emb.float() + beta * row @ text_emb.float(), dim=-1)
    w = nn.functional.normalize(text_emb.float() + beta * col.T @ image_emb.float(), dim=-1)
    return u, w
