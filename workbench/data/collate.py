"""One batch format for every task, and the collate function that builds it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image


@dataclass
class Batch:
    """Tensors for a batch of examples of any task.

    pixel_values: [batch, images, 3, H, W] in [-1, 1] (1 image for VQA / VE / retrieval, 2 for NLVR)
    input_ids, attention_mask: [batch, tokens]
    labels: [batch] class indices (for retrieval: the image index of the caption)
    qtypes, texts: one string per example, for per-type metrics and error analysis
    """

    pixel_values: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    qtypes: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.pixel_values.to(device),
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.labels.to(device),
            self.qtypes,
            self.texts,
        )

    def __len__(self) -> int:
        return self.labels.shape[0]


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


class Collator:
    """Turns a list of `Example`s (any task) into a `Batch`.

    `max_length` must not exceed the model's text positions: build it with `Collator.for_model`.
    """

    @classmethod
    def for_model(cls, model, tokenizer) -> Collator:
        """A collator sized for `model`: any model that gives its `image_size` (pixels) and `text_limit` (longest
        token sequence), as every workbench model does; a DDP wrapper's `module` is read through. The data layer
        reads these two numbers from the model and imports nothing of `workbench.models`."""
        model = getattr(model, "module", model)
        return cls(tokenizer, model.image_size, model.text_limit)

    def __init__(self, tokenizer, image_size: int, max_length: int = 64):
        self.tokenizer, self.image_size, self.max_length = tokenizer, image_size, max_length

    def __call__(self, examples) -> Batch:
        texts = [e.text for e in examples]
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        pixels = torch.stack([torch.stack([image_to_tensor(im, self.image_size) for im in e.images]) for e in examples])
        return Batch(
            pixel_values=pixels,
            input_ids=enc["input_ids"],
            attention_mask=enc["attention_mask"],
            labels=torch.tensor([e.label for e in examples], dtype=torch.long),
            qtypes=[e.qtype for e in examples],
            texts=texts,
        )
