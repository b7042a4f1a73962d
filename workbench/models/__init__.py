"""Model registry (timm-style): `create_model(kind, ...)` builds any registered architecture.

Tests iterate over `MODELS`, so a new architecture is covered by registering it here.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from workbench.models.dual import DualStudent, dual_configs
from workbench.models.fusion import FusionTeacher, fusion_config

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
    def deco(fn):
        MODELS[name] = fn
        return fn

    return deco


@register("fusion")
def fusion(vocab_size: int, num_labels: int, num_images: int = 1, **size) -> FusionTeacher:
    """ViLT-style single-stream teacher (default: 128 wide, 4 layers, 4 heads, 16 px patches)."""
    return FusionTeacher(fusion_config(vocab_size, num_images=num_images, **size), num_labels, num_images)


@register("dual")
def dual(vocab_size: int, num_labels: int, num_images: int = 1, **size) -> DualStudent:
    """Dual-encoder student: ViT + BERT towers of the teacher's width and head count, DiDE head."""
    vision, text = dual_configs(vocab_size, **size)
    return DualStudent(vision, text, num_labels, num_images)


def text_limit(model: nn.Module) -> int:
    """Longest token sequence the model's text positions allow."""
    model = getattr(model, "module", model)
    config = model.config if isinstance(model, FusionTeacher) else model.text_config
    return config.max_position_embeddings


def image_size(model: nn.Module) -> int:
    model = getattr(model, "module", model)
    return model.config.image_size if isinstance(model, FusionTeacher) else model.vision_config.image_size


def create_model(kind: str, vocab_size: int, num_labels: int, num_images: int = 1, **size) -> nn.Module:
    if kind not in MODELS:
        raise ValueError(f"unknown model kind {kind!r}; registered: {sorted(MODELS)}")
    return MODELS[kind](vocab_size, num_labels, num_images, **size)


__all__ = ["MODELS", "DualStudent", "FusionTeacher", "create_model", "image_size", "register", "text_limit"]
