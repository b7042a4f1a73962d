"""Datasets by name: `load_dataset("shapes-vqa", "train")`, `load_dataset("vqav2", "val", data_root=..., labels=...)`.

Every dataset is a map-style sequence of `Example`s with `.labels` (answer names) and `.qtypes`. The shapes
and easy-VQA sets are generated or shipped; the real ones (`REAL_DATASETS`: VQAv2, SNLI-VE, NLVR2,
COCO-Karpathy) are read from a local copy in their release's layout (`workbench.data.real`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from workbench.data import real
from workbench.data.collate import Batch, Collator, ImagePipeline, image_to_tensor
from workbench.data.example import Example
from workbench.data.files import DatasetError, DatasetLayoutError
from workbench.data.paraphrase import PARAPHRASE_SPLITS, check_rewording
from workbench.data.real import LAYOUTS, REAL_DATASETS, is_real_dataset, load_real_dataset
from workbench.data.shapes import ITM_MIXED_TYPES, ShapesConfig, ShapesDataset

# Default sizes: shapes scenes are generated on access, so "size" is how many distinct scenes.
DEFAULT_SIZES = {"train": 120_000, "val": 2_000, "test": 3_000, "compositional": 3_000}
DATASETS = ("easy-vqa", "shapes-vqa", "shapes-ve", "shapes-nlvr", "shapes-itm", "shapes-itm-mixed", "shapes-retrieval",
            "shapes-retrieval-hard")  # fmt: skip
RETRIEVAL_DATASETS = ("shapes-retrieval-hard", "shapes-retrieval")  # galleries: the first is the default
PARAPHRASED = ("easy-vqa", "shapes-vqa", "shapes-ve", "shapes-nlvr")  # `load_dataset(paraphrase=...)`, test-paraphrase


def load_dataset(
    name: str,
    split: str,
    size: int | None = None,
    data_root: str | Path | None = None,
    labels: Sequence[str] | None = None,
    *,
    seed: int = 0,
    paraphrase: str | None = None,
    word_dropout: float = 0.0,
):
    """A dataset by name and split (`train`, `val`, `test`, and `compositional` for shapes).

    Reworded text (`workbench.data.paraphrase`; shapes-vqa, shapes-ve, shapes-nlvr, easy-vqa): `paraphrase="train"`
    draws each text from the training families (`word_dropout`: each word of a training text's own phrasing left
    out with that probability), the split `test-paraphrase` is the test split with every text in a held-out
    family (same images, same labels), and `val-paraphrase` the val split in the validation rewordings
    (shapes-vqa), for choosing a recipe without the test ones.

    Real datasets (`REAL_DATASETS`) are read from `data_root` (required: one `DatasetLayoutError` naming the
    files expected otherwise); `labels` is the teacher's class order (its `id2label`; VQAv2's answer
    vocabulary) and `size` the first examples. The generated datasets take neither `data_root` nor `labels`.
    """
    if split in PARAPHRASE_SPLITS:
        base, families = PARAPHRASE_SPLITS[split]
        if paraphrase not in (None, families):
            raise ValueError(f"split {split} is reworded in the {families} families, not {paraphrase!r}")
        split, paraphrase = base, families
    if paraphrase is not None and name not in PARAPHRASED:
        raise ValueError(f"{name} has no reworded texts; these do: {PARAPHRASED}")
    check_rewording(name, paraphrase, word_dropout)  # also for a real dataset, which would ignore word_dropout
    if is_real_dataset(name):
        return load_real_dataset(name, split, data_root, labels=labels, size=size)
    if data_root is not None:
        raise ValueError(f"{name} is generated, not read from disk: it takes no data root (got {data_root})")
    if name == "easy-vqa":
        from workbench.data.easy_vqa import EasyVQADataset

        return EasyVQADataset(split, size, paraphrase=paraphrase, word_dropout=word_dropout)
    size = size or DEFAULT_SIZES.get(split)
    if name == "shapes-itm-mixed":  # the matching task with other and partial scenes' captions among the negatives
        return ShapesDataset("itm", split, size, ShapesConfig(seed=seed), itm_kinds=ITM_MIXED_TYPES)
    if name == "shapes-retrieval-hard":  # the gallery in groups of a scene and three one-attribute variants
        return ShapesDataset("retrieval", split, size, ShapesConfig(seed=seed), retrieval_groups=True)
    if name.startswith("shapes-") and name in DATASETS:
        task = name.split("-", 1)[1]
        cfg = ShapesConfig(seed=seed)
        return ShapesDataset(task, split, size, cfg, paraphrase=paraphrase, word_dropout=word_dropout)
    raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS + REAL_DATASETS}")


def num_images(name: str) -> int:
    """Images per example: 2 for the NLVR tasks (shapes-nlvr, nlvr2), else 1."""
    return 2 if name == "shapes-nlvr" else real.num_images(name)


__all__ = [
    "DATASETS",
    "LAYOUTS",
    "PARAPHRASED",
    "PARAPHRASE_SPLITS",
    "REAL_DATASETS",
    "RETRIEVAL_DATASETS",
    "Batch",
    "Collator",
    "DatasetError",
    "DatasetLayoutError",
    "Example",
    "ImagePipeline",
    "ShapesConfig",
    "ShapesDataset",
    "image_to_tensor",
    "is_real_dataset",
    "load_dataset",
    "load_real_dataset",
    "num_images",
]
