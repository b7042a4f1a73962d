"""VQAv2 from the official question / annotation JSONs and the COCO images, in the release's layout:

    root/v2_OpenEnded_mscoco_{train,val}2014_questions.json    root/v2_mscoco_{train,val}2014_annotations.json
    root/v2_OpenEnded_mscoco_{test-dev,test}2015_questions.json (splits "test-dev", "test-std": questions only,
                                                                  for predictions the evaluation server scores)
    root/{train2014,val2014,test2015}/COCO_<folder>_<image id, 12 digits>.jpg

Targets and metric are `workbench.vqa_score`'s (ViLT's soft scores; the official accuracy). The answer
vocabulary is the teacher's (`labels`, its `id2label` in order) or else ViLT's rule over the train + val
annotations found in `root`. A question none of whose answers is in the vocabulary is kept with an all-zero
target (its VQA accuracy is 0 whatever is predicted, as in the official evaluation) and the gold label
`IGNORE_INDEX`; `drop_unanswerable=True` drops them instead, as ViLT's own data preparation does.

Annotations are parsed once, into flat numpy arrays (DataLoader workers share them without copying);
images are opened in `__getitem__`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from workbench.data.example import Example
from workbench.data.files import (
    DatasetLayoutError,
    check_split,
    fields,
    open_rgb,
    read_json,
    require_file,
    require_layout,
)
from workbench.vqa_score import ANSWER_TYPES, AnswerScorer, dense_row, vqa_targets, vqa_vocabulary

IGNORE_INDEX = -100  # the gold label of a question with no answer in the vocabulary (cross-entropy ignores it)
SUBTYPES = {"train": "train2014", "val": "val2014", "test-dev": "test-dev2015", "test-std": "test2015"}
IMAGE_FOLDERS = {"train": "train2014", "val": "val2014", "test-dev": "test2015", "test-std": "test2015"}
FMT = "VQAv2"


def question_file(root: Path, split: str) -> Path:
    return root / f"v2_OpenEnded_mscoco_{SUBTYPES[split]}_questions.json"


def annotation_file(root: Path, split: str) -> Path:
    return root / f"v2_mscoco_{SUBTYPES[split]}_annotations.json"


def image_file(root: Path, split: str, image_id: int) -> Path:
    folder = IMAGE_FOLDERS[split]
    return root / folder / f"COCO_{folder}_{image_id:012d}.jpg"


def expected_layout(root: Path, split: str) -> list[Path]:
    """The files and folders a split needs, in the order an error lists them."""
    paths = [question_file(root, split)]
    if split in ("train", "val"):
        paths.append(annotation_file(root, split))
    return [*paths, root / IMAGE_FOLDERS[split]]


def check_layout(root: Path, split: str) -> None:
    """One error naming every missing file or folder of the split, and everything the split needs."""
    require_layout(FMT, split, expected_layout(root, split))


def _check_subtype(data: dict, path: Path, split: str) -> None:
    """The official files say which split they hold ("data_subtype"): catch a file of another split."""
    subtype = data.get("data_subtype") if isinstance(data, dict) else None
    if subtype is not None and subtype != SUBTYPES[split]:
        raise DatasetLayoutError(
            f"{FMT}: {path} holds the {subtype} data (data_subtype), but the {split} split needs {SUBTYPES[split]}"
        )


def vilt_vocabulary(root: Path, min_count: int = 9, parsed: Mapping[str, list] | None = None) -> tuple[str, ...]:
    """ViLT's answer vocabulary from the train and val annotations in `root` (whichever exist; `parsed`:
    annotation lists already read, by split)."""
    answers: list[str] = []
    found = []
    for split in ("train", "val"):  # ViLT's order: train first (first appearance fixes the order)
        path = annotation_file(root, split)
        anns = (parsed or {}).get(split)
        if anns is None and path.is_file():
            anns = read_json(path, FMT).get("annotations", [])
        if anns is not None:
            found.append(path)
            with fields(path, FMT):
                answers.extend(a["multiple_choice_answer"] for a in anns)
    if not found:
        raise DatasetLayoutError(
            f"{FMT}: no answer vocabulary: pass the teacher's labels, or put "
            f"{annotation_file(root, 'train').name} / {annotation_file(root, 'val').name} in {root}"
        )
    return vqa_vocabulary(answers, min_count)


class SparseRows:
    """Rows of {index: value} in CSR arrays."""

    def __init__(self, rows: Iterable[Mapping[int, float]]):
        ptr, idx, val = [0], [], []
        for row in rows:
            idx.extend(row.keys())
            val.extend(row.values())
            ptr.append(len(idx))
        self.ptr = np.asarray(ptr, dtype=np.int64)
        self.idx = np.asarray(idx, dtype=np.int32)
        self.val = np.asarray(val, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.ptr) - 1

    def row(self, i: int) -> dict[int, float]:
        a, b = self.ptr[i], self.ptr[i + 1]
        return dict(zip(self.idx[a:b].tolist(), self.val[a:b].tolist()))

    def dense(self, i: int, n: int) -> np.ndarray:
        return dense_row(self.row(i), n)


class VQAv2Dataset:
    """VQAv2 questions as `Example`s: qtype is the answer type (yes/no, number, other), meta holds
    "question_id", "image_id" and, on train / val, "targets" (ViLT's soft scores) and "scores" (the official
    accuracy of every answer), each a float32 vector over `labels`."""

    qtypes: tuple[str, ...] = ANSWER_TYPES
    fmt = FMT
    splits = tuple(SUBTYPES)

    def __init__(
        self,
        root: str | Path,
        split: str,
        labels: Sequence[str] | None = None,
        min_count: int = 9,
        drop_unanswerable: bool = False,
        size: int | None = None,
    ):
        self.root, self.split = Path(root), check_split(split, self.splits, FMT)
        check_layout(self.root, self.split)
        qpath = question_file(self.root, self.split)
        questions = read_json(qpath, FMT)
        _check_subtype(questions, qpath, self.split)
        with fields(qpath, FMT):
            questions = questions["questions"]
        annotations = self._annotations(questions) if self.split in ("train", "val") else None
        if labels is None:
            labels = vilt_vocabulary(self.root, min_count, {self.split: list((annotations or {}).values())})
        self.labels: tuple[str, ...] = tuple(labels)
        self._build(questions, annotations, drop_unanswerable, size)
        if len(self):
            require_file(self.image_path(int(self.image_ids[0])), FMT, "image")  # a wrong image folder fails now

    def _annotations(self, questions: list[dict]) -> dict[int, dict]:
        apath, qpath = annotation_file(self.root, self.split), question_file(self.root, self.split)
        data = read_json(apath, FMT)
        _check_subtype(data, apath, self.split)
        with fields(apath, FMT):
            anns = {a["question_id"]: a for a in data["annotations"]}
        with fields(qpath, FMT):
            unmatched = [q["question_id"] for q in questions if q["question_id"] not in anns]
        if unmatched:
            raise DatasetLayoutError(
                f"{FMT}: {len(unmatched)} of the {len(questions)} questions in {qpath} (e.g. question "
                f"{unmatched[0]}) have no annotation in {apath}: are the two files of different splits?"
            )
        return anns

    def _build(self, questions: list[dict], anns: dict[int, dict] | None, drop: bool, size: int | None) -> None:
        index = {a: i for i, a in enumerate(self.labels)}
        scorer = AnswerScorer(self.labels) if anns is not None else None
        texts, image_ids, question_ids, types, targets, scores, gold = [], [], [], [], [], [], []
        self.skipped = self.unanswerable = 0
        qpath, apath = question_file(self.root, self.split), annotation_file(self.root, self.split)
        with fields(qpath, FMT):
            for q in questions:
                if size is not None and len(texts) >= size:
                    break
                if anns is not None:
                    with fields(apath, FMT):  # a bad annotation names the annotations file
                        a = anns[q["question_id"]]
                        counts, answer_type = Counter(x["answer"] for x in a["answers"]), a["answer_type"]
                    target = vqa_targets(counts, index)
                    if not target:
                        self.unanswerable += 1
                        if drop:
                            self.skipped += 1
                            continue
                    targets.append(target)
                    scores.append(scorer.scores_from_counts(counts))
                    gold.append(gold_label(counts, index))
                    types.append(answer_type)
                texts.append(q["question"])
                image_ids.append(q["image_id"])
                question_ids.append(q["question_id"])
        self.texts = texts
        self.image_ids = np.asarray(image_ids, dtype=np.int64)
        self.question_ids = np.asarray(question_ids, dtype=np.int64)
        if anns is None:  # test splits: no answers, no answer types
            self.qtypes = ("unknown",)
            types = ["unknown"] * len(texts)
        known = {t: k for k, t in enumerate(self.qtypes)}
        self.qtypes = (*self.qtypes, *sorted({t for t in types if t not in known}))  # never seen in VQAv2
        codes = {t: k for k, t in enumerate(self.qtypes)}
        self.type_codes = np.asarray([codes[t] for t in types], dtype=np.int8)
        self.targets = SparseRows(targets) if anns is not None else None
        self.scores = SparseRows(scores) if anns is not None else None
        self.gold = np.asarray(gold if anns is not None else [IGNORE_INDEX] * len(texts), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.texts)

    def image_path(self, image_id: int) -> Path:
        return image_file(self.root, self.split, image_id)

    def qtype(self, i: int) -> str:
        return self.qtypes[self.type_codes[i]]

    def __getitem__(self, i: int) -> Example:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        image_id = int(self.image_ids[i])
        meta: dict = {"question_id": int(self.question_ids[i]), "image_id": image_id}
        if self.targets is not None:
            meta["targets"] = self.targets.dense(i, len(self.labels))
            meta["scores"] = self.scores.dense(i, len(self.labels))
        image = open_rgb(self.image_path(image_id), FMT)
        return Example([image], self.texts[i], int(self.gold[i]), self.qtype(i), meta)


def gold_label(counts: Mapping[str, int], index: Mapping[str, int]) -> int:
    """The in-vocabulary answer most annotators gave ({answer: annotators}; ties: the lower index), or
    IGNORE_INDEX if none is."""
    known = [a for a in counts if a in index]
    return index[max(known, key=lambda a: (counts[a], -index[a]))] if known else IGNORE_INDEX
