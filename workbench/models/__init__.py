"""Model registry (timm-style): `create_model(kind, ...)` builds any registered architecture.

Tests iterate over `MODELS`, so a new architecture is covered by registering it here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from workbench.models.dual import DualStudent, dual_configs
from workbench.models.fusion import FusionTeacher, fusion_config
from workbench.models.heads import classifier
from workbench.models.stem import stem_channels

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
    embed_dim = size.pop("embed_dim", 128)  # retrieval embedding width (a distilled student takes its teacher's)
    vision, text = dual_configs(vocab_size, **size)
    return DualStudent(vision, text, num_labels, num_images, embed_dim=embed_dim)


def text_limit(model: nn.Module) -> int:
    """Longest token sequence the model's text positions allow (its `text_limit`; through a DDP wrapper too)."""
    return getattr(model, "module", model).text_limit


def image_size(model: nn.Module) -> int:
    """Side of the square images the model reads (its `image_size`; through a DDP wrapper too)."""
    return getattr(model, "module", model).image_size


def create_model(kind: str, vocab_size: int, num_labels: int, num_images: int = 1, **size) -> nn.Module:
    if kind not in MODELS:
        raise ValueError(f"unknown model kind {kind!r}; registered: {sorted(MODELS)}")
    return MODELS[kind](vocab_size, num_labels, num_images, **size)


__all__ = [
    "MODELS",
    "DualStudent",
    "FusionTeacher",
    "create_model",
    "for_task",
    "image_size",
    "register",
    "text_limit",
]


def for_task(model: nn.Module, num_images: int, num_labels: int) -> nn.Module:
    """The same encoder(s) with a fresh classifier for another task: `num_labels` answers over
    `num_images` images per example (e.g. a one-image VQA teacher -> a two-image NLVR model).

    For the fusion teacher a second image needs its own modality-type embedding; as ViLT did for
    NLVR2, the new image types start as copies of the existing image type. Everything else is kept.
    """
    model = getattr(model, "module", model)
    d = model.classifier[0].in_features // model.num_images
    if isinstance(model, FusionTeacher) and num_images != model.num_images:
        c = model.config
        config = fusion_config(
            c.vocab_size, c.image_size, c.patch_size, c.hidden_size, c.num_hidden_layers, c.num_attention_heads,
            c.max_position_embeddings, num_images, conv_stem=stem_channels(c),
        )  # fmt: skip
        new = FusionTeacher(config, num_labels, num_images, init_positions=False)
        state = {k: v for k, v in model.state_dict().items() if not k.startswith("classifier.")}
        key = "vilt.embeddings.token_type_embeddings.weight"
        old = state[key]
        extra = old[-1:].expand(1 + num_images - old.shape[0], -1) if 1 + num_images > old.shape[0] else old[:0]
        state[key] = torch.cat([old[: 1 + num_images], extra])
        missing, unexpected = new.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith("classifier.") for k in missing):  # only the head is new
            raise RuntimeError(f"for_task lost weights: missing {missing}, unexpected {unexpected}")
        return new
    model.num_images = num_images
    model.classifier = classifier(d, num_images, num_labels)
    return model
