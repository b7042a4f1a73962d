"""Real datasets by name (`load_real_dataset`) on the fixtures in the releases' formats (`build_fixtures`): every
dataset and split reads, examples fit the collator and the VQA metric, and each bad layout is one clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from workbench.data.files import DatasetError, DatasetLayoutError, DatasetSplitError
from workbench.data.fixtures import CANVASES, build_fixtures, vqa_labels
from workbench.data.real import LAYOUTS, REAL_DATASETS, load_real_dataset, num_images, release_split
from workbench.data.vqav2 import IGNORE_INDEX
from workbench.models.preprocess import ViltImageSpec, collate_images
from workbench.vqa_score import batch_vqa_scores, vqa_accuracy, vqa_score_report

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> dict[str, Path]:
    return build_fixtures(tmp_path_factory.mktemp("real"))


@pytest.fixture
def copy_of(fixtures, tmp_path):
    def copy(name: str) -> Path:
        return Path(shutil.copytree(fixtures[name], tmp_path / name))

    return copy


EXPECTED = {  # (dataset, workbench split): (examples, images per example, labels)
    ("vqav2", "train"): (48, 1, len(vqa_labels())),
    ("vqav2", "val"): (24, 1, len(vqa_labels())),
    ("vqav2", "test"): (24, 1, len(vqa_labels())),  # VQAv2's labelled evaluation split is val
    ("snli-ve", "train"): (36, 1, 3),
    ("snli-ve", "val"): (18, 1, 3),
    ("snli-ve", "test"): (18, 1, 3),
    ("nlvr2", "train"): (32, 2, 2),
    ("nlvr2", "val"): (16, 2, 2),
    ("nlvr2", "test"): (16, 2, 2),
    ("coco-karpathy", "train"): (40, 1, 0),  # 16 train + 4 restval images, 2 captions each
    ("coco-karpathy", "val"): (16, 1, 0),
    ("coco-karpathy", "test"): (16, 1, 0),
}


@pytest.mark.parametrize(("name", "split"), list(EXPECTED))
def test_every_dataset_and_split_reads(fixtures, name, split):
    labels = vqa_labels() if name == "vqav2" else None
    ds = load_real_dataset(name, split, fixtures[name], labels=labels)
    n, n_images, n_labels = EXPECTED[name, split]
    assert len(ds) == n and len(ds.labels) == n_labels and num_images(name) == n_images
    for i in (0, len(ds) - 1):
        ex = ds[i]
        assert len(ex.images) == n_images and ex.text and ex.qtype == ds.qtype(i) and ex.qtype in ds.qtypes
        assert all(im.mode == "RGB" and im.size in CANVASES and im.width != im.height for im in ex.images)
        assert ex.label == IGNORE_INDEX or 0 <= ex.label < max(n_labels, len(ds))
    small = load_real_dataset(name, split, fixtures[name], labels=labels, size=3)
    assert (small.image_count if name == "coco-karpathy" else len(small)) == 3  # Karpathy: size counts images


def test_the_fixtures_are_deterministic(fixtures, tmp_path):
    again = build_fixtures(tmp_path)
    for name in REAL_DATASETS:
        ours = sorted(p.relative_to(fixtures[name]) for p in fixtures[name].rglob("*") if p.is_file())
        theirs = sorted(p.relative_to(again[name]) for p in again[name].rglob("*") if p.is_file())
        assert ours == theirs
        assert all((fixtures[name] / p).read_bytes() == (again[name] / p).read_bytes() for p in ours)


def test_split_aliases():
    assert release_split("snli-ve", "val") == "dev" and release_split("nlvr2", "test") == "test1"
    assert release_split("vqav2", "test") == "val" and release_split("vqav2", "test-dev") == "test-dev"
    with pytest.raises(DatasetSplitError, match="COCO-Karpathy has no split 'dev'"):
        release_split("coco-karpathy", "dev")
    with pytest.raises(ValueError, match="unknown real dataset"):
        release_split("vqa", "train")


# ----------------------------------------------------------------------------------------------
# VQAv2: targets, metric, batches


def test_vqa_targets_and_scores_on_the_fixture(fixtures):
    ds = load_real_dataset("vqav2", "train", fixtures["vqav2"], labels=vqa_labels())
    assert ds.unanswerable == 6  # every seventh question answers outside the vocabulary: kept, zero targets
    examples = [ds[i] for i in range(len(ds))]
    zero = [e for e in examples if not e.meta["targets"].any()]
    assert len(zero) == 6 and all(e.label == IGNORE_INDEX and not e.meta["scores"].any() for e in zero)
    # the metric normalises "two" to "2", the ViLT targets do not: somewhere the two differ
    assert any((e.meta["scores"] != e.meta["targets"]).any() for e in examples)
    for e in examples:  # the gold answer has the highest target
        if e.label != IGNORE_INDEX:
            assert e.meta["targets"][e.label] == e.meta["targets"].max() > 0


def test_vqa_scores_match_the_official_accuracy_from_the_annotation_file(fixtures):
    root = fixtures["vqav2"]
    anns = json.loads((root / "v2_mscoco_val2014_annotations.json").read_text())["annotations"]
    ds = load_real_dataset("vqav2", "val", root, labels=vqa_labels())
    by_qid = {a["question_id"]: [x["answer"] for x in a["answers"]] for a in anns}
    for i in range(len(ds)):
        ex = ds[i]
        answers = by_qid[ex.meta["question_id"]]
        expected = [vqa_accuracy(label, answers) for label in ds.labels]
        assert ex.meta["scores"].tolist() == pytest.approx(expected, abs=1e-6)


def _collate(examples, spec=ViltImageSpec(shortest_edge=64, size_divisor=32)):
    """What the collator builds for real VQA batches: padded pixels + mask, dense targets and scores."""
    pixels, mask = collate_images([e.images for e in examples], spec)
    return {
        "pixel_values": pixels, "pixel_mask": mask,
        "labels": torch.tensor([e.label for e in examples]),
        "targets": torch.from_numpy(np.stack([e.meta["targets"] for e in examples])),
        "scores": torch.from_numpy(np.stack([e.meta["scores"] for e in examples])),
        "qtypes": [e.qtype for e in examples],
    }  # fmt: skip


def test_batches_through_dataloader_workers_and_the_vqa_report(fixtures):
    ds = load_real_dataset("vqav2", "val", fixtures["vqav2"], labels=vqa_labels())
    loader = DataLoader(ds, batch_size=8, num_workers=1, collate_fn=_collate)
    per_question, types = [], []
    for batch in loader:
        b = len(batch["labels"])
        assert batch["pixel_values"].shape[:3] == (b, 1, 3) and batch["pixel_mask"].shape[:2] == (b, 1)
        assert batch["targets"].shape == batch["scores"].shape == (b, len(vqa_labels()))
        # an oracle that answers each question's best-scoring answer
        per_question += batch_vqa_scores(batch["scores"], batch["scores"]).tolist()
        types += batch["qtypes"]
    report = vqa_score_report(per_question, types)
    assert report["n"] == len(ds) and set(report["per_type"]) <= {"yes/no", "number", "other"}
    best = [float(ds[i].meta["scores"].max()) for i in range(len(ds))]
    assert report["accuracy"] == pytest.approx(np.mean(best)) and report["accuracy"] < 1.0  # 3 unanswerable


def test_the_square_collator_takes_real_examples(fixtures, tokenizer):
    from workbench.data import Collator

    ds = load_real_dataset("nlvr2", "val", fixtures["nlvr2"])
    batch = Collator(tokenizer, 64)([ds[0], ds[1], ds[2]])
    assert batch.pixel_values.shape == (3, 2, 3, 64, 64) and batch.labels.tolist() == [ds[i].label for i in range(3)]


# ----------------------------------------------------------------------------------------------
# one clear error per bad layout


def test_no_data_root_or_not_a_folder(fixtures, tmp_path):
    with pytest.raises(DatasetLayoutError, match="--data-root"):
        load_real_dataset("vqav2", "train", None)
    with pytest.raises(DatasetLayoutError, match=f"{tmp_path / 'nowhere'} is not a folder"):
        load_real_dataset("snli-ve", "train", tmp_path / "nowhere")


@pytest.mark.parametrize("name", REAL_DATASETS)
def test_wrong_split_name(fixtures, name):
    with pytest.raises(DatasetSplitError, match="has no split 'validation'; its splits are"):
        load_real_dataset(name, "validation", fixtures[name])


def test_missing_annotations_file(copy_of):
    root = copy_of("vqav2")
    (root / "v2_mscoco_train2014_annotations.json").unlink()
    with pytest.raises(DatasetLayoutError, match=f"missing {root / 'v2_mscoco_train2014_annotations.json'}"):
        load_real_dataset("vqav2", "train", root, labels=vqa_labels())


def test_missing_snli_and_karpathy_files(copy_of):
    snli, coco = copy_of("snli-ve"), copy_of("coco-karpathy")
    shutil.rmtree(snli / "flickr30k_images")
    with pytest.raises(DatasetLayoutError, match=f"missing {snli / 'flickr30k_images'}"):
        load_real_dataset("snli-ve", "val", snli)
    (coco / "dataset_coco.json").unlink()
    with pytest.raises(DatasetLayoutError, match=str(coco / "dataset_coco.json")):
        load_real_dataset("coco-karpathy", "test", coco)


@pytest.mark.parametrize("name", REAL_DATASETS)
def test_missing_image(copy_of, name):
    root = copy_of(name)
    labels = vqa_labels() if name == "vqav2" else None
    ds = load_real_dataset(name, "val", root, labels=labels)
    first = ds[0]
    assert first.images
    images = sorted(p for p in root.rglob("*") if p.suffix in (".jpg", ".png"))
    for p in images:
        p.unlink()
    with pytest.raises(DatasetLayoutError) as e:  # an example whose image went missing: its path
        ds[len(ds) - 1]
    assert "expected" in str(e.value)
    with pytest.raises(DatasetLayoutError):  # loading checks the first image
        load_real_dataset(name, "val", root, labels=labels)


def test_answers_file_of_another_split(copy_of):
    root = copy_of("vqav2")
    train = root / "v2_mscoco_train2014_annotations.json"
    val = root / "v2_mscoco_val2014_annotations.json"
    shutil.copy(train, val)  # the train annotations under the val name
    with pytest.raises(DatasetLayoutError, match=f"{val} holds the train2014 data"):
        load_real_dataset("vqav2", "val", root, labels=vqa_labels())
    data = json.loads(train.read_text())
    del data["data_subtype"]  # a file without the field: its question ids give it away
    val.write_text(json.dumps(data))
    with pytest.raises(DatasetLayoutError, match="have no annotation in .* different splits"):
        load_real_dataset("vqav2", "val", root, labels=vqa_labels())


def test_nlvr2_file_of_another_split(copy_of):
    root = copy_of("nlvr2")
    shutil.copy(root / "train.json", root / "dev.json")
    with pytest.raises(DatasetLayoutError, match="of another split"):
        load_real_dataset("nlvr2", "val", root)


def test_layout_errors_are_workbench_errors_that_name_the_layout(fixtures, tmp_path):
    for name in REAL_DATASETS:
        with pytest.raises(DatasetError):
            load_real_dataset(name, "train", tmp_path)
        assert LAYOUTS[name]


# ----------------------------------------------------------------------------------------------
# a real-format ViLT folder on fixture batches: our teacher (with the pixel-mask hook) == HF


def _masked_teacher_logits(teacher, enc, pixels, mask):
    """What FusionTeacher.forward computes once it takes `pixel_mask` (the hook in the report)."""
    from workbench.models.preprocess import masked_image_embeds

    pooled = []
    for j in range(pixels.shape[1]):
        embeds, image_mask = masked_image_embeds(teacher, pixels[:, j], mask[:, j])
        out = teacher.vilt(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], image_embeds=embeds,
                           pixel_mask=image_mask, image_token_type_idx=j + 1)  # fmt: skip
        pooled.append(out.pooler_output)
    return teacher.classifier(torch.cat(pooled, dim=-1))


@pytest.mark.parametrize("name", ["vqav2", "nlvr2"])
def test_tiny_vilt_folder_on_fixture_batches_equals_hf(fixtures, tokenizer, tmp_path, name):
    from transformers import ViltForImagesAndTextClassification, ViltForQuestionAnswering

    from workbench.data.fixtures import save_tiny_vilt
    from workbench.models.io import load_checkpoint

    labels = vqa_labels() if name == "vqav2" else ("False", "True")
    folder = save_tiny_vilt(tmp_path / "vilt", tokenizer, labels, num_images=num_images(name))
    ck = load_checkpoint(folder)
    ds = load_real_dataset(name, "val", fixtures[name], labels=ck.labels)
    examples = [ds[i] for i in range(4)]
    pixels, mask = collate_images([e.images for e in examples], ViltImageSpec.from_folder(folder))
    valid = [(int(m.any(1).sum()), int(m.any(0).sum())) for m in mask.flatten(0, 1)]  # (height, width) of each
    assert all(h != w for h, w in valid) and len(set(valid)) > 1  # non-square images of different shapes: padded
    enc = tokenizer([e.text for e in examples], padding=True, return_tensors="pt")
    hf_class = ViltForQuestionAnswering if name == "vqav2" else ViltForImagesAndTextClassification
    hf = hf_class.from_pretrained(folder).eval()
    with torch.no_grad():
        hf_pixels = pixels[:, 0] if name == "vqav2" else pixels
        hf_mask = mask[:, 0] if name == "vqav2" else mask
        ref = hf(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], pixel_values=hf_pixels,
                 pixel_mask=hf_mask).logits  # fmt: skip
        ours = _masked_teacher_logits(ck.model, enc, pixels, mask)
    assert (ours - ref).abs().max() < 1e-4
