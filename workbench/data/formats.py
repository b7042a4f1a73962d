"""Readers for four public vision-language datasets, in the layouts their releases use on disk.

Nothing is downloaded: `root` points at a local copy. Each reader is a map-style sequence of
`Example`s with `.labels` and `.qtypes`, like `ShapesDataset`, so the collator, trainers and
metrics run unchanged on real data. Annotations are parsed once, in `__init__`; images are
opened in `__getitem__`, so a reader over 100k images builds quickly and holds no pixels.

Errors name the file: a missing file raises `FileNotFoundError` with the path expected, a file
that does not parse (or lacks a field of its format) raises `ValueError`, and so does an image
PIL cannot decode.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image

from workbench.data.shapes import NLVR_LABELS, VE_LABELS, Example

_NLVR_LABEL = {"False": 0, "True": 1}  # the release spells labels "True" / "False"


def _require(path: Path, fmt: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{fmt}: expected file {path} does not exist")
    return path


def _read_json(path: Path, fmt: str) -> Any:
    try:
        return json.loads(_require(path, fmt).read_text(encoding="utf-8"))
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise ValueError(f"{fmt}: {path} is not valid JSON: {e}") from e


def _read_jsonl(path: Path, fmt: str) -> list[Any]:
    rows = []
    with _require(path, fmt).open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as e:
                    raise ValueError(f"{fmt}: line {n} of {path} is not valid JSON: {e}") from e
    return rows


@contextmanager
def _fields(path: Path, fmt: str) -> Iterator[None]:
    """A record missing a field (or of the wrong shape) is a malformed file: say which file."""
    try:
        yield
    except (KeyError, TypeError) as e:
        raise ValueError(f"{fmt}: malformed record in {path}: {e!r}") from e


def _open_rgb(path: Path, fmt: str) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{fmt}: expected image {path} does not exist") from e
    except OSError as e:  # PIL's UnidentifiedImageError and truncated-data errors are OSErrors
        raise ValueError(f"{fmt}: cannot read image {path}: {e}") from e


class VQAv2Dataset:
    """VQAv2 from the official question / annotation JSONs and the COCO 2014 images.

    The label vocabulary is `answers`, or else this split's `top_k` most frequent
    `multiple_choice_answer`s (ties alphabetical): build val with `answers=train.labels` so the
    indices agree. Targets are ViLT's soft scores, min(1, n / 3) for an answer n of the 10
    annotators gave, in `meta["soft_labels"]`; `label` is the best in-vocabulary answer (ties go
    to the more frequent one). Questions with no in-vocabulary answer are skipped (counted in
    `.skipped`): they have no class target, and ViLT drops them too.
    """

    qtypes: tuple[str, ...] = ("yes/no", "number", "other")
    fmt = "VQAv2"

    def __init__(self, root: str | Path, split: str, answers: Sequence[str] | None = None, top_k: int = 3129):
        self.root, self.split = Path(root), split
        qpath = self.root / f"v2_OpenEnded_mscoco_{split}2014_questions.json"
        apath = self.root / f"v2_mscoco_{split}2014_annotations.json"
        questions, annotations = _read_json(qpath, self.fmt), _read_json(apath, self.fmt)
        with _fields(apath, self.fmt):
            anns = {a["question_id"]: a for a in annotations["annotations"]}
            if answers is None:
                counts = Counter(a["multiple_choice_answer"] for a in anns.values())
                answers = sorted(counts, key=lambda a: (-counts[a], a))[:top_k]
            self.labels: tuple[str, ...] = tuple(answers)
            index = {a: i for i, a in enumerate(self.labels)}
            targets = {}
            for qid, a in anns.items():
                n = Counter(x["answer"] for x in a["answers"])
                soft = {index[ans]: min(1.0, k / 3) for ans, k in n.items() if ans in index}
                targets[qid] = (a["answer_type"], soft)
        self.items: list[tuple[str, int, int, str, dict[int, float], int]] = []
        self.skipped = 0
        with _fields(qpath, self.fmt):
            for q in questions["questions"]:
                if q["question_id"] not in targets:
                    raise ValueError(f"{self.fmt}: question {q['question_id']} of {qpath} has no annotation in {apath}")
                qtype, soft = targets[q["question_id"]]
                if not soft:
                    self.skipped += 1
                    continue
                label = max(soft, key=lambda i: (soft[i], -i))
                self.items.append((q["question"], q["image_id"], label, qtype, soft, q["question_id"]))

    def __len__(self) -> int:
        return len(self.items)

    def image_path(self, image_id: int) -> Path:
        return self.root / f"{self.split}2014" / f"COCO_{self.split}2014_{image_id:012d}.jpg"

    def __getitem__(self, i: int) -> Example:
        text, image_id, label, qtype, soft, qid = self.items[i]
        image = _open_rgb(self.image_path(image_id), self.fmt)
        meta = {"question_id": qid, "image_id": image_id, "soft_labels": soft}
        return Example([image], text, label, qtype, meta)


class SNLIVEDataset:
    """SNLI-VE (Xie et al. 2019): a Flickr30k image as premise, a hypothesis sentence, 3 classes.

    Rows whose gold label is not one of the three (SNLI's "-": no annotator majority) are skipped.
    """

    labels: tuple[str, ...] = VE_LABELS
    qtypes: tuple[str, ...] = ("ve",)
    fmt = "SNLI-VE"

    def __init__(self, root: str | Path, split: str):
        self.root = Path(root)
        path = self.root / f"snli_ve_{split}.jsonl"
        rows = _read_jsonl(path, self.fmt)
        with _fields(path, self.fmt):
            self.items = [
                (r["sentence2"], str(r["Flickr30K_ID"]), VE_LABELS.index(r["gold_label"]), r["pairID"])
                for r in rows
                if r["gold_label"] in VE_LABELS
            ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Example:
        text, image_id, label, pair_id = self.items[i]
        image = _open_rgb(self.root / "flickr30k_images" / f"{image_id}.jpg", self.fmt)
        return Example([image], text, label, "ve", {"pair_id": pair_id, "image_id": image_id})


class NLVR2Dataset:
    """NLVR2 (Suhr et al. 2019): a sentence that is true or false of a (left, right) image pair.

    Releases lay the images out differently (train's numbered sub-directories, with or without
    an `images/` level), so each image is looked up in the candidate places in turn.
    """

    labels: tuple[str, ...] = NLVR_LABELS
    qtypes: tuple[str, ...] = ("nlvr",)
    fmt = "NLVR2"

    def __init__(self, root: str | Path, split: str):
        self.root, self.split = Path(root), split
        path = self.root / f"{split}.json"
        rows = _read_jsonl(path, self.fmt)
        with _fields(path, self.fmt):
            self.items = [(r["sentence"], _NLVR_LABEL[r["label"]], r["identifier"], r.get("directory")) for r in rows]

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
        raise FileNotFoundError(
            f"{self.fmt}: image {name} not found; expected one of {', '.join(map(str, candidates))}"
        )

    def __getitem__(self, i: int) -> Example:
        text, label, identifier, directory = self.items[i]
        images = [_open_rgb(self.image_path(identifier, directory, k), self.fmt) for k in (0, 1)]
        return Example(images, text, label, "nlvr", {"identifier": identifier})


class KarpathyCaptions:
    """COCO captions with Karpathy's splits (`dataset_coco.json`), one `Example` per caption.

    For retrieval the label is the image's index among the split's images, so the captions of an
    image share it; there is no class vocabulary (`labels` is empty, as for shapes retrieval).
    "train" includes "restval", as in the usual 113k-image training set.
    """

    labels: tuple[str, ...] = ()
    qtypes: tuple[str, ...] = ("caption",)
    fmt = "COCO-Karpathy"
    splits = ("train", "val", "test")

    def __init__(self, root: str | Path, split: str, images_root: str | Path | None = None):
        if split not in self.splits:
            raise ValueError(f"{self.fmt} has splits {self.splits}, not {split!r}")
        path = Path(root) / "dataset_coco.json"
        base = Path(images_root or root)
        wanted = {"train", "restval"} if split == "train" else {split}
        data = _read_json(path, self.fmt)
        self.images: list[tuple[Path, int]] = []  # (path, imgid)
        self.items: list[tuple[str, int]] = []  # (caption, image index)
        with _fields(path, self.fmt):
            for img in data["images"]:
                if img["split"] in wanted:
                    # Some raw captions end in spaces or a newline.
                    self.items.extend((s["raw"].strip(), len(self.images)) for s in img["sentences"])
                    self.images.append((base / img["filepath"] / img["filename"], img["imgid"]))
        self.image_count = len(self.images)

    def __len__(self) -> int:
        return len(self.items)

    def image(self, i: int) -> Image.Image:
        return _open_rgb(self.images[i][0], self.fmt)

    def __getitem__(self, i: int) -> Example:
        text, label = self.items[i]
        return Example([self.image(label)], text, label, "caption", {"imgid": self.images[label][1]})
