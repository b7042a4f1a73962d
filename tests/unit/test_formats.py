"""Readers of real dataset layouts, on tiny fixtures written in those layouts into tmp_path."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workbench.data.files import DatasetFormatError, DatasetLayoutError, DatasetSplitError
from workbench.data.formats import KarpathyCaptions, NLVR2Dataset, SNLIVEDataset, VQAv2Dataset
from workbench.data.vqav2 import IGNORE_INDEX


def _image(path: Path, size: tuple[int, int], mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, 128).save(path)
    return path


def _json(path: Path, obj: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _path_in(path: Path) -> str:
    return re.escape(str(path))


# ----------------------------------------------------------------------------------------------
# VQAv2


def _ann(qid: int, image_id: int, answer_type: str, mca: str, answers: list[str]) -> dict:
    assert len(answers) == 10
    return {
        "question_id": qid,
        "image_id": image_id,
        "question_type": "what",
        "answer_type": answer_type,
        "multiple_choice_answer": mca,
        "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1} for k, a in enumerate(answers)],
    }


VQA_QUESTIONS = [
    {"image_id": 1, "question": "how many dogs?", "question_id": 10},
    {"image_id": 1, "question": "is it sunny?", "question_id": 11},
    {"image_id": 2, "question": "is it a cat?", "question_id": 20},
    {"image_id": 2, "question": "what colour is the car?", "question_id": 21},
]
VQA_ANNOTATIONS = [
    _ann(10, 1, "number", "2", ["2"] * 4 + ["3"] + ["two"] * 5),
    _ann(11, 1, "yes/no", "yes", ["yes"] * 10),
    _ann(20, 2, "yes/no", "yes", ["no"] * 3 + ["yes"] * 7),
    _ann(21, 2, "other", "blue", ["red"] * 2 + ["blue"] * 8),
]


@pytest.fixture
def vqa_root(tmp_path: Path) -> Path:
    _json(tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json",
          {"data_subtype": "val2014", "questions": VQA_QUESTIONS})  # fmt: skip
    _json(tmp_path / "v2_mscoco_val2014_annotations.json", {"data_subtype": "val2014", "annotations": VQA_ANNOTATIONS})
    _image(tmp_path / "val2014" / "COCO_val2014_000000000001.jpg", (20, 10))
    _image(tmp_path / "val2014" / "COCO_val2014_000000000002.jpg", (12, 8), mode="L")
    return tmp_path


def _row(vector, labels) -> dict:
    return {labels[k]: pytest.approx(float(v)) for k, v in enumerate(vector) if v}


def test_vqav2_default_vocabulary_is_vilts_rule(vqa_root: Path) -> None:
    # ViLT: normalised multiple_choice_answers given at least min_count times, in order of first appearance
    ds = VQAv2Dataset(vqa_root, "val", min_count=1)
    assert ds.labels == ("2", "yes", "blue")
    assert len(ds) == 4 and ds.unanswerable == 0
    assert [ds[i].text for i in range(4)] == [
        "how many dogs?",
        "is it sunny?",
        "is it a cat?",
        "what colour is the car?",
    ]
    assert [ds[i].label for i in range(4)] == [0, 1, 1, 2]
    assert [ds[i].qtype for i in range(4)] == [ds.qtype(i) for i in range(4)] == ["number", "yes/no", "yes/no", "other"]
    assert ds.qtypes == ("yes/no", "number", "other")
    assert ds[0].meta["question_id"] == 10 and ds[3].meta["image_id"] == 2
    assert VQAv2Dataset(vqa_root, "val", min_count=2).labels == ("yes",)


def test_vqav2_targets_are_vilts_scores_and_scores_the_official_accuracy(vqa_root: Path) -> None:
    labels = ("yes", "2", "3", "no", "two")
    ds = VQAv2Dataset(vqa_root, "val", labels=labels)
    first = ds[0]  # "2" x4, "3" x1, "two" x5
    assert _row(first.meta["targets"], labels) == {"2": 1.0, "3": 0.3, "two": 1.0}  # raw strings, ViLT's table
    assert _row(first.meta["scores"], labels) == {"2": 1.0, "3": 0.3, "two": 1.0}  # "two" == "2": 9 of 10
    assert first.label == 4  # the in-vocabulary answer most annotators gave ("two", 5 of them)
    assert first.meta["targets"].dtype == np.float32 and first.meta["targets"].shape == (5,)
    assert _row(ds[2].meta["targets"], labels) == {"yes": 1.0, "no": 0.9} and ds[2].label == 0
    # "red" / "blue" are outside the vocabulary: kept, with zero targets and no gold label
    assert not ds[3].meta["targets"].any() and not ds[3].meta["scores"].any() and ds[3].label == IGNORE_INDEX
    assert len(ds) == 4 and ds.unanswerable == 1 and ds.skipped == 0
    dropped = VQAv2Dataset(vqa_root, "val", labels=labels, drop_unanswerable=True)
    assert (
        len(dropped) == 3
        and dropped.skipped == 1
        and [dropped[i].meta["question_id"] for i in range(3)] == [10, 11, 20]
    )
    assert len(VQAv2Dataset(vqa_root, "val", labels=labels, size=2)) == 2


def test_vqav2_images_are_rgb_and_lazy(vqa_root: Path) -> None:
    ds = VQAv2Dataset(vqa_root, "val", labels=["yes"])
    missing = vqa_root / "val2014" / "COCO_val2014_000000000002.jpg"
    missing.unlink()  # not read until accessed
    ex = ds[0]
    assert len(ex.images) == 1 and ex.images[0].size == (20, 10) and ex.images[0].mode == "RGB"
    with pytest.raises(DatasetLayoutError, match=_path_in(missing)):
        ds[2]
    (vqa_root / "val2014" / "COCO_val2014_000000000001.jpg").unlink()  # the first image: checked on load
    with pytest.raises(DatasetLayoutError, match="COCO_val2014_000000000001.jpg"):
        VQAv2Dataset(vqa_root, "val", labels=["yes"])


def test_vqav2_missing_annotations_file(vqa_root: Path) -> None:
    (vqa_root / "v2_mscoco_val2014_annotations.json").unlink()
    with pytest.raises(DatasetLayoutError) as e:
        VQAv2Dataset(vqa_root, "val", labels=["yes"])
    message = str(e.value)  # one error: what is missing, and every file the split needs
    assert "missing " + str(vqa_root / "v2_mscoco_val2014_annotations.json") in message
    assert "v2_OpenEnded_mscoco_val2014_questions.json" in message and "val2014/" in message


def test_vqav2_missing_everything_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError) as e:
        VQAv2Dataset(tmp_path, "train")
    for name in ("v2_OpenEnded_mscoco_train2014_questions.json", "v2_mscoco_train2014_annotations.json", "train2014"):
        assert str(tmp_path / name) in str(e.value)
    assert "VQAv2" in str(e.value)


def test_vqav2_wrong_split_name(vqa_root: Path) -> None:
    with pytest.raises(DatasetSplitError, match="VQAv2 has no split 'validation'; its splits are train, val, test-dev"):
        VQAv2Dataset(vqa_root, "validation")


def test_vqav2_annotations_of_another_split(vqa_root: Path) -> None:
    path = vqa_root / "v2_mscoco_val2014_annotations.json"
    _json(path, {"data_subtype": "train2014", "annotations": VQA_ANNOTATIONS})
    with pytest.raises(DatasetLayoutError, match=rf"{_path_in(path)} holds the train2014 data"):
        VQAv2Dataset(vqa_root, "val", labels=["yes"])
    # without data_subtype: the question ids tell
    other = [dict(a, question_id=a["question_id"] + 1000) for a in VQA_ANNOTATIONS]
    _json(path, {"annotations": other})
    with pytest.raises(DatasetLayoutError, match="4 of the 4 questions .* have no annotation .* different splits"):
        VQAv2Dataset(vqa_root, "val", labels=["yes"])


def test_vqav2_test_dev_has_questions_only(vqa_root: Path) -> None:
    _json(vqa_root / "v2_OpenEnded_mscoco_test-dev2015_questions.json",
          {"data_subtype": "test-dev2015", "questions": VQA_QUESTIONS[:2]})  # fmt: skip
    _image(vqa_root / "test2015" / "COCO_test2015_000000000001.jpg", (9, 7))
    ds = VQAv2Dataset(vqa_root, "test-dev", min_count=1)  # the vocabulary from the val annotations
    assert ds.labels == ("2", "yes", "blue") and len(ds) == 2
    ex = ds[1]
    assert ex.label == IGNORE_INDEX and ex.qtype == "unknown" and "targets" not in ex.meta
    assert ex.images[0].size == (9, 7)


def test_vqav2_bad_json(vqa_root: Path) -> None:
    path = vqa_root / "v2_mscoco_val2014_annotations.json"
    path.write_text(path.read_text()[:-5])
    with pytest.raises(DatasetFormatError, match=_path_in(path)):
        VQAv2Dataset(vqa_root, "val")


def test_vqav2_missing_field(vqa_root: Path) -> None:
    path = vqa_root / "v2_mscoco_val2014_annotations.json"
    data = json.loads(path.read_text())
    del data["annotations"][1]["answer_type"]
    _json(path, data)
    with pytest.raises(ValueError, match=_path_in(path)):
        VQAv2Dataset(vqa_root, "val", labels=["yes"])


def test_vqav2_corrupt_image(vqa_root: Path) -> None:
    path = vqa_root / "val2014" / "COCO_val2014_000000000001.jpg"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DatasetFormatError, match=_path_in(path)):
        VQAv2Dataset(vqa_root, "val", labels=["yes"])[0]


# ----------------------------------------------------------------------------------------------
# SNLI-VE


@pytest.fixture
def snli_root(tmp_path: Path) -> Path:
    rows = [
        {"Flickr30K_ID": "100", "sentence2": "A dog runs.", "gold_label": "entailment", "pairID": "100.jpg#0r1e"},
        {"Flickr30K_ID": "100", "sentence2": "A dog sleeps.", "gold_label": "neutral", "pairID": "100.jpg#0r1n"},
        {"Flickr30K_ID": "200", "sentence2": "Nobody agrees.", "gold_label": "-", "pairID": "200.jpg#0r1x"},
        {"Flickr30K_ID": "200", "sentence2": "A cat flies.", "gold_label": "contradiction", "pairID": "200.jpg#0r1c"},
    ]
    _jsonl(tmp_path / "snli_ve_dev.jsonl", rows)
    _image(tmp_path / "flickr30k_images" / "100.jpg", (16, 9))
    _image(tmp_path / "flickr30k_images" / "200.jpg", (7, 5), mode="L")
    return tmp_path


def test_snli_ve(snli_root: Path) -> None:
    ds = SNLIVEDataset(snli_root, "dev")
    assert ds.labels == ("entailment", "neutral", "contradiction") and ds.qtypes == ("ve",)
    assert len(ds) == 3  # the "-" row is skipped
    exs = [ds[i] for i in range(3)]
    assert [e.text for e in exs] == ["A dog runs.", "A dog sleeps.", "A cat flies."]
    assert [e.label for e in exs] == [0, 1, 2]
    assert {e.qtype for e in exs} == {"ve"}
    assert [e.images[0].size for e in exs] == [(16, 9), (16, 9), (7, 5)]
    assert all(len(e.images) == 1 and e.images[0].mode == "RGB" for e in exs)
    assert exs[2].meta["pair_id"] == "200.jpg#0r1c"


def test_snli_ve_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=_path_in(tmp_path / "snli_ve_test.jsonl")) as e:
        SNLIVEDataset(tmp_path, "test")
    assert "SNLI-VE" in str(e.value) and str(tmp_path / "flickr30k_images") in str(e.value)  # one error, both


def test_snli_ve_wrong_split_and_missing_first_image(snli_root: Path) -> None:
    with pytest.raises(DatasetSplitError, match="SNLI-VE has no split 'val'; its splits are train, dev, test"):
        SNLIVEDataset(snli_root, "val")
    (snli_root / "flickr30k_images" / "100.jpg").unlink()
    with pytest.raises(DatasetLayoutError, match=_path_in(snli_root / "flickr30k_images" / "100.jpg")):
        SNLIVEDataset(snli_root, "dev")


def test_snli_ve_bad_json_line(snli_root: Path) -> None:
    path = snli_root / "snli_ve_dev.jsonl"
    path.write_text(path.read_text() + '{"Flickr30K_ID": "3",\n')
    with pytest.raises(ValueError, match=rf"line 5 of {_path_in(path)}"):
        SNLIVEDataset(snli_root, "dev")


def test_snli_ve_corrupt_image(snli_root: Path) -> None:
    path = snli_root / "flickr30k_images" / "200.jpg"
    path.write_bytes(b"not a jpeg")
    ds = SNLIVEDataset(snli_root, "dev")
    assert ds[0].images[0].size == (16, 9)
    with pytest.raises(ValueError, match=_path_in(path)):
        ds[2]


# ----------------------------------------------------------------------------------------------
# NLVR2


def _nlvr_rows(split: str, directory: bool) -> list[dict]:
    rows = [
        {"identifier": f"{split}-850-0-0", "sentence": "Both images show dogs.", "label": "True"},
        {"identifier": f"{split}-850-0-1", "sentence": "One image shows a cat.", "label": "False"},
        {"identifier": f"{split}-12-3-2", "sentence": "There are two birds.", "label": "False"},
    ]
    if directory:
        for r, d in zip(rows, (7, 7, 12)):
            r["directory"] = d
    return rows


# Each release layout, as (split, has "directory" field, folder of pair 850-0 relative to root).
LAYOUTS = [
    ("train", True, "images/train/7"),
    ("train", True, "images/train"),
    ("dev", False, "images/dev"),
    ("train", True, "train/7"),
    ("test1", False, "test1"),
]


@pytest.mark.parametrize(("split", "directory", "folder"), LAYOUTS)
def test_nlvr2_layouts(tmp_path: Path, split: str, directory: bool, folder: str) -> None:
    _jsonl(tmp_path / f"{split}.json", _nlvr_rows(split, directory))
    for prefix, sub in ((f"{split}-850-0", folder), (f"{split}-12-3", folder.replace("/7", "/12"))):
        _image(tmp_path / sub / f"{prefix}-img0.png", (10, 5))
        _image(tmp_path / sub / f"{prefix}-img1.png", (6, 9), mode="RGBA")
    ds = NLVR2Dataset(tmp_path, split)
    assert ds.labels == ("false", "true") and ds.qtypes == ("nlvr",)
    assert len(ds) == 3
    exs = [ds[i] for i in range(3)]
    assert [e.text for e in exs] == ["Both images show dogs.", "One image shows a cat.", "There are two birds."]
    assert [e.label for e in exs] == [1, 0, 0]
    assert {e.qtype for e in exs} == {"nlvr"}
    for e in exs:
        assert [im.size for im in e.images] == [(10, 5), (6, 9)]  # left, right
        assert [im.mode for im in e.images] == ["RGB", "RGB"]
    assert exs[2].meta["identifier"] == f"{split}-12-3-2"


def test_nlvr2_first_candidate_wins(tmp_path: Path) -> None:
    _jsonl(tmp_path / "train.json", _nlvr_rows("train", True)[:1])
    for folder, size in (("train", (3, 3)), ("images/train", (4, 4)), ("images/train/7", (5, 5))):
        _image(tmp_path / folder / "train-850-0-img0.png", size)
        _image(tmp_path / folder / "train-850-0-img1.png", size)
    assert [im.size for im in NLVR2Dataset(tmp_path, "train")[0].images] == [(5, 5), (5, 5)]


def test_nlvr2_missing_image_lists_candidates(tmp_path: Path) -> None:
    _jsonl(tmp_path / "train.json", _nlvr_rows("train", True))
    with pytest.raises(DatasetLayoutError) as e:  # the first pair's left image is looked for on load
        NLVR2Dataset(tmp_path, "train")
    for folder in ("images/train/7", "images/train", "train/7", "train"):
        assert str(tmp_path / folder / "train-850-0-img0.png") in str(e.value)
    for prefix in ("train-850-0", "train-12-3"):  # with images, a missing one fails when the example is read
        for k in (0, 1):
            _image(tmp_path / "images" / "train" / f"{prefix}-img{k}.png", (4, 4))
    (tmp_path / "images" / "train" / "train-12-3-img1.png").unlink()
    ds = NLVR2Dataset(tmp_path, "train")
    assert len(ds[0].images) == 2
    with pytest.raises(DatasetLayoutError, match="train-12-3-img1.png not found"):
        ds[2]


def test_nlvr2_file_of_another_split_and_wrong_split_name(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "dev.json", _nlvr_rows("train", False))
    with pytest.raises(DatasetLayoutError, match=rf"{_path_in(path)} holds pair 'train-850-0-0' of another split"):
        NLVR2Dataset(tmp_path, "dev")
    with pytest.raises(DatasetSplitError, match="NLVR2 has no split 'test'; its splits are train, dev, test1"):
        NLVR2Dataset(tmp_path, "test")


def test_nlvr2_and_snli_ve_labels_in_the_teachers_order(tmp_path: Path, snli_root: Path) -> None:
    _jsonl(tmp_path / "dev.json", _nlvr_rows("dev", False))
    for prefix in ("dev-850-0", "dev-12-3"):
        for k in (0, 1):
            _image(tmp_path / "dev" / f"{prefix}-img{k}.png", (4, 4))
    ds = NLVR2Dataset(tmp_path, "dev", labels=["True", "False"])  # a teacher whose class 0 is "True"
    assert ds.labels == ("True", "False") and [ds[i].label for i in range(3)] == [0, 1, 1]
    ve = SNLIVEDataset(snli_root, "dev", labels=["contradiction", "entailment", "neutral"])
    assert [ve[i].label for i in range(3)] == [1, 2, 0]
    with pytest.raises(DatasetFormatError, match="classes"):
        SNLIVEDataset(snli_root, "dev", labels=["yes", "no", "maybe"])


def test_nlvr2_missing_file_and_bad_label(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=_path_in(tmp_path / "dev.json")):
        NLVR2Dataset(tmp_path, "dev")
    rows = _nlvr_rows("dev", False)
    rows[1]["label"] = "maybe"
    path = _jsonl(tmp_path / "dev.json", rows)
    with pytest.raises(ValueError, match=_path_in(path)):
        NLVR2Dataset(tmp_path, "dev")


def test_nlvr2_corrupt_image(tmp_path: Path) -> None:
    _jsonl(tmp_path / "dev.json", _nlvr_rows("dev", False))
    _image(tmp_path / "dev" / "dev-850-0-img0.png", (4, 4))
    bad = tmp_path / "dev" / "dev-850-0-img1.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ValueError, match=_path_in(bad)):
        NLVR2Dataset(tmp_path, "dev")[0]


# ----------------------------------------------------------------------------------------------
# COCO Karpathy captions


def _coco_image(imgid: int, split: str, folder: str, captions: list[str]) -> dict:
    return {
        "filepath": folder,
        "filename": f"COCO_{folder}_{imgid:012d}.jpg",
        "split": split,
        "imgid": imgid,
        "sentences": [{"raw": c, "tokens": c.lower().strip(" .").split()} for c in captions],
    }


@pytest.fixture
def karpathy_root(tmp_path: Path) -> Path:
    images = [
        _coco_image(0, "train", "train2014", ["A man rides a horse.", "A horse and its rider. "]),
        _coco_image(1, "val", "val2014", ["A bowl of fruit."]),
        _coco_image(2, "restval", "val2014", ["Two cats on a sofa."]),
        _coco_image(3, "test", "val2014", ["A red bus.", "A bus in the street.", "A double-decker."]),
    ]
    _json(tmp_path / "dataset_coco.json", {"images": images, "dataset": "coco"})
    for img, size in zip(images, ((8, 6), (9, 7), (10, 8), (11, 9))):
        _image(tmp_path / img["filepath"] / img["filename"], size)
    return tmp_path


def test_karpathy_train_includes_restval_and_shares_labels(karpathy_root: Path) -> None:
    ds = KarpathyCaptions(karpathy_root, "train")
    assert ds.image_count == 2 and len(ds) == 3
    exs = [ds[i] for i in range(3)]
    assert [e.text for e in exs] == ["A man rides a horse.", "A horse and its rider.", "Two cats on a sofa."]
    assert [e.label for e in exs] == [0, 0, 1]
    assert {e.qtype for e in exs} == {"caption"} and ds.qtypes == ("caption",)
    assert [e.images[0].size for e in exs] == [(8, 6), (8, 6), (10, 8)]
    assert exs[2].meta["imgid"] == 2
    assert ds.image(1).size == (10, 8) and ds.image(1).mode == "RGB"


def test_karpathy_val_and_test(karpathy_root: Path) -> None:
    val, test = KarpathyCaptions(karpathy_root, "val"), KarpathyCaptions(karpathy_root, "test")
    assert (val.image_count, len(val), val[0].text, val[0].label) == (1, 1, "A bowl of fruit.", 0)
    assert (test.image_count, len(test)) == (1, 3)
    assert [test[i].label for i in range(3)] == [0, 0, 0]
    assert test[2].images[0].size == (11, 9)


def test_karpathy_images_root(karpathy_root: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("coco")
    _image(elsewhere / "val2014" / "COCO_val2014_000000000001.jpg", (5, 5))
    ds = KarpathyCaptions(karpathy_root, "val", images_root=elsewhere)
    assert ds[0].images[0].size == (5, 5)


def test_karpathy_errors(karpathy_root: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    with pytest.raises(ValueError, match="restval"):
        KarpathyCaptions(karpathy_root, "restval")
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(FileNotFoundError, match=_path_in(empty / "dataset_coco.json")):
        KarpathyCaptions(empty, "train")
    bad = karpathy_root / "val2014" / "COCO_val2014_000000000002.jpg"
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])  # truncated JPEG
    ds = KarpathyCaptions(karpathy_root, "train")
    with pytest.raises(ValueError, match=_path_in(bad)):
        ds.image(1)
    path = karpathy_root / "dataset_coco.json"
    path.write_text("{images: []}")
    with pytest.raises(ValueError, match=_path_in(path)):
        KarpathyCaptions(karpathy_root, "train")


def test_easy_vqa_split_is_disjoint_flipped_and_knows_qtypes_without_images():
    from workbench.data import load_dataset

    train, val = load_dataset("easy-vqa", "train"), load_dataset("easy-vqa", "val")
    assert not {i for _, _, i, _ in train.items} & {i for _, _, i, _ in val.items}
    assert len(train) == 4 * len(train.items) and len(val) == len(val.items)  # flips only in training
    for i in (0, 1, 2, 3, 4001, len(train) - 1):
        ex = train[i]
        assert train.qtype(i) == ex.qtype and ex.meta["flip"] == i % 4
        answer = train.labels[ex.label]
        assert ex.qtype == (
            "yes/no"
            if answer in ("yes", "no")
            else "shape"
            if answer in ("circle", "rectangle", "triangle")
            else "colour"
        )


def test_easy_vqa_yes_no_tags_agree_with_the_images_own_colour_and_shape_questions():
    """The curriculum's tags say whether the colour / shape a yes/no question asks about is in the image; check
    them against what the same image's "what color" / "what shape" questions answer."""
    from workbench.data import load_dataset
    from workbench.data.easy_vqa import TAGS

    train = load_dataset("easy-vqa", "train")
    assert train.curriculum_tags == TAGS
    truth: dict[int, set[str]] = {}
    for q, label, image, qtype in train.items:
        if qtype in ("colour", "shape") and q in ("what color is the shape?", "what shape is in the image?"):
            truth.setdefault(image, set()).add(train.labels[label])
    checked = {tag: 0 for tag in TAGS}
    for k, (q, _, image, qtype) in enumerate(train.items):
        if qtype != "yes/no" or image not in truth:
            continue
        tags = train.tags(4 * k + 3)  # every flip of a question carries its tags
        assert tags[0] == "yes/no" and tags[1] in TAGS
        words = set(q.rstrip("?").split())
        asked = words & {
            "red",
            "green",
            "blue",
            "black",
            "gray",
            "yellow",
            "teal",
            "brown",
            "circle",
            "rectangle",
            "triangle",
        }
        assert len(asked) == 1, q
        present = bool(asked & truth[image])
        if present or len(truth[image]) == 2:  # an absent attribute is known only when both of the image's are
            assert tags[1].endswith("present" if present else "absent"), (q, truth[image], tags)
            assert tags[1].startswith("not-") == (" not " in q or " no " in q), (q, tags)
            checked[tags[1]] += 1
    assert min(checked.values()) > 100, checked
    others = [4 * k for k, item in enumerate(train.items) if item[3] != "yes/no"]
    assert others and all(train.tags(i) == (train.qtype(i),) for i in others)  # no finer kind outside yes/no


def test_easy_vqa_colour_matching_phases_draw_present_and_absent_colours_in_turn():
    """The README's colour-matching probe: the shipped curriculum, then balanced colour and yes/no phases."""
    from workbench.data import load_dataset
    from workbench.data.easy_vqa import CURRICULUM, TAGS
    from workbench.train import curriculum_order

    phases = [*CURRICULUM, [["colour-present", "colour-absent"], 500, "balanced"], [list(TAGS), 300, "balanced"]]
    train = load_dataset("easy-vqa", "train")
    order = curriculum_order(train, phases, batch_size=64, seed=0)
    assert len(order) == 64 * sum(phase[1] for phase in phases)
    assert order[: 64 * 1000] == curriculum_order(train, CURRICULUM, 64, 0)  # the students' phases come first
    colour = order[64 * 1000 : 64 * 1500]
    assert [train.tags(i)[1] for i in colour[:4]] == ["colour-present", "colour-absent"] * 2
    present = sum(train.tags(i)[1] == "colour-present" for i in colour)
    assert present == len(colour) // 2  # half, where the training questions have 1 in 8
    last = [train.tags(i)[-1] for i in order[64 * 1500 :]]
    assert {tag: last.count(tag) for tag in set(last)} == {tag: 64 * 300 // 8 for tag in train.curriculum_tags}


def test_evaluate_reports_easy_vqa_yes_no_kinds_for_a_model_that_always_says_no():
    """Accuracy per yes/no kind, checked by hand: always answering "no" is right exactly when the asked thing
    is absent (plain question) or present (negated question)."""
    from types import SimpleNamespace

    import torch

    from workbench.data import Collator, load_dataset
    from workbench.data.vocab import build_tokenizer
    from workbench.evaluate import evaluate, format_metrics

    val = load_dataset("easy-vqa", "val")
    no = val.labels.index("no")

    class AlwaysNo(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, attention_mask, pixel_values):
            return SimpleNamespace(
                logits=torch.nn.functional.one_hot(torch.full((len(input_ids),), no), len(val.labels)).float()
            )

    n = 1200
    metrics = evaluate(AlwaysNo(), val, Collator(build_tokenizer(), image_size=64), batch_size=100, limit=n)
    kinds = metrics["per_tag"]
    expected = {"colour-absent": 1.0, "colour-present": 0.0, "not-colour-absent": 0.0, "not-colour-present": 1.0}
    expected |= {k.replace("colour", "shape"): v for k, v in expected.items()}
    assert {k: m["accuracy"] for k, m in kinds.items()} == expected
    counts = {}
    for i in range(n):
        for tag in val.tags(i)[1:]:
            counts[tag] = counts.get(tag, 0) + 1
    assert {k: m["n"] for k, m in kinds.items()} == counts and sum(counts.values()) == metrics["per_type"]["yes/no"][
        "n"
    ]
    assert "not-colour-present" in format_metrics(metrics)
