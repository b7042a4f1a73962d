"""Accuracy overall and per question type, and predictions for error analysis."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from workbench.data.collate import Batch, Collator


def batches(dataset, collator: Collator, batch_size: int, indices: list[int] | None = None):
    indices = list(range(len(dataset))) if indices is None else indices
    for start in range(0, len(indices), batch_size):
        yield collator([dataset[i] for i in indices[start : start + batch_size]])


@torch.inference_mode()
def predict(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Logits of a fusion teacher or a dual student for one batch (on the model's device)."""
    device = next(model.parameters()).device
    batch = batch.to(device)
    return model(batch.input_ids, batch.attention_mask, batch.pixel_values).logits.float()


def evaluate(
    model: nn.Module,
    dataset,
    collator: Collator,
    batch_size: int = 256,
    limit: int | None = None,
    progress: bool = False,
    return_predictions: bool = False,
) -> dict:
    """{"accuracy", "n", "per_type": {qtype: {"accuracy", "n"}}} on the first `limit` examples."""
    was_training = model.training
    model.eval()
    n = len(dataset) if limit is None else min(limit, len(dataset))
    correct: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    predictions = []
    it = batches(dataset, collator, batch_size, list(range(n)))
    for batch in tqdm(it, total=-(-n // batch_size), desc="eval", disable=not progress, leave=False):
        logits = predict(model, batch)
        probs = logits.softmax(-1)
        pred = probs.argmax(-1).cpu()
        for qtype, p, y, conf, text in zip(
            batch.qtypes, pred.tolist(), batch.labels.tolist(), probs.max(-1).values.cpu().tolist(), batch.texts
        ):
            total[qtype] += 1
            correct[qtype] += int(p == y)
            if return_predictions:
                predictions.append({"text": text, "qtype": qtype, "label": y, "pred": p, "confidence": conf})
    model.train(was_training)
    n_all = sum(total.values())
    result = {
        "accuracy": sum(correct.values()) / max(n_all, 1),
        "n": n_all,
        "per_type": {q: {"accuracy": correct[q] / total[q], "n": total[q]} for q in sorted(total)},
    }
    if return_predictions:
        result["predictions"] = predictions
    return result


def format_metrics(metrics: dict) -> str:
    lines = [f"accuracy {100 * metrics['accuracy']:.2f}% (n={metrics['n']})"]
    for q, m in metrics["per_type"].items():
        lines.append(f"  {q:<14} {100 * m['accuracy']:6.2f}%  (n={m['n']})")
    return "\n".join(lines)


def write_metrics(metrics: dict, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({k: v for k, v in metrics.items() if k != "predictions"}, indent=2))
