"""Teacher-student agreement of patch maps: KL divergence and Spearman rank correlation.

* `kl_divergence(p, q)`: KL(p || q) in nats between two maps made distributions over the patches
  (negative values clipped to 0, then divided by the sum; a small epsilon keeps it finite). The
  teacher's map is `p`, as in DiDE's attention loss. 0 means equal; it is not symmetric.
* `spearman(a, b)`: Pearson correlation of the ranks (ties get their average rank): 1 when the
  two maps order the patches the same way, whatever their scale; NaN when a map is constant.

For raw attention ("attention"), agreement is computed word by word (each question word's
text-to-image map in the chosen layer, heads averaged, renormalised over the patches: the image
[CLS] key is left out) and averaged over the words; for the other methods on the one image map.

What each map measures for a dual student: "attention" compares the student's *virtual*
cross-attention (text-tower queries against image-tower keys), which takes no part in its forward
pass and is exactly what DiDE's attention loss trains, so its agreement is the training objective
read back. "rollout", "relevancy" and "ig" are functional: they come from what the student computes
to answer (its image tower's attention flow; the gradients of its answer), so their agreement says
whether the student's answer rests on the patches the teacher's does. For IG, KL is taken on the
positive part of the maps (negative attributions clipped to 0); Spearman uses the signed values.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from torch import nn

from workbench.data.collate import batches

EPS = 1e-8


def _distribution(m) -> np.ndarray:
    m = np.clip(np.asarray(m, dtype=np.float64).reshape(-1), 0, None) + EPS
    return m / m.sum()


def kl_divergence(p, q) -> float:
    """KL(p || q) of two non-negative maps of the same size, each normalised to sum 1."""
    p, q = _distribution(p), _distribution(q)
    if p.shape != q.shape:
        raise ValueError(f"maps differ in size: {p.shape} vs {q.shape}")
    return float(np.sum(p * (np.log(p) - np.log(q))))


def rankdata(x) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank (as scipy.stats.rankdata's default)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a, b) -> float:
    ra, rb = rankdata(a), rankdata(b)
    if ra.shape != rb.shape:
        raise ValueError(f"maps differ in size: {ra.shape} vs {rb.shape}")
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def map_agreement(teacher_map, student_map) -> dict[str, float]:
    return {"kl": kl_divergence(teacher_map, student_map), "spearman": spearman(teacher_map, student_map)}


def word_agreement(teacher_maps, student_maps) -> dict[str, float]:
    """Mean agreement over words: [W, rows, cols] maps of the teacher and the student."""
    scores = [map_agreement(t, s) for t, s in zip(teacher_maps, student_maps)]
    return {
        "kl": float(np.mean([s["kl"] for s in scores])),
        "spearman": float(np.nanmean([s["spearman"] for s in scores])) if scores else float("nan"),
    }


def batch_agreement(
    teacher: nn.Module, student: nn.Module, batch, method: str = "attention", layer: int = -1, ig_steps: int = 32
) -> list:
    """Per-example {"kl", "spearman"} of the two models' `method` maps on one batch (relevancy and IG: each model's
    map of its own predicted answer)."""
    from workbench.explain.attention import cross_probs
    from workbench.explain.grid import to_grid
    from workbench.explain.inputs import word_positions
    from workbench.explain.maps import image_maps

    if method != "attention":
        t_maps = image_maps(teacher, batch, method, ig_steps=ig_steps)
        s_maps = image_maps(student, batch, method, ig_steps=ig_steps)
        return [map_agreement(t, s) for t, s in zip(t_maps, s_maps)]
    maps = []
    for model in (teacher, student):
        probs = cross_probs(model, batch, (layer,))
        maps.append(to_grid(probs["t2i"][:, 0].mean(1), probs["grid"], offset=1))  # [B, T, rows, cols]
    out = []
    for i in range(len(batch)):
        words = word_positions(batch, i)
        out.append(word_agreement(maps[0][i, words].numpy(), maps[1][i, words].numpy()))
    return out


def summarise(rows: list[dict], keys=("kl", "spearman")) -> dict:
    """{"overall": {key: mean, "n"}, "per_type": {qtype: {key: mean, "n"}}} of per-example rows."""

    def stats(rs):
        return {**{k: float(np.nanmean([r[k] for r in rs])) for k in keys}, "n": len(rs)}

    by_type: dict[str, list] = defaultdict(list)
    for r in rows:
        by_type[r.get("qtype", "")].append(r)
    return {"overall": stats(rows) if rows else {}, "per_type": {q: stats(by_type[q]) for q in sorted(by_type)}}


@torch.no_grad()
def agreement_over_split(
    teacher: nn.Module,
    student: nn.Module,
    dataset,
    collator,
    method: str = "attention",
    layer: int = -1,
    limit: int | None = None,
    batch_size: int = 32,
    progress: bool = False,
    ig_steps: int = 32,
) -> dict:
    """Teacher-student map agreement on the first `limit` examples of `dataset`, per example and
    aggregated by question type: {"method", "layer", "per_example": [{"index", "qtype", "text",
    "kl", "spearman"}], "overall": {...}, "per_type": {...}}. `ig_steps`: Integrated Gradients' steps."""
    from tqdm.auto import tqdm

    n = len(dataset) if limit is None else min(limit, len(dataset))
    states = teacher.training, student.training
    teacher.eval(), student.eval()
    rows, start = [], 0
    it = batches(dataset, collator, batch_size, list(range(n)))
    desc = f"agreement ({method})"
    for batch in tqdm(it, total=-(-n // batch_size), desc=desc, disable=not progress, leave=False):
        with torch.enable_grad():
            scores = batch_agreement(teacher, student, batch, method, layer, ig_steps)
        for i, s in enumerate(scores):
            rows.append({"index": start + i, "qtype": batch.qtypes[i], "text": batch.texts[i], **s})
        start += len(batch)
    teacher.train(states[0]), student.train(states[1])
    return {"method": method, "layer": layer, "per_example": rows, **summarise(rows)}


def read_agreement(path) -> dict:
    """An agreement file (`workbench explain-results`, assets/results/agreement.json) as a dict, checked to hold
    the figures a summary reads: `students` -> name -> "overall" (and "maps" -> map -> "overall") with a numeric
    "spearman"; `paired`, if present, a dict. FileNotFoundError when it is missing, ValueError when malformed."""
    import json
    from pathlib import Path

    try:
        results = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"not JSON ({e})") from e
    students = results.get("students") if isinstance(results, dict) else None
    if not isinstance(students, dict) or not students:
        raise ValueError('no "students"')
    for name, st in students.items():
        maps = st.get("maps", {}) if isinstance(st, dict) else None
        entries = [st.get("overall") if isinstance(st, dict) else None]
        entries += [e.get("overall") if isinstance(e, dict) else None for e in (maps or {}).values()]
        if not isinstance(maps, dict) or not all(_has_spearman(e) for e in entries):
            raise ValueError(f"student {name!r} has no overall Spearman")
    if not isinstance(results.get("paired", {}), dict):
        raise ValueError('"paired" is not a dict')
    return results


def _has_spearman(overall) -> bool:
    return isinstance(overall, dict) and (overall.get("spearman") is None or _is_number(overall["spearman"]))


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)
