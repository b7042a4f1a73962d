"""Feeding the trainer: each optimizer step's batches, built in the training process or ahead of it by
DataLoader workers (`TrainConfig.num_workers`), in the same order either way.

A step's global batch (batch_size example ids of the plan's order) is cut into one slice per process (DDP),
and each slice into `grad_accum` micro-batches; `make_batch(ids)` turns a micro-batch's ids into what the
objective's `loss` takes (collated examples, or MAE's rendered scenes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset


class CollatedExamples:
    """`make_batch` for a dataset: the examples with these ids, collated (picklable, for DataLoader workers)."""

    def __init__(self, dataset, collator):
        self.dataset, self.collator = dataset, collator

    def __call__(self, ids: Sequence[int]):
        return self.collator([self.dataset[i] for i in ids])


class StepBatches(Dataset):
    """Item k: this process's micro-batches of the epoch's step k, as a list of `grad_accum` batches."""

    def __init__(
        self, order: Sequence[int], make_batch: Callable, batch_size: int, process: int, processes: int, accum: int
    ):
        self.order, self.make_batch, self.batch_size = order, make_batch, batch_size
        self.per_process = batch_size // processes
        self.first = process * self.per_process  # this process's slice of every global batch
        self.micro = self.per_process // accum
        self.accum = accum

    def __len__(self) -> int:
        return len(self.order) // self.batch_size

    def __getitem__(self, step: int) -> list:
        lo = step * self.batch_size + self.first
        ids = self.order[lo : lo + self.per_process]
        return [self.make_batch(ids[m * self.micro : (m + 1) * self.micro]) for m in range(self.accum)]


def _as_is(item):
    return item


def step_batches(batches: StepBatches, first: int, workers: int) -> Iterator[list]:
    """The micro-batches of steps `first`, `first + 1`, ... in order. With workers, a DataLoader builds them in
    other processes a few steps ahead; it has its own generator, so it draws nothing from torch's global RNG
    (which the model's randomness and exact resume depend on)."""
    if not workers:
        return (batches[k] for k in range(first, len(batches)))
    loader = DataLoader(
        batches,
        batch_size=None,  # an item is already a step's batches
        sampler=range(first, len(batches)),
        num_workers=workers,
        collate_fn=_as_is,
        generator=torch.Generator(),
    )
    return iter(loader)
