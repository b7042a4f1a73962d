"""What the trainer optimises: an objective. The baseline one (hard labels) lives here; distillation
methods bring their own (`workbench.methods`), MAE pre-training its own (`workbench.mae`)."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from workbench import losses


class Objective(Protocol):
    """The contract between the trainer and whatever it trains.

    Required: `loss(model, batch) -> (loss, logs)`: a scalar tensor to minimise and a dict of floats to log
    (an "accuracy" entry is what curriculum `until=` phases read). The trainer runs it under
    `accelerator.autocast()`, so a teacher called inside (under `torch.inference_mode()`) runs in the mixed
    precision of the run too.

    Optional, looked up with `getattr`: `name` (recorded in the checkpoint), `attach(model)` (add trainable
    parts to the model before the optimizer is built, so they are trained, saved and resumed with it),
    `detach(model)` (drop them before the final checkpoint), `prepare(accelerator, model)` (move teachers to
    the device), `evaluate(model, dataset, collator, limit=None, progress=False)` and `format_metrics(metrics)`
    (a task measured another way, e.g. retrieval's R@K).
    """

    def loss(self, model: nn.Module, batch) -> tuple[torch.Tensor, dict]: ...


class HardLabels:
    """The gold labels: the baseline objective for teachers and students. Cross-entropy on the gold label; on
    VQA batches with soft targets (VQAv2), ViLT's loss instead: BCE against the targets times the number of
    answers (`losses.vqa_bce`). Logged as "ce" either way (the hard-label loss)."""

    name = "hard"

    def loss(self, model: nn.Module, batch) -> tuple[torch.Tensor, dict]:
        # a padded batch (the aspect-ratio pipeline of HF ViLT folders) passes its pixel mask
        extra = {} if batch.pixel_mask is None else {"pixel_mask": batch.pixel_mask}
        logits = model(batch.input_ids, batch.attention_mask, batch.pixel_values, **extra).logits
        if batch.targets is not None:
            loss = losses.vqa_bce(logits, batch.targets)
        else:
            loss = nn.functional.cross_entropy(logits, batch.labels)
        return loss, {"ce": loss.item(), "accuracy": batch_accuracy(logits, batch.labels)}


def batch_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The share of the batch whose top answer is the gold label (logged; `until=` curriculum phases read it)."""
    return (logits.argmax(-1) == labels).float().mean().item()
