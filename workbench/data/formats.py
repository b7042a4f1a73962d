"""Readers for four public vision-language datasets, in the layouts their releases use on disk.

Nothing is downloaded: `root` points at a local copy. Each reader is a map-style sequence of
`Example`s with `.labels` and `.qtypes`, like `ShapesDataset`, so the collator, trainers and
metrics run unchanged on real data. Annotations are parsed once, in `__init__`; images are
opened in `__getitem__`, so a reader over 100k images builds quickly and holds no pixels.

`labels` (SNLI-VE, NLVR2): the class names of the teacher's head in its order (its `id2label`, any
case); the dataset's gold labels are then indices into that order. VQAv2 is in `workbench.data.vqav2`.

Errors (`workbench.data.files`): a file, folder or split the release does not have raises
`DatasetLayoutError` (a `FileNotFoundError`) naming what was expected; a file that does not parse (or
lacks a field of its format), or an image PIL cannot decode, raises `DatasetFormatError` (a `ValueError`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from workbench.data.example import Example
from workbench.data.files import (
    DatasetFormatError,
    DatasetLayoutError,
    check_split,
    fields,
    open_rgb,
    read_json,
    read_jsonl,
    require_dir,
    require_file,
    require_layout,
)
from workbench.data.shapes import NLVR_LABELS, VE_LABELS
from workbench.data.vqav2 import VQAv2Dataset

__all__ = ["KarpathyCaptions", "NLVR2Dataset", "SNLIVEDataset", "VQAv2Dataset", "class_order"]

_NLVR_LABEL = {"False": 0, "True": 1}  # the release spells labels "True" / "False"


def class_order(names: Sequence[str], labels: Sequence[str] | None, fmt: str) -> tuple[tuple[str, ...], list[int]]:
    """(labels, index): the dataset's classes `names` re-indexed in the teacher's order `labels` (compared
    without case); index[k] is the teacher's index of the dataset's class k."""
    if labels is None:
        return tuple(names), list(range(len(names)))
    lower = [str(x).lower() for x in labels]
    if sorted(lower) != sorted(n.lower() for n in names):
        raise DatasetFormatError(f"{fmt} has the classes {list(names)}; the teacher's labels are {list(labels)}")
    return tuple(labels), [lower.index(n.lower()) for n in names]


class SNLIVEDataset:
    """SNLI-VE (Xie et al. 2019): a Flickr30k image as premise, a hypothesis sentence, 3 classes.

    Layout: root/snli_ve_{train,dev,test}.jsonl and root/flickr30k_images/<Flickr30K_ID>.jpg. Rows whose
    gold label is not one of the three (SNLI's "-": no annotator majority) are skipped.
    """

    qtypes: tuple[str, ...] = ("ve",)
    fmt = "SNLI-VE"
    splits = ("train", "dev", "test")

    def __init__(self, root: str | Path, split: str, labels: Sequence[str] | None = None, size: int | None = None):
        self.root, self.split = Path(root), check_split(split, self.splits, self.fmt)
        path = self.root / f"snli_ve_{self.split}.jsonl"
        require_layout(self.fmt, self.split, [path, self.root / "flickr30k_images"])
        self.labels, order = class_order(VE_LABELS, labels, self.fmt)
        rows = read_jsonl(path, self.fmt)
        with fields(path, self.fmt):
            self.items = [
                (r["sentence2"], str(r["Flickr30K_ID"]), order[VE_LABELS.index(r["gold_label"])], r["pairID"])
                for r in rows
                if r["gold_label"] in VE_LABELS
            ][:size]
        if self.items:
            require_file(self.image_path(self.items[0][1]), self.fmt, "image")

    def __len__(self) -> int:
        return len(self.items)

    def image_path(self, image_id: str) -> Path:
        return self.root / "flickr30k_images" / f"{image_id}.jpg"

    def qtype(self, i: int) -> str:
        return "ve"

    def __getitem__(self, i: int) -> Example:
        text, image_id, label, pair_id = self.items[i]
        image = open_rgb(self.image_path(image_id), self.fmt)
        return Example([image], text, label, "ve", {"pair_id": pair_id, "image_id": image_id})


class NLVR2Dataset:
    """NLVR2 (Suhr et al. 2019): a sentence that is true or false of a (left, right) image pair.

    Layout: root/{train,dev,test1}.json (JSON lines) and the images `<identifier minus its last part>-img0.png`
    / `-img1.png`. Releases lay the images out differently (train's numbered sub-directories, with or
    without an `images/` level), so each image is looked up in the candidate places in turn.
    """

    qtypes: tuple[str, ...] = ("nlvr",)
    fmt = "NLVR2"
    splits = ("train", "dev", "test1")

    def __init__(self, root: str | Path, split: str, labels: Sequence[str] | None = None, size: int | None = None):
        self.root, self.split = Path(root), check_split(split, self.splits, self.fmt)
        path = self.root / f"{self.split}.json"
        require_layout(self.fmt, self.split, [path])
        self.labels, order = class_order(NLVR_LABELS, labels, self.fmt)
        rows = read_jsonl(path, self.fmt)
        with fields(path, self.fmt):
            self.items = [
                (r["sentence"], order[_NLVR_LABEL[r["label"]]], r["identifier"], r.get("directory")) for r in rows
            ][:size]
        other = next((x[2] for x in self.items if not x[2].startswith(f"{self.split}-")), None)
        if other is not None:  # identifiers start with their split: "dev-850-0-0"
            raise DatasetLayoutError(
                f"{self.fmt}: {path} holds pair {other!r} of another split; the {self.split} file's identifiers "
                f"start with '{self.split}-'"
            )
        if self.items:
            self.image_path(self.items[0][2], self.items[0][3], 0)  # a wrong image folder fails now

    def __len__(self) -> int:
        return len(self.items)

    def image_path(self, identifier: str, directory: int | str | None, k: int) -> Path:
        """The first existing candidate for image `k` (0 left, 1 right) of pair `identifier`."""
        name = f"{identifier.rsplit('-', 1)[0]}-img{k}.png"
        dirs = [self.root / "images" / self.split, self.root / self.split]
        if directory is not None:
            dirs = [dirs[0] / str(directory), dirs[0], dirs[1] / str(directory), dirs[1]]
        candidates = [d / name for d in dirs]
        for p in candidates:
            if p.is_file():
                return p
        raise DatasetLayoutError(
            f"{self.fmt}: image {name} not found; expected one of {', '.join(map(str, candidates))}"
        )

    def qtype(self, i: int) -> str:
        return "nlvr"

    def __getitem__(self, i: int) -> Example:
        text, label, identifier, directory = self.items[i]
        images = [open_rgb(self.image_path(identifier, directory, k), self.fmt) for k in (0, 1)]
        return Example(images, text, label, "nlvr", {"identifier": identifier})


class KarpathyCaptions:
    """COCO captions with Karpathy's splits (`dataset_coco.json`), one `Example` per caption.

    For retrieval the label is the image's index among the split's images, so the captions of an
    image share it; there is no class vocabulary (`labels` is empty, as for shapes retrieval).
    "train" includes "restval", as in the usual 113k-image training set. `size`: the first `size` images.
    """

    labels: tuple[str, ...] = ()
    qtypes: tuple[str, ...] = ("caption",)
    fmt = "COCO-Karpathy"
    splits = ("train", "val", "test")

    def __init__(self, root: str | Path, split: str, images_root: str | Path | None = None, size: int | None = None):
        split = check_split(split, self.splits, self.fmt)
        path = Path(root) / "dataset_coco.json"
        base = Path(images_root or root)
        wanted = {"train", "restval"} if split == "train" else {split}
        data = read_json(path, self.fmt)
        self.images: list[tuple[Path, int]] = []  # (path, imgid)
        self.items: list[tuple[str, int]] = []  # (caption, image index)
        with fields(path, self.fmt):
            for img in data["images"]:
                if img["split"] in wanted and (size is None or len(self.images) < size):
                    # Some raw captions end in spaces or a newline.
                    self.items.extend((s["raw"].strip(), len(self.images)) for s in img["sentences"])
                    self.images.append((base / img["filepath"] / img["filename"], img["imgid"]))
        self.image_count = len(self.images)
        if self.images:
            require_dir(self.images[0][0].parent, self.fmt, f"the {split} images, under {base}")
            require_file(self.images[0][0], self.fmt, "image")

    def __len__(self) -> int:
        return len(self.items)

    def image(self, i: int) -> Image.Image:
        return open_rgb(self.images[i][0], self.fmt)

    def qtype(self, i: int) -> str:
        return "caption"

    def __getitem__(self, i: int) -> Example:
        text, label = self.items[i]
        return Example([self.image(label)], text, label, "caption", {"imgid": self.images[label][1]})
