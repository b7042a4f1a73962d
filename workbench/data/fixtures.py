"""Tiny copies of VQAv2, SNLI-VE, NLVR2 and COCO-Karpathy in their releases' formats, built from shapes scenes.

`build_fixtures(root)` writes, in a few seconds and without any download:

    root/vqav2/          official question / annotation JSONs (train, val; test-dev questions) + COCO-named JPEGs
    root/snli-ve/        snli_ve_{train,dev,test}.jsonl + flickr30k_images/<id>.jpg
    root/nlvr2/          {train,dev,test1}.json (JSON lines) + images/train/<directory>/, images/{dev,test1}/ PNGs
    root/coco-karpathy/  dataset_coco.json + train2014/, val2014/ JPEGs

The questions, hypotheses, statements and captions are the shapes generators' (so a model can learn
them), the images shapes renders placed on non-square canvases (so aspect-ratio preprocessing is
exercised). VQAv2 gets 10 "annotators" per question, most giving the right answer, some a wrong one or the
number as a word ("two", which only the official normalisation matches), and every seventh question answers
outside the shapes vocabulary (a zero target). Everything is a deterministic function of the arguments.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from workbench.data.shapes import (
    NUMBER_WORDS,
    VQA_ANSWERS,
    VQA_TYPES,
    ShapesConfig,
    ShapesDataset,
    caption,
    make_scene,
    render,
    scene_rng,
    vqa_question,
)

CANVASES = ((96, 64), (64, 96), (128, 72), (72, 112))  # (width, height): never square
SPLITS = {  # fixture split -> (shapes split, examples; VQAv2: images, of QUESTIONS_PER_IMAGE questions each)
    "vqav2": {"train": ("train", 16), "val": ("val", 8), "test-dev": ("test", 4)},
    "snli-ve": {"train": ("train", 36), "dev": ("val", 18), "test": ("test", 18)},
    "nlvr2": {"train": ("train", 32), "dev": ("val", 16), "test1": ("test", 16)},
    "coco-karpathy": {"train": ("train", 16), "restval": ("train", 4), "val": ("val", 8), "test": ("test", 8)},
}
QUESTIONS_PER_IMAGE = 3
_WORDS = {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six"}
OUT_OF_VOCABULARY = "mauve"  # an answer no shapes vocabulary holds


def vqa_labels() -> tuple[str, ...]:
    """The answer vocabulary a teacher of the VQAv2 fixture has (shapes' VQA answers)."""
    return VQA_ANSWERS


def canvas(image: Image.Image, k: int) -> Image.Image:
    """`image` scaled to fit the k-th non-square canvas, centred on white."""
    width, height = CANVASES[k % len(CANVASES)]
    side = min(width, height)
    out = Image.new("RGB", (width, height), (255, 255, 255))
    out.paste(image.resize((side, side), Image.BILINEAR), ((width - side) // 2, (height - side) // 2))
    return out


def _save(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jpg":
        image.save(path, quality=92)
    else:
        image.save(path)


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


# ----------------------------------------------------------------------------------------------
# VQAv2


def answer_type(answer: str) -> str:
    return "yes/no" if answer in ("yes", "no") else "number" if answer in NUMBER_WORDS else "other"


def annotators(answer: str, rng: random.Random, unanswerable: bool) -> list[str]:
    """Ten human answers to a question whose right answer is `answer`."""
    if unanswerable:
        return [OUT_OF_VOCABULARY] * 7 + ["taupe"] * 3
    n_right = rng.choice((10, 9, 7, 5, 4))  # always more than either wrong answer
    pool = [a for a in VQA_ANSWERS if a != answer and answer_type(a) == answer_type(answer)]
    wrong = rng.sample(pool, 2) if len(pool) > 1 else pool * 2  # yes/no: one other answer
    answers = [answer] * n_right + [wrong[0]] * ((11 - n_right) // 2) + [wrong[1]] * ((10 - n_right) // 2)
    if answer in _WORDS and n_right < 10:
        answers[0] = _WORDS[answer]  # one annotator writes the number as a word: only the metric's normalisation
        # counts it (vqaEval maps "two" to "2" when the annotators disagree; ViLT's targets compare raw strings)
    rng.shuffle(answers)
    return answers


def _vqa_split(root: Path, split: str, shapes_split: str, n_images: int) -> None:
    subtype = "test2015" if split == "test-dev" else f"{split}2014"
    folder = "test2015" if split == "test-dev" else f"{split}2014"
    base = {"train": 100, "val": 500_000, "test-dev": 900_000}[split]
    questions, annotations = [], []
    for k in range(n_images):
        image_id = base + k
        scene = make_scene(shapes_split, k)
        _save(canvas(render(scene, 64), k), root / folder / f"COCO_{folder}_{image_id:012d}.jpg")
        rng = scene_rng(shapes_split, k, 0, salt=31)
        for j in range(QUESTIONS_PER_IMAGE):
            qid = image_id * 1000 + j
            text, answer = vqa_question(scene, VQA_TYPES[(k * QUESTIONS_PER_IMAGE + j) % len(VQA_TYPES)], rng)
            questions.append({"image_id": image_id, "question": text, "question_id": qid})
            answers = annotators(answer, rng, unanswerable=(k * QUESTIONS_PER_IMAGE + j) % 7 == 6)
            humans = [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)]
            annotations.append({
                "question_type": " ".join(text.split()[:2]),
                "multiple_choice_answer": max(set(answers), key=lambda a: (answers.count(a), a)),
                "answers": humans,
                "image_id": image_id,
                "answer_type": answer_type(answer),
                "question_id": qid,
            })  # fmt: skip
    common = {"info": {"description": "workbench fixture"}, "license": {}, "data_type": "mscoco"}
    q_subtype = "test-dev2015" if split == "test-dev" else subtype
    _write_json(root / f"v2_OpenEnded_mscoco_{q_subtype}_questions.json",
                {**common, "task_type": "Open-Ended", "data_subtype": q_subtype, "questions": questions})  # fmt: skip
    if split != "test-dev":
        _write_json(root / f"v2_mscoco_{subtype}_annotations.json",
                    {**common, "data_subtype": subtype, "annotations": annotations})  # fmt: skip


# ----------------------------------------------------------------------------------------------
# SNLI-VE, NLVR2, COCO-Karpathy


def _snli_split(root: Path, split: str, shapes_split: str, n: int) -> None:
    data, rows = ShapesDataset("ve", shapes_split, n, ShapesConfig()), []
    base = {"train": 1000, "dev": 2000, "test": 3000}[split]
    for i in range(n):
        ex, image_id = data[i], base + i
        _save(canvas(ex.images[0], i), root / "flickr30k_images" / f"{image_id}.jpg")
        label = data.labels[ex.label]
        rows.append({
            "Flickr30K_ID": str(image_id), "captionID": f"{image_id}.jpg#0", "pairID": f"{image_id}.jpg#0r1{label[0]}",
            "sentence1": caption(ex.meta["scene"]), "sentence2": ex.text, "gold_label": label,
            "annotator_labels": [label],
        })  # fmt: skip
    rows.insert(1, {**rows[0], "pairID": f"{base}.jpg#0r1x", "gold_label": "-", "annotator_labels": ["-"]})
    _write_jsonl(root / f"snli_ve_{split}.jsonl", rows)


def _nlvr_split(root: Path, split: str, shapes_split: str, n: int) -> None:
    data, rows = ShapesDataset("nlvr", shapes_split, n, ShapesConfig()), []
    for i in range(n):
        ex = data[i]
        pair, directory = f"{split}-{i // 2}-{i % 2}", i % 3 + 1
        folder = root / "images" / split / (str(directory) if split == "train" else "")
        for k, image in enumerate(ex.images):
            _save(canvas(image, i + k), folder / f"{pair}-img{k}.png")
        row = {"identifier": f"{pair}-0", "sentence": ex.text, "label": str(bool(ex.label)), "writer": "fixture",
               "synset": "shapes", "query": ex.qtype, "left_url": "", "right_url": ""}  # fmt: skip
        rows.append({**row, "directory": directory} if split == "train" else row)
    _write_jsonl(root / f"{split}.json", rows)


def _karpathy(root: Path) -> None:
    images, imgid = [], 0
    for split, (shapes_split, n) in SPLITS["coco-karpathy"].items():
        offset = 40 if split == "restval" else 0  # restval: more train scenes, after the train split's
        gallery = ShapesDataset("retrieval", shapes_split, n + offset, ShapesConfig()).gallery()[offset:]
        folder = "train2014" if split == "train" else "val2014"
        for scene in gallery:
            filename = f"COCO_{folder}_{imgid:012d}.jpg"
            _save(canvas(render(scene, 64), imgid), root / folder / filename)
            texts = [caption(scene), f"a picture of {caption(scene)} "]  # raw captions may end in a space
            sentences = [
                {"raw": t, "tokens": t.lower().strip(" .").split(), "imgid": imgid, "sentid": 2 * imgid + j}
                for j, t in enumerate(texts)
            ]
            images.append({
                "filepath": folder, "filename": filename, "imgid": imgid, "split": split, "cocoid": imgid,
                "sentids": [2 * imgid, 2 * imgid + 1], "sentences": sentences,
            })  # fmt: skip
            imgid += 1
    _write_json(root / "dataset_coco.json", {"images": images, "dataset": "coco"})


def build_fixtures(root: str | Path) -> dict[str, Path]:
    """Write the four fixture trees under `root`; returns {dataset name: its data root}."""
    root = Path(root)
    out = {name: root / name for name in SPLITS}
    for split, (shapes_split, n) in SPLITS["vqav2"].items():
        _vqa_split(out["vqav2"], split, shapes_split, n)
    for split, (shapes_split, n) in SPLITS["snli-ve"].items():
        _snli_split(out["snli-ve"], split, shapes_split, n)
    for split, (shapes_split, n) in SPLITS["nlvr2"].items():
        _nlvr_split(out["nlvr2"], split, shapes_split, n)
    _karpathy(out["coco-karpathy"])
    return out


def save_tiny_vilt(folder: str | Path, tokenizer, labels: Sequence[str], num_images: int = 1, seed: int = 0) -> Path:
    """A tiny ViLT with RANDOM weights in Hugging Face's folder format, as a real checkpoint would come:
    `ViltForQuestionAnswering` (1 image) or `ViltForImagesAndTextClassification` (2, as NLVR2) saved with
    `save_pretrained`, with `tokenizer` and a `preprocessor_config.json` (shorter side 64, multiples of 32).
    Its answers mean nothing; it exercises loading, preprocessing and distillation end to end."""
    import torch
    from transformers import (
        ViltConfig,
        ViltForImagesAndTextClassification,
        ViltForQuestionAnswering,
        ViltImageProcessorPil,
    )

    torch.manual_seed(seed)
    config = ViltConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, image_size=64, patch_size=32, max_image_length=-1,
        num_images=num_images, modality_type_vocab_size=num_images + 1, num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id={a: i for i, a in enumerate(labels)},
    )  # fmt: skip
    model = (ViltForQuestionAnswering if num_images == 1 else ViltForImagesAndTextClassification)(config).eval()
    with torch.no_grad():  # HF starts the image position embeddings at zero: give every parameter a value
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    ViltImageProcessorPil(size={"shortest_edge": 64}, size_divisor=32).save_pretrained(folder)
    return folder
