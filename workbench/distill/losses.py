"""Every distillation loss, as pure functions on tensors (no models, no state).

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
    """Multi-label VQA (soft scores): BCE(z_S, sigmoid(z_T)), averaged over batch x answers."""
    target = teacher_logits.float().sigmoid()
    return nn.functional.binary_cross_entropy_with_logits(student_logits.float(), target)


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
