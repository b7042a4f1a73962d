"""The pair under test: the checkpoints, the examples they are timed on, and the settings every measurement shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from workbench.models.dual import DualStudent
from workbench.models.fusion import FusionTeacher
from workbench.models.io import Checkpoint, load_checkpoint

# used only when the checkpoint names no dataset the workbench can generate
FALLBACK_TEXTS = (
    "what colour is the circle?",
    "is there a red square?",
    "how many triangles are there?",
    "what shape is left of the blue circle?",
    "is the large square in the top row?",
    "are there more circles than squares?",
)


def resolve(ck: Checkpoint | str | Path, kind: str, device: str | None) -> Checkpoint:
    """A loaded checkpoint, or the one at a folder (of model `kind`, on `device`, default CPU)."""
    if isinstance(ck, Checkpoint):
        return ck
    return load_checkpoint(ck, device=device or "cpu", kind=kind)


def load_examples(ck: Checkpoint, n: int) -> tuple[list, str]:
    """(`n` test examples of the checkpoint's dataset, its name), or noise images with fixed
    questions when it names none we can load. Content does not change the cost; length does."""
    from workbench.data import load_dataset
    from workbench.data.example import Example

    dataset = ck.meta.get("dataset")
    if dataset:
        try:
            data = load_dataset(dataset, "test", n)
            return [data[i] for i in range(min(n, len(data)))], f"{dataset} test split"
        except Exception:  # noqa: BLE001 - an unavailable dataset only means synthetic inputs
            pass
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    size, k = ck.image_size, ck.meta.get("num_images", 1)
    noise = [
        Image.fromarray(torch.randint(0, 256, (size, size, 3), generator=g, dtype=torch.uint8).numpy())
        for _ in range(k * n)
    ]
    texts = [FALLBACK_TEXTS[i % len(FALLBACK_TEXTS)] for i in range(n)]
    return [Example(noise[k * i : k * i + k], texts[i], 0, "synthetic") for i in range(n)], "synthetic"


def median_first(examples: list, tokenizer) -> list:
    """Put an example of median question length first: batch-1 timings use the first example."""
    lengths = [len(tokenizer(e.text)["input_ids"]) for e in examples]
    order = sorted(range(len(examples)), key=lambda i: lengths[i])
    mid = order[len(order) // 2]
    return [examples[mid]] + [e for i, e in enumerate(examples) if i != mid]


class BenchInputs:
    """Batches of a checkpoint's collated examples, cycled to any size."""

    def __init__(self, ck: Checkpoint, examples: list):
        from workbench.data import Collator

        self.collate = Collator.for_model(ck.model, ck.tokenizer)
        self.examples = examples
        self.device = next(ck.model.parameters()).device

    def batch(self, start: int, size: int):
        items = [self.examples[(start + i) % len(self.examples)] for i in range(size)]
        b = self.collate(items).to(self.device)
        return b.input_ids, b.attention_mask, b.pixel_values


@dataclass
class Pair:
    """What every measurement of one benchmark run needs: both models, their inputs and the timing settings.
    `step(message)` reports one finished measurement (progress bar or callback); `rounds`: interleaved rounds a cell
    is timed in (its `min_run_time` shared between them)."""

    teacher: FusionTeacher
    student: DualStudent
    t_in: BenchInputs
    s_in: BenchInputs
    threads: int
    min_run_time: float
    step: Callable[[str], None]
    rounds: int = 5
