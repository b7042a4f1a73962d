"""Named distillation recipes: each is an object with `loss(student, batch) -> (loss, logs)`.

The training loop (`workbench.train.train`) is shared; a recipe only says what the student learns
from. Teachers are frozen and run in inference mode, so no gradient ever reaches them.

- `none`: the student on hard labels (the baseline).
- `kd`:   soft labels only (Hinton KD, T = 1).
- `dide`: soft labels + text-to-image and image-to-text attention distillation at the chosen
          layers (DESIGN.md §5; the official code switches the hard-label loss off).
- `dide-pt`: the same loss; `workbench.distill.run.distill` runs it after an image-text
          matching stage with attention distillation (the paper's pre-training distillation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from workbench.distill import losses
from workbench.train import batch_accuracy


@dataclass
class DistillWeights:
    hard: float = 0.0  # official DiDE fine-tuning: hard labels off
    soft: float = 1.0
    t2i: float = 1.0
    i2t: float = 1.0
    temperature: float = 1.0


class Recipe:
    name = "base"

    def __init__(
        self, teacher: nn.Module | None = None, weights: DistillWeights | None = None, layers: tuple[int, ...] = (-1,)
    ):
        self.teacher = teacher.eval().requires_grad_(False) if teacher is not None else None
        self.weights = weights or DistillWeights()
        self.layers = tuple(layers)

    def prepare(self, accelerator, student) -> None:
        if self.teacher is not None:
            self.teacher.to(accelerator.device)

    @torch.no_grad()
    def teacher_out(self, batch, qk_layers: tuple[int, ...] = ()):
        return self.teacher(batch.input_ids, batch.attention_mask, batch.pixel_values, qk_layers=qk_layers)


class NoDistill(Recipe):
    name = "none"

    def loss(self, student, batch):
        logits = student(batch.input_ids, batch.attention_mask, batch.pixel_values).logits
        loss = nn.functional.cross_entropy(logits, batch.labels)
        return loss, {"ce": loss.item(), "accuracy": batch_accuracy(logits, batch.labels)}


class SoftLabels(Recipe):
    name = "kd"

    def label_terms(self, student_logits, teacher_logits, labels) -> tuple[torch.Tensor, dict]:
        """Soft-label KD, plus cross-entropy on the gold label when its weight is not zero."""
        w = self.weights
        # the student's batch accuracy on the gold labels: logged, and read by `until=` curriculum phases
        total, logs = student_logits.new_zeros(()), {"accuracy": batch_accuracy(student_logits, labels)}
        if w.soft:  # off in dide-pt's first stage, where the teacher has no head for the task
            soft = losses.soft_label_kd(student_logits, teacher_logits, w.temperature)
            total, logs["soft"] = total + w.soft * soft, soft.item()
        if w.hard:
            hard = nn.functional.cross_entropy(student_logits, labels)
            total, logs["ce"] = total + w.hard * hard, hard.item()
        return total, logs

    def loss(self, student, batch):
        t = self.teacher_out(batch)
        logits = student(batch.input_ids, batch.attention_mask, batch.pixel_values).logits
        return self.label_terms(logits, t.logits, batch.labels)


class DiDE(SoftLabels):
    name = "dide"

    def loss(self, student, batch):
        w = self.weights
        t = self.teacher_out(batch, qk_layers=self.layers)
        s = student(batch.input_ids, batch.attention_mask, batch.pixel_values, qk_layers=self.layers)
        total, logs = self.label_terms(s.logits, t.logits, batch.labels)
        text_mask = batch.attention_mask
        t2i_sum = i2t_sum = 0.0
        teacher_layers = sorted(t.qk[0])
        for j in range(len(t.qk)):  # one pass per image (NLVR has two)
            # the i-th chosen layer of each model, counted per model (-1: each one's last), so towers of
            # different depths pair up: a 1-layer text tower's layer 0 with the image tower's last
            for lt, lq, lk in zip(teacher_layers, sorted(s.qk_text), sorted(s.qk_image[j])):
                t_t2i, t_i2t = losses.teacher_cross_scores(*t.qk[j][lt], text_len=t.text_len)
                s_t2i, s_i2t = losses.student_cross_scores(s.qk_text[lq], s.qk_image[j][lk])
                t2i_sum = t2i_sum + losses.attention_kl(s_t2i, t_t2i, key_mask=None, query_mask=text_mask)
                i2t_sum = i2t_sum + losses.attention_kl(s_i2t, t_i2t, key_mask=text_mask)
        total = total + w.t2i * t2i_sum + w.i2t * i2t_sum
        logs.update({"t2i": float(t2i_sum.detach()), "i2t": float(i2t_sum.detach())})
        return total, logs


class DiDEPretrained(DiDE):
    """`dide` fine-tuning of a student that went through the matching stage first (see `run.distill`)."""

    name = "dide-pt"


RECIPES = {r.name: r for r in (NoDistill, SoftLabels, DiDE, DiDEPretrained)}


def make_recipe(name: str, teacher: nn.Module | None = None, **kw) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; expected one of {sorted(RECIPES)}")
    if name != "none" and teacher is None:
        raise ValueError(f"recipe {name!r} needs a teacher")
    return RECIPES[name](teacher, **kw)
