"""One batch format for every task, and the collate function that builds it.

Two image pipelines:

* square (our own checkpoints, the default): every image resized to `image_size` x `image_size`, scaled to
  [-1, 1]; no pixel mask;
* aspect-ratio (real Hugging Face ViLT folders, and students distilled from them): an `ImagePipeline`, a
  callable from each example's images to padded pixels and a pixel mask. The model layer builds it from the
  folder's `preprocessor_config.json` (`Checkpoint.image_pipeline`, `workbench.models.io.vilt_pipeline`); the
  data layer only calls it, so it imports nothing of `workbench.models`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from PIL import Image


@dataclass
class Batch:
    """Tensors for a batch of examples of any task.

    pixel_values: [batch, images, 3, H, W] (1 image for VQA / VE / retrieval, 2 for NLVR); [-1, 1] on the
        square pipeline, the folder's normalisation on the aspect-ratio one
    input_ids, attention_mask: [batch, tokens]
    labels: [batch] class indices (for retrieval: the image index of the caption; VQAv2: the most common
        in-vocabulary answer, -100 when no answer is in the vocabulary, which cross-entropy ignores)
    qtypes, texts: one string per example, for per-type metrics and error analysis
    pixel_mask: [batch, images, H, W], 1 on image pixels and 0 on padding (aspect-ratio pipeline only)
    targets: [batch, labels] soft VQA targets (ViLT's scores) when the dataset has them (VQAv2)
    scores: [batch, labels] the official VQA accuracy of every answer, for the metric (VQAv2)
    """

    pixel_values: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    qtypes: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    pixel_mask: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    scores: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return Batch(
            self.pixel_values.to(device),
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.labels.to(device),
            self.qtypes,
            self.texts,
            pixel_mask=move(self.pixel_mask),
            targets=move(self.targets),
            scores=move(self.scores),
        )

    def __len__(self) -> int:
        return self.labels.shape[0]


class ImagePipeline(Protocol):
    """Per example, its images (1, or 2 for NLVR2) -> (pixel_values [B, n, 3, H, W], pixel_mask [B, n, H, W])."""

    def __call__(self, image_lists: Sequence[Sequence[Image.Image]]) -> tuple[torch.Tensor, torch.Tensor]: ...


def image_to_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """RGB, resized to `size` x `size`, scaled to [-1, 1] as ViLT expects: [3, size, size]."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def batches(dataset, collator, batch_size: int, indices: list[int] | None = None):
    """Collated batches of `dataset` (of the examples at `indices`, default all), `batch_size` at a time."""
    indices = list(range(len(dataset))) if indices is None else indices
    for start in range(0, len(indices), batch_size):
        yield collator([dataset[i] for i in indices[start : start + batch_size]])


def _stack_meta(examples, key: str) -> torch.Tensor | None:
    """The examples' `meta[key]` vectors stacked ([B, n] float32), or None unless every example has one."""
    if not examples or not all(key in e.meta for e in examples):
        return None
    return torch.from_numpy(np.stack([np.asarray(e.meta[key], dtype=np.float32) for e in examples]))


class Collator:
    """Turns a list of `Example`s (any task) into a `Batch`.

    `max_length` must not exceed the model's text positions: build it with `Collator.for_model` (or, for a
    loaded checkpoint, `Collator.for_checkpoint`, which also takes the folder's image pipeline).
    `image_pipeline`: None for the square pipeline, else an `ImagePipeline` (aspect ratio kept, pixel mask).
    """

    @classmethod
    def for_model(cls, model, tokenizer, image_pipeline: ImagePipeline | None = None) -> Collator:
        """A collator sized for `model`: any model that gives its `image_size` (pixels) and `text_limit` (longest
        token sequence), as every workbench model does; a DDP wrapper's `module` is read through. The data layer
        reads these two numbers from the model and imports nothing of `workbench.models`."""
        model = getattr(model, "module", model)
        return cls(tokenizer, model.image_size, model.text_limit, image_pipeline=image_pipeline)

    @classmethod
    def for_checkpoint(cls, checkpoint) -> Collator:
        """A collator for a loaded checkpoint (`workbench.models.io.Checkpoint`): sized for its model, with its
        tokenizer and its image pipeline (a HF ViLT folder's aspect-ratio one; square for our own folders)."""
        return cls.for_model(checkpoint.model, checkpoint.tokenizer, getattr(checkpoint, "image_pipeline", None))

    def __init__(self, tokenizer, image_size: int, max_length: int = 64, image_pipeline: ImagePipeline | None = None):
        self.tokenizer, self.image_size, self.max_length = tokenizer, image_size, max_length
        self.image_pipeline = image_pipeline

    def pixels(self, image_lists: Sequence[Sequence[Image.Image]]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(pixel_values [B, n, 3, H, W], pixel_mask [B, n, H, W] or None on the square pipeline)."""
        if self.image_pipeline is not None:
            return self.image_pipeline(image_lists)
        square = [torch.stack([image_to_tensor(im, self.image_size) for im in images]) for images in image_lists]
        return torch.stack(square), None

    def __call__(self, examples) -> Batch:
        texts = [e.text for e in examples]
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        pixels, pixel_mask = self.pixels([e.images for e in examples])
        return Batch(
            pixel_values=pixels,
            input_ids=enc["input_ids"],
            attention_mask=enc["attention_mask"],
            labels=torch.tensor([e.label for e in examples], dtype=torch.long),
            qtypes=[e.qtype for e in examples],
            texts=texts,
            pixel_mask=pixel_mask,
            targets=_stack_meta(examples, "targets"),
            scores=_stack_meta(examples, "scores"),
        )
