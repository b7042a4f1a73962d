"""Real datasets by name, read from a local copy: `load_real_dataset("vqav2", "train", "/data/vqav2", labels)`.

Nothing is downloaded. Each name maps to a reader of the release's own layout (`LAYOUTS` says what a
folder must hold); the result has the interface of every workbench dataset (a sequence of `Example`s with
`.labels`, `.qtypes` and `.qtype(i)`), with images opened per item, never held in memory.

Split names: the workbench's `train` / `val` / `test` work on every dataset (the trainer asks for them) and
map to the release's names (`SPLIT_ALIASES`); the release's own names work too (`dev`, `test1`, `test-dev`).
VQAv2 has no labelled test split: `test` is the official val split (test-dev answers are scored by the
evaluation server; `test-dev` reads its questions for a submission).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from workbench.data.files import DatasetLayoutError, check_split
from workbench.data.formats import KarpathyCaptions, NLVR2Dataset, SNLIVEDataset
from workbench.data.vqav2 import VQAv2Dataset

REAL_DATASETS = ("vqav2", "snli-ve", "nlvr2", "coco-karpathy")
TASKS = {"vqav2": "vqa", "snli-ve": "ve", "nlvr2": "nlvr", "coco-karpathy": "retrieval"}
READERS = {"vqav2": VQAv2Dataset, "snli-ve": SNLIVEDataset, "nlvr2": NLVR2Dataset, "coco-karpathy": KarpathyCaptions}
SPLIT_ALIASES: dict[str, dict[str, str]] = {
    "vqav2": {"test": "val"},
    "snli-ve": {"val": "dev"},
    "nlvr2": {"val": "dev", "test": "test1"},
    "coco-karpathy": {},
}
LAYOUTS = {
    "vqav2": "v2_OpenEnded_mscoco_{train,val}2014_questions.json, v2_mscoco_{train,val}2014_annotations.json, "
    "train2014/COCO_train2014_<12-digit id>.jpg, val2014/COCO_val2014_<12-digit id>.jpg "
    "(test-dev: v2_OpenEnded_mscoco_test-dev2015_questions.json, test2015/)",
    "snli-ve": "snli_ve_{train,dev,test}.jsonl, flickr30k_images/<Flickr30K_ID>.jpg",
    "nlvr2": "{train,dev,test1}.json (JSON lines), images/{train/<directory>,dev,test1}/<pair>-img{0,1}.png "
    "(or without the images/ level)",
    "coco-karpathy": "dataset_coco.json, and the folders it names (train2014/, val2014/)",
}


def is_real_dataset(name: str) -> bool:
    return name in REAL_DATASETS


def num_images(name: str) -> int:
    return 2 if name == "nlvr2" else 1


def release_split(name: str, split: str) -> str:
    """The release's name of a workbench split (`val` -> `dev` on SNLI-VE); raises `DatasetSplitError`."""
    reader = READERS[_check_name(name)]
    return check_split(split, reader.splits, reader.fmt, SPLIT_ALIASES[name])


def _check_name(name: str) -> str:
    if name not in READERS:
        raise ValueError(f"unknown real dataset {name!r}; expected one of {REAL_DATASETS}")
    return name


def load_real_dataset(
    name: str,
    split: str,
    data_root: str | Path | None,
    labels: Sequence[str] | None = None,
    size: int | None = None,
):
    """Dataset `name` (one of `REAL_DATASETS`), split `split`, read from `data_root`.

    `labels`: the teacher's class names in its order (`id2label`): VQAv2's answer vocabulary (default:
    ViLT's rule over the train + val annotations in `data_root`), or the order SNLI-VE / NLVR2 classes take.
    `size`: the first `size` examples (COCO-Karpathy: images), for quick runs. Errors are `DatasetError`s
    that name the files expected.
    """
    native = release_split(name, split)
    if data_root is None:
        raise DatasetLayoutError(f"the {name} dataset is read from disk: give its folder (--data-root) holding "
                                 f"{LAYOUTS[name]}")  # fmt: skip
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise DatasetLayoutError(f"{name}: the data root {root} is not a folder; it should hold {LAYOUTS[name]}")
    if name == "coco-karpathy":
        if labels:
            raise ValueError("coco-karpathy is a retrieval dataset: it takes no class labels")
        return KarpathyCaptions(root, native, size=size)
    return READERS[name](root, native, labels=labels, size=size)
