"""The label terms every answer method shares (`TeacherObjective.label_terms`, the `none` / `kd` / `hard`
objectives), against hand computations: which logits are the teacher's, the temperature, the weights, the
multi-label (VQAv2) forms, and which terms are skipped at weight 0."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from workbench.methods.dual_student import TeacherObjective
from workbench.methods.labels import HardLabelConfig, LabelObjective, SoftLabelConfig
from workbench.models.fusion import FusionOutput

STUDENT = torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.5]])
TEACHER = torch.tensor([[0.0, 1.5, 0.0], [3.0, 0.0, -2.0]])
LABELS = torch.tensor([0, 2])  # the student's argmax is right on example 0 only


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _kd(student, teacher, t):
    """KL(softmax(teacher / t) || softmax(student / t)) * t^2, averaged over the batch."""
    p, q = _softmax(teacher.numpy() / t), _softmax(student.numpy() / t)
    return float(np.mean(np.sum(p * (np.log(p) - np.log(q)), -1))) * t * t


def _ce(student, labels):
    p = _softmax(student.numpy())
    return float(np.mean([-math.log(p[i, y]) for i, y in enumerate(labels.tolist())]))


def _bce_times_answers(logits, targets):
    x, y = logits.numpy().astype(np.float64), targets.numpy().astype(np.float64)
    per = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))
    return float(per.mean()) * x.shape[-1]


def _batch(targets=None):
    return SimpleNamespace(labels=LABELS, targets=targets)


def _terms(config, targets=None):
    return TeacherObjective("test", config).label_terms(STUDENT, TEACHER, _batch(targets))


def test_soft_and_hard_terms_by_hand_with_their_weights_and_temperature():
    total, logs = _terms(SimpleNamespace(hard=0.5, soft=2.0, temperature=3.0))
    kd, ce = _kd(STUDENT, TEACHER, 3.0), _ce(STUDENT, LABELS)
    assert logs["soft"] == pytest.approx(kd, rel=1e-5) and logs["ce"] == pytest.approx(ce, rel=1e-5)
    assert total.item() == pytest.approx(2.0 * kd + 0.5 * ce, rel=1e-5)
    assert logs["accuracy"] == 0.5
    assert abs(_kd(TEACHER, STUDENT, 3.0) - kd) > 1e-2  # the teacher's logits are the target, not the student's


def test_a_term_at_weight_zero_is_skipped_and_without_weights_only_the_hard_labels_count():
    total, logs = _terms(SimpleNamespace(hard=0.0, soft=1.0, temperature=1.0))
    assert "ce" not in logs and total.item() == pytest.approx(_kd(STUDENT, TEACHER, 1.0), rel=1e-5)
    total, logs = _terms(SimpleNamespace())  # a config without the fields: hard labels only
    assert "soft" not in logs and total.item() == pytest.approx(_ce(STUDENT, LABELS), rel=1e-5)
    total, logs = _terms(SimpleNamespace(hard=0.0, soft=0.0, temperature=1.0))
    assert total.item() == 0.0 and set(logs) == {"accuracy"}


def test_vqa_batches_use_the_multilabel_forms_times_the_number_of_answers():
    targets = torch.tensor([[1.0, 0.3, 0.0], [0.0, 0.0, 0.6]])
    total, logs = _terms(SimpleNamespace(hard=1.0, soft=1.0, temperature=5.0), targets=targets)
    soft = _bce_times_answers(STUDENT, torch.sigmoid(TEACHER))  # no temperature in the multi-label form
    hard = _bce_times_answers(STUDENT, targets)
    assert logs["soft"] == pytest.approx(soft, rel=1e-5) and logs["ce"] == pytest.approx(hard, rel=1e-5)
    assert total.item() == pytest.approx(soft + hard, rel=1e-5)


class StandIn(nn.Module):
    def __init__(self, logits, fusion=False):
        super().__init__()
        self.logits, self.fusion = logits, fusion
        self.weight = nn.Parameter(torch.zeros(()))
        self.seen = []

    def forward(self, input_ids, attention_mask, pixel_values, qk_layers=(), pixel_mask=None, **_):
        self.seen.append((attention_mask, pixel_mask))
        logits = self.logits + self.weight
        return FusionOutput(logits=logits) if self.fusion else SimpleNamespace(logits=logits)


def _task_batch():
    return SimpleNamespace(input_ids=torch.ones(2, 3, dtype=torch.long), attention_mask=torch.ones(2, 3),
                           pixel_values=torch.zeros(2, 1, 3, 4, 4), pixel_mask=torch.ones(2, 1, 4, 4),
                           labels=LABELS, targets=None)  # fmt: skip


def test_kd_objective_distils_the_teachers_logits_and_none_learns_the_labels():
    teacher, student = StandIn(TEACHER, fusion=True), StandIn(STUDENT)
    loss, logs = LabelObjective("kd", SoftLabelConfig(temperature=2.0), teacher).loss(student, _task_batch())
    assert loss.item() == pytest.approx(_kd(STUDENT, TEACHER, 2.0), rel=1e-5) and "ce" not in logs
    batch = _task_batch()
    LabelObjective("kd", SoftLabelConfig(), teacher).loss(student, batch)
    assert student.seen[-1] == (batch.attention_mask, batch.pixel_mask)  # the batch's own masks
    assert teacher.seen[-1] == (batch.attention_mask, batch.pixel_mask)
    assert not any(p.requires_grad for p in teacher.parameters())  # the teacher is frozen
    loss.backward()
    assert student.weight.grad is not None and teacher.weight.grad is None
    loss, logs = LabelObjective("none", HardLabelConfig(), None).loss(StandIn(STUDENT), _task_batch())
    assert loss.item() == pytest.approx(_ce(STUDENT, LABELS), rel=1e-5) and "soft" not in logs
