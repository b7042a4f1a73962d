"""The label baselines every comparison includes: `none` (the dual student on hard labels alone) and `kd`
(Hinton soft-label KD from the fusion teacher, T = 1, hard labels off as in DiDE's fine-tuning)."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.methods.base import Method, register
from workbench.methods.dual_student import TeacherObjective, teacher_to_dual


@dataclass
class HardLabelConfig:
    hard: float = 1.0  # weight of the hard-label loss (cross-entropy; VQA: BCE on the soft VQA targets)


@dataclass
class SoftLabelConfig:
    hard: float = 0.0  # weight of the hard-label loss (official DiDE fine-tuning: off)
    soft: float = 1.0  # weight of soft-label KD from the teacher's logits
    temperature: float = 1.0  # KD temperature (single-label tasks; the multi-label BCE has none)


class LabelObjective(TeacherObjective):
    """Hard and / or soft label losses only (`TeacherObjective.label_terms`)."""

    def loss(self, student, batch):
        logits = student(batch.input_ids, batch.attention_mask, batch.pixel_values).logits
        teacher_logits = self.teacher_out(batch).logits if self.teacher is not None else None
        return self.label_terms(logits, teacher_logits, batch)


register(
    Method(
        name="none",
        summary="no distillation: the dual student on hard labels (the teacher gives only its tokenizer and size)",
        task="answer",
        student="dual",
        Config=HardLabelConfig,
        run=teacher_to_dual(LabelObjective),
    )
)
register(
    Method(
        name="kd",
        summary="soft-label KD: KL(teacher || student) of the answer distributions (VQA: BCE on sigmoids)",
        task="answer",
        student="dual",
        Config=SoftLabelConfig,
        run=teacher_to_dual(LabelObjective),
    )
)
