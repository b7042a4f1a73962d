"""Inputs for the explainers: one (image, question) as a `Batch`, and the names of its tokens."""

from __future__ import annotations

import torch
from torch import nn

from workbench.data.collate import Batch, image_to_tensor
from workbench.inputs import check_question, read_images
from workbench.models import image_size, text_limit


def encode(model: nn.Module, tokenizer, image, question: str, second_image=None, image_pipeline=None) -> Batch:
    """A one-example `Batch` for `model` (image: PIL image, array or path; see `workbench.inputs.read_image`).
    `image_pipeline`: how the checkpoint reads images (`Checkpoint.image_pipeline`: a HF ViLT folder and its
    students keep the aspect ratio, with a pixel mask); None: square images of the model's size."""
    question = check_question(question)
    images = read_images(image, second_image)
    if image_pipeline is not None:
        pixels, pixel_mask = image_pipeline([images])
    else:
        size = image_size(model)
        pixels, pixel_mask = torch.stack([image_to_tensor(im, size) for im in images])[None], None
    enc = tokenizer([question], truncation=True, max_length=text_limit(model), return_tensors="pt")
    labels = torch.zeros(1, dtype=torch.long)
    return Batch(pixels, enc["input_ids"], enc["attention_mask"], labels, [""], [question], pixel_mask=pixel_mask)


def masked(batch: Batch, rows: slice | None = None) -> dict:
    """The forward pass's `pixel_mask` keyword for a padded batch (of its `rows`), else nothing: our own
    checkpoints' square images take none."""
    if batch.pixel_mask is None:
        return {}
    return {"pixel_mask": batch.pixel_mask if rows is None else batch.pixel_mask[rows]}


def to_device(batch: Batch, model: nn.Module) -> Batch:
    param = next(model.parameters(), None)
    return batch if param is None else batch.to(param.device)


def pixels_5d(pixel_values: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] or [B, images, 3, H, W] -> [B, images, 3, H, W]."""
    return pixel_values[:, None] if pixel_values.dim() == 4 else pixel_values


def text_length(batch: Batch, index: int = 0) -> int:
    """Number of real (unpadded) tokens of example `index`."""
    return int(batch.attention_mask[index].sum())


def tokens(batch: Batch, tokenizer=None, index: int = 0) -> list[str]:
    """The real tokens of example `index` (token ids as strings without a tokenizer)."""
    ids = batch.input_ids[index, : text_length(batch, index)].tolist()
    return tokenizer.convert_ids_to_tokens(ids) if tokenizer is not None else [str(i) for i in ids]


def word_positions(batch: Batch, index: int = 0) -> list[int]:
    """Token positions of the question's words: the real tokens without the leading [CLS] and the
    trailing [SEP] (both tokenizers the workbench uses are BERT's)."""
    n = text_length(batch, index)
    return list(range(1, n - 1)) if n > 2 else list(range(n))


BASELINES = ("mean", "white", "black", "grey")


def baseline_image(pixel_values: torch.Tensor, kind: str | float = "mean") -> torch.Tensor:
    """What a removed patch becomes, as pixels shaped like `pixel_values` ([..., 3, H, W] in [-1, 1]):
    "mean" the image's mean colour (per image and channel), "white" (the shapes background),
    "black", "grey" (0, the middle of the range) or a number in [-1, 1]."""
    if isinstance(kind, (int, float)):
        return torch.full_like(pixel_values, float(kind))
    if kind == "mean":
        return pixel_values.mean(dim=(-2, -1), keepdim=True).expand_as(pixel_values).clone()
    values = {"white": 1.0, "black": -1.0, "grey": 0.0}
    if kind not in values:
        raise ValueError(f"unknown baseline {kind!r}; expected one of {BASELINES} or a number")
    return torch.full_like(pixel_values, values[kind])
