"""Datasets by name: `load_dataset("shapes-vqa", "train")`.

Every dataset is a map-style sequence of `Example`s with `.labels` (answer names) and `.qtypes`.
"""

from __future__ import annotations

from workbench.data.collate import Batch, Collator, image_to_tensor
from workbench.data.example import Example
from workbench.data.shapes import ITM_MIXED_TYPES, ShapesConfig, ShapesDataset

# Default sizes: shapes scenes are generated on access, so "size" is how many distinct scenes.
DEFAULT_SIZES = {"train": 120_000, "val": 2_000, "test": 3_000, "compositional": 3_000}
DATASETS = ("easy-vqa", "shapes-vqa", "shapes-ve", "shapes-nlvr", "shapes-itm", "shapes-itm-mixed", "shapes-retrieval",
            "shapes-retrieval-hard")  # fmt: skip
RETRIEVAL_DATASETS = ("shapes-retrieval-hard", "shapes-retrieval")  # galleries: the first is the default


def load_dataset(name: str, split: str, size: int | None = None, seed: int = 0):
    """A dataset by name and split (`train`, `val`, `test`, and `compositional` for shapes)."""
    if name == "easy-vqa":
        from workbench.data.easy_vqa import EasyVQADataset

        return EasyVQADataset(split, size)
    size = size or DEFAULT_SIZES.get(split)
    if name == "shapes-itm-mixed":  # the matching task with other and partial scenes' captions among the negatives
        return ShapesDataset("itm", split, size, ShapesConfig(seed=seed), itm_kinds=ITM_MIXED_TYPES)
    if name == "shapes-retrieval-hard":  # the gallery in groups of a scene and three one-attribute variants
        return ShapesDataset("retrieval", split, size, ShapesConfig(seed=seed), retrieval_groups=True)
    if name.startswith("shapes-") and name in DATASETS:
        return ShapesDataset(name.split("-", 1)[1], split, size, ShapesConfig(seed=seed))
    raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")


def num_images(name: str) -> int:
    return 2 if name == "shapes-nlvr" else 1


__all__ = [
    "DATASETS",
    "RETRIEVAL_DATASETS",
    "Batch",
    "Collator",
    "Example",
    "ShapesConfig",
    "ShapesDataset",
    "image_to_tensor",
    "load_dataset",
    "num_images",
    "DATASETS",
]
