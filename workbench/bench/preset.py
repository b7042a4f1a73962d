"""Models of a size preset (`workbench.configs.bench.PRESETS`) with random weights, as checkpoints the benchmark
takes: `workbench bench --preset NAME` and `workbench scale` build their models here, once.

The weights are untrained, so every figure measured on them is about time and memory, never accuracy: every
table, JSON section and figure made from them carries `UNTRAINED`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from workbench.configs.bench import PRESETS
from workbench.models.io import Checkpoint

UNTRAINED = "speed only: untrained weights"


def preset_names() -> tuple[str, ...]:
    return tuple(PRESETS)


def _preset(name: str) -> dict:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: one of {preset_names()}")
    return PRESETS[name]


def preset_models(name: str, student: str = "student", seed: int = 0, **size) -> tuple[nn.Module, nn.Module]:
    """(fusion teacher, dual student `student`) of preset `name`, random weights, in eval mode; `size` overrides
    the preset's size (e.g. `hidden_size=256, num_layers=2`)."""
    from workbench.models import create_model

    p = _preset(name)
    if student not in p["students"]:
        raise ValueError(f"preset {name!r} has students {tuple(p['students'])}, not {student!r}")
    torch.manual_seed(seed)
    size = {**p["size"], **size}
    teacher = create_model("fusion", p["vocab_size"], p["num_labels"], **size).eval()
    dual = create_model("dual", p["vocab_size"], p["num_labels"], **{**size, **p["students"][student]})
    return teacher, dual.eval()


def _checkpoint(model: nn.Module, name: str, role: str, p: dict, tokenizer) -> Checkpoint:
    meta = {
        "task": "vqa",
        "kind": model.kind,
        "labels": [f"answer {i}" for i in range(p["num_labels"])],
        "image_size": p["size"]["image_size"],
        "num_images": 1,
        "preset": name,
        "weights": UNTRAINED,
    }  # no "dataset": the benchmark times synthetic inputs (noise images, fixed questions)
    return Checkpoint(model, tokenizer, meta, Path(f"preset:{name}/{role}"))


def preset_checkpoints(
    name: str, students: tuple[str, ...] | None = None, **size
) -> tuple[Checkpoint, dict[str, Checkpoint]]:
    """(teacher, {student name: student}) of preset `name` as checkpoints (random weights, the workbench's small
    tokenizer: token ids below every preset's vocabulary; the embedding lookup costs the same at any vocabulary).
    `size`: overrides of the preset's size."""
    from workbench.data.vocab import build_tokenizer

    p = _preset(name)
    tokenizer = build_tokenizer()
    names = students or tuple(p["students"])
    teacher = None
    out = {}
    for s in names:
        t, m = preset_models(name, s, **size)
        teacher = teacher or _checkpoint(t, name, "teacher", p, tokenizer)
        out[s] = _checkpoint(m, name, s, p, tokenizer)
    return teacher, out
