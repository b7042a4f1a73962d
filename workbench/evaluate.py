"""Accuracy overall and per question type, and predictions for error analysis.

VQA (batches that carry `scores`, VQAv2): besides the usual keys, "vqa_score" holds the official VQA accuracy
of each top answer, overall and per answer type (`workbench.vqa_score.vqa_score_report`). The plain
"accuracy" there is the share of top answers equal to the most common in-vocabulary human answer; a question
with no answer in the vocabulary (gold label -100) counts as wrong in it, and scores 0 in the VQA accuracy.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from workbench.data.collate import Batch, Collator, batches
from workbench.vqa_score import batch_vqa_scores, vqa_score_report

__all__ = [  # `batches` lives with the collator; re-exported here, where it was first
    "accuracy_by_type",
    "batches",
    "compare_models",
    "confusion_matrix",
    "disagreements",
    "evaluate",
    "export_rows",
    "format_metrics",
    "predict",
    "write_metrics",
]


@torch.inference_mode()
def predict(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Logits of a fusion teacher or a dual student for one batch (on the model's device); a padded batch
    (aspect-ratio images) passes its pixel mask."""
    device = next(model.parameters()).device
    batch = batch.to(device)
    extra = {} if batch.pixel_mask is None else {"pixel_mask": batch.pixel_mask}
    return model(batch.input_ids, batch.attention_mask, batch.pixel_values, **extra).logits.float()


def evaluate(
    model: nn.Module,
    dataset,
    collator: Collator,
    batch_size: int = 256,
    limit: int | None = None,
    progress: bool = False,
    return_predictions: bool = False,
) -> dict:
    """{"accuracy", "n", "per_type": {qtype: {"accuracy", "n"}}} on the first `limit` examples; and
    "per_tag" for datasets whose examples carry finer tags than their question type (`dataset.tags(i)`,
    e.g. easy-VQA's yes/no kinds: is the asked colour in the image? a negated question?); and "vqa_score"
    ({"accuracy", "n", "per_type"}: the official VQA accuracy per answer type) when the batches carry VQA
    `scores`. Predictions (`return_predictions`) then carry each top answer's VQA accuracy ("score")."""
    was_training = model.training
    model.eval()
    n = len(dataset) if limit is None else min(limit, len(dataset))
    correct: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    tag_correct: dict[str, int] = defaultdict(int)
    tag_total: dict[str, int] = defaultdict(int)
    tags = getattr(dataset, "tags", None)
    predictions = []
    vqa_scores: list[float] = []  # the official accuracy of each top answer (VQA batches only)
    vqa_types: list[str] = []
    seen = 0  # examples scored so far (= the next one's index)
    it = batches(dataset, collator, batch_size, list(range(n)))
    for batch in tqdm(it, total=-(-n // batch_size), desc="eval", disable=not progress, leave=False):
        logits = predict(model, batch)
        probs = logits.softmax(-1)
        pred = probs.argmax(-1).cpu()
        scores = batch_vqa_scores(logits.cpu(), batch.scores).tolist() if batch.scores is not None else None
        if scores is not None:
            vqa_scores.extend(scores)
            vqa_types.extend(batch.qtypes)
        for k, (qtype, p, y, conf, text) in enumerate(zip(
            batch.qtypes, pred.tolist(), batch.labels.tolist(), probs.max(-1).values.cpu().tolist(), batch.texts
        )):  # fmt: skip
            total[qtype] += 1
            correct[qtype] += int(p == y)
            for tag in tags(seen) if tags else ():
                if tag != qtype:
                    tag_total[tag] += 1
                    tag_correct[tag] += int(p == y)
            seen += 1
            if return_predictions:
                row = {"text": text, "qtype": qtype, "label": y, "pred": p, "confidence": conf}
                predictions.append(row if scores is None else {**row, "score": scores[k]})
    model.train(was_training)
    n_all = sum(total.values())
    result = {
        "accuracy": sum(correct.values()) / max(n_all, 1),
        "n": n_all,
        "per_type": {q: {"accuracy": correct[q] / total[q], "n": total[q]} for q in sorted(total)},
    }
    if vqa_scores:  # every question counts, whatever its answers (the official evaluation's mean)
        result["vqa_score"] = vqa_score_report(vqa_scores, vqa_types)
    if tag_total:
        result["per_tag"] = {
            t: {"accuracy": tag_correct[t] / tag_total[t], "n": tag_total[t]} for t in sorted(tag_total)
        }
    if return_predictions:
        result["predictions"] = predictions
    return result


def format_metrics(metrics: dict) -> str:
    lines = [f"accuracy {100 * metrics['accuracy']:.2f}% (n={metrics['n']})"]
    for q, m in metrics["per_type"].items():
        lines.append(f"  {q:<14} {100 * m['accuracy']:6.2f}%  (n={m['n']})")
    for t, m in metrics.get("per_tag", {}).items():
        lines.append(f"    {t:<20} {100 * m['accuracy']:6.2f}%  (n={m['n']})")
    vqa = metrics.get("vqa_score")
    if vqa:  # the official tool's figure: 100 x the mean accuracy, per answer type
        lines.append(f"VQA score {100 * vqa['accuracy']:.2f} (n={vqa['n']})")
        lines += [f"  {t:<14} {100 * m['accuracy']:6.2f}   (n={m['n']})" for t, m in vqa["per_type"].items()]
    return "\n".join(lines)


def write_metrics(metrics: dict, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({k: v for k, v in metrics.items() if k != "predictions"}, indent=2))


# ----------------------------------------------------------------------------------------------
# Error analysis: teacher vs student on the same examples


def compare_models(
    teacher: nn.Module,
    student: nn.Module,
    dataset,
    collator: Collator,
    limit: int | None = None,
    batch_size: int = 64,
    agreement: str | None = "attention",
    layer: int = -1,
    student_collator: Collator | None = None,
    progress: bool = False,
) -> list[dict]:
    """One row per example: both models' answers, confidences and correctness, and how well their
    maps agree (`agreement`: a `workbench.explain` method, "attention" by default — the teacher's
    text-to-image attention against the student's virtual one — or None to skip).

    Row keys: index, qtype, text, gold, teacher_answer, teacher_confidence, teacher_correct,
    student_answer, student_confidence, student_correct, agree (same answer), kl, spearman; and for VQA
    batches (with `scores`) teacher_score and student_score, the official VQA accuracy of each answer. A VQAv2
    question with no answer in the vocabulary has gold "" (and is correct for neither model).
    """
    from workbench.explain.agreement import batch_agreement

    labels = list(dataset.labels)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    states = teacher.training, student.training
    teacher.eval(), student.eval()
    rows: list[dict] = []
    indices = list(range(n))
    s_batches = batches(dataset, student_collator, batch_size, indices) if student_collator else None
    for batch in tqdm(
        batches(dataset, collator, batch_size, indices), total=-(-n // batch_size), desc="compare", disable=not progress
    ):
        s_batch = next(s_batches) if s_batches is not None else batch
        t_probs = predict(teacher, batch).softmax(-1).cpu()
        s_probs = predict(student, s_batch).softmax(-1).cpu()
        scores = batch_agreement(teacher, student, batch, agreement, layer) if agreement else [{}] * len(batch)
        for i in range(len(batch)):
            t_conf, t_pred = t_probs[i].max(-1)
            s_conf, s_pred = s_probs[i].max(-1)
            gold = int(batch.labels[i])
            rows.append(
                {
                    "index": len(rows),
                    "qtype": batch.qtypes[i],
                    "text": batch.texts[i],
                    "gold": labels[gold] if gold >= 0 else "",  # VQAv2: -100, no answer in the vocabulary
                    "teacher_answer": labels[int(t_pred)],
                    "teacher_confidence": float(t_conf),
                    "teacher_correct": int(t_pred) == gold,
                    "student_answer": labels[int(s_pred)],
                    "student_confidence": float(s_conf),
                    "student_correct": int(s_pred) == gold,
                    "agree": int(t_pred) == int(s_pred),
                    "kl": scores[i].get("kl", float("nan")),
                    "spearman": scores[i].get("spearman", float("nan")),
                }
            )
            if batch.scores is not None:  # VQA: the official accuracy of each model's answer
                vqa = batch.scores[i]
                rows[-1].update(teacher_score=float(vqa[int(t_pred)]), student_score=float(vqa[int(s_pred)]))
    teacher.train(states[0]), student.train(states[1])
    return rows


def accuracy_by_type(rows: list[dict]) -> dict:
    """{"overall": {...}, "per_type": {qtype: {...}}}, each {"teacher", "student", "agree", "n"}:
    accuracies of both models and how often they give the same answer."""

    def stats(rs):
        n = max(len(rs), 1)
        return {
            "teacher": sum(r["teacher_correct"] for r in rs) / n,
            "student": sum(r["student_correct"] for r in rs) / n,
            "agree": sum(r["agree"] for r in rs) / n,
            "n": len(rs),
        }

    by_type: dict[str, list] = defaultdict(list)
    for r in rows:
        by_type[r["qtype"]].append(r)
    return {"overall": stats(rows), "per_type": {q: stats(by_type[q]) for q in sorted(by_type)}}


def confusion_matrix(rows: list[dict], labels: list[str], who: str = "student"):
    """[gold, predicted] counts (numpy) of `who` ("teacher" or "student") over `labels` (rows without a gold
    label in `labels` are left out)."""
    import numpy as np

    index = {label: i for i, label in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for r in rows:
        if r["gold"] in index:  # a VQAv2 question with no answer in the vocabulary has no row
            m[index[r["gold"]], index[r[f"{who}_answer"]]] += 1
    return m


def disagreements(
    rows: list[dict],
    qtype: str | None = None,
    wrong: str | None = None,
    sort_by: str = "student_confidence",
    descending: bool = True,
) -> list[dict]:
    """The rows where teacher and student answer differently, optionally of one question type and
    only where `wrong` ("teacher", "student") is wrong, sorted by any row key (NaN last)."""
    out = [r for r in rows if not r["agree"] and (qtype is None or r["qtype"] == qtype)]
    if wrong is not None:
        out = [r for r in out if not r[f"{wrong}_correct"]]

    if not all(isinstance(r[sort_by], (int, float)) for r in out):
        return sorted(out, key=lambda r: str(r[sort_by]), reverse=descending)
    missing = [r for r in out if r[sort_by] != r[sort_by]]  # NaN
    present = [r for r in out if r[sort_by] == r[sort_by]]
    return sorted(present, key=lambda r: r[sort_by], reverse=descending) + missing


def export_rows(rows: list[dict], path: str | Path) -> Path:
    """Write rows to CSV (`.csv`) or JSON (anything else); returns the path."""
    import csv

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        fields = list(rows[0]) if rows else []
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text(json.dumps(rows, indent=2, allow_nan=True))
    return path
