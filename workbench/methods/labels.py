"""The label baselines every comparison includes: `none` (the dual student on hard labels alone), `kd`
(Hinton soft-label KD from the fusion teacher, T = 1, hard labels off as in DiDE's fine-tuning) and `hard` (the
fusion student on hard labels alone: MAD's baseline, the same student MAD trains, without its teachers)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Literal

from workbench.methods.base import Method, register
from workbench.methods.dual_student import TeacherObjective, teacher_to_dual
from workbench.train import TrainConfig, train


@dataclass
class HardLabelConfig:
    hard: float = 1.0  # weight of the hard-label loss (cross-entropy; VQA: BCE on the soft VQA targets)


@dataclass
class SoftLabelConfig:
    hard: float = 0.0  # weight of the hard-label loss (official DiDE fine-tuning: off)
    soft: float = 1.0  # weight of soft-label KD from the teacher's logits
    temperature: float = 1.0  # KD temperature (single-label tasks; the multi-label BCE has none)
    teacher_cache: str | None = None  # folder keeping the teacher's outputs on disk: later epochs skip the teacher
    teacher_cache_dtype: Literal["float32", "bfloat16"] = "float32"  # float32: as uncached, to float rounding


class LabelObjective(TeacherObjective):
    """Hard and / or soft label losses only (`TeacherObjective.label_terms`)."""

    def loss(self, student, batch):
        logits = student(batch.input_ids, batch.attention_mask, batch.pixel_values, pixel_mask=batch.pixel_mask).logits
        teacher_logits = self.teacher_outputs(batch)["logits"] if self.teacher is not None else None
        return self.label_terms(logits, teacher_logits, batch)


def run_fusion_student(cfg: TrainConfig, config, resume: bool = False, progress: bool = True) -> dict:
    """A fusion student of `cfg.size` (or `cfg.init_from`) with the workbench's tokenizer, on labels alone."""
    cfg = replace(cfg, model="fusion", teacher=None, recipe_args=asdict(config))
    return train(cfg, recipe=LabelObjective(cfg.recipe, config), resume=resume, progress=progress)


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
register(
    Method(
        name="hard",
        summary="no distillation, fusion student: the single-stream encoder on hard labels (MAD's baseline)",
        task="answer",
        student="fusion",
        Config=HardLabelConfig,
        run=run_fusion_student,
    )
)
