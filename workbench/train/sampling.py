"""The order of training examples: one seeded permutation per epoch (what makes resume exact), and
oversampling of tagged examples (`--oversample`)."""

from __future__ import annotations

import torch

from workbench.errors import WorkbenchError


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """A permutation of range(n) that depends only on (seed, epoch): a resumed run rebuilds it."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def tagger(dataset, option: str):
    """(tags_of, known): example i's question type and finer tags without building the example, and every name
    the dataset knows; for --curriculum and --oversample."""
    qtype_of = getattr(dataset, "qtype", None)
    if qtype_of is None:
        raise WorkbenchError(f"{type(dataset).__name__} cannot tell question types without building examples; "
                             f"{option} works on easy-vqa, shapes-vqa and shapes-itm(-mixed)")  # fmt: skip
    tags_of = getattr(dataset, "tags", None) or (lambda i: (qtype_of(i),))
    return tags_of, (*dataset.qtypes, *getattr(dataset, "curriculum_tags", ()))


def sampled_order(dataset, oversample: dict, seed: int, epoch: int) -> list[int]:
    """One epoch's shuffled example order, with the examples carrying a tag of `oversample` drawn k times.

    A dataset with `group_size` g > 1 (shapes-retrieval-hard: a scene and its one-attribute variants) is
    shuffled by whole groups of g consecutive examples, so a batch (a multiple of g) holds every group it
    touches: its in-batch negatives include the near-duplicates the test gallery holds.
    """
    g = getattr(dataset, "group_size", 1)
    if g > 1:
        if oversample:
            raise WorkbenchError("--oversample works on question types, not on grouped retrieval data")
        return [k * g + j for k in epoch_order(len(dataset) // g, seed, epoch) for j in range(g)]
    if not oversample:
        return epoch_order(len(dataset), seed, epoch)
    tags_of, known = tagger(dataset, "--oversample")
    unknown = set(oversample) - set(known)
    if unknown:
        raise WorkbenchError(f"--oversample {sorted(unknown)}: not question types or tags of this dataset {known}")
    pool = [i for i in range(len(dataset)) for _ in range(max(oversample.get(t, 1) for t in tags_of(i)))]
    return [pool[j] for j in epoch_order(len(pool), seed, epoch)]


def parse_oversample(items: list[str]) -> dict:
    """`["not-colour-present:4"]` -> `{"not-colour-present": 4}`."""
    out = {}
    for item in items:
        name, _, k = item.rpartition(":")
        if not name or not k.isdigit() or int(k) < 1:
            raise WorkbenchError(f"--oversample {item!r}: expected TAG:K with K >= 1, e.g. not-colour-present:4")
        out[name] = int(k)
    return out
