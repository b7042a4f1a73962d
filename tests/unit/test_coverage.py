"""What a model cannot read (`workbench.coverage`): words as typed, the training vocabulary written beside the
weights and read back, the warning rule, and the notes on images unlike the training images; `ask` reports them
and still answers."""

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageDraw

from workbench import coverage
from workbench.api import ask, ask_cached, load_model
from workbench.data import load_dataset
from workbench.data.shapes import VQA_ANSWERS
from workbench.errors import CheckpointError, WorkbenchError
from workbench.models import create_model
from workbench.models.io import TRAIN_VOCAB, read_train_vocab, save_checkpoint

TINY = dict(hidden_size=32, num_layers=2, num_heads=2)  # 64-pixel images, 16-pixel patches: a 4 x 4 grid


# ------------------------------------------------------------------------------ words


@pytest.mark.parametrize(
    "text, expected",
    [
        ("What's the colour of the círculo?", ["What", "s", "the", "colour", "of", "the", "círculo"]),
        ("有几个圆？", ["有几个圆"]),  # no spaces in Chinese: one word as typed; the full-width "？" is punctuation
        ("🟥🟦 ok", ["🟥🟦", "ok"]),
        ("left-most  (top)", ["left", "most", "top"]),
        ("?!...", []),
        ("", []),
    ],
)
def test_words_are_split_at_whitespace_and_punctuation_as_typed(text, expected):
    assert coverage.words(text) == expected


def test_normalise_lowers_and_drops_accents():
    assert coverage.normalise("Círculo") == "circulo"
    assert coverage.normalise("ÉCOLE") == "ecole"
    assert coverage.normalise("有") == "有"


def test_training_vocabulary_is_the_normalised_words():
    assert coverage.training_vocabulary(["What's up?", "Círculo ROJO"]) == {"what", "s", "up", "circulo", "rojo"}


def test_dataset_texts_reads_texts_items_or_examples():
    assert list(coverage.dataset_texts(SimpleNamespace(texts=["a b", "c"]))) == ["a b", "c"]
    assert list(coverage.dataset_texts(SimpleNamespace(items=[("x y", 1), ("z", 2)]))) == ["x y", "z"]

    class Examples:
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return SimpleNamespace(text=f"text {i}")

    assert list(coverage.dataset_texts(Examples())) == ["text 0", "text 1"]


# ------------------------------------------------------------------------------ the warning rule


@pytest.mark.parametrize(
    "question, unknown, all_unk, warns",
    [
        ("is it a qwerty?", ["qwerty"], False, True),  # content words: qwerty (1 of 1 unknown)
        ("what colour is the shape?", ["colour"], False, False),  # what, colour, shape: 1 of 3
        ("red zork?", ["zork"], False, False),  # exactly half: not more than half
        ("red zork blorp?", ["zork", "blorp"], False, True),  # 2 of 3
        ("is it?", ["it"], False, False),  # only function words: all the words count (1 of 2)
        ("qwerty zxcv?", None, False, False),  # no vocabulary recorded: no word-level warning
        ("🟥", ["🟥"], True, True),  # every token [UNK]
        ("?", [], False, True),  # no words
    ],
)
def test_the_warning_rule(question, unknown, all_unk, warns):
    found = coverage.words(question)
    assert (coverage.text_warning(found, unknown, all_unk) is not None) is warns


def test_the_warning_names_the_unknown_content_words():
    text = coverage.text_warning(["how", "many", "zorks", "are", "there"], ["zorks", "how"], False)
    assert "2 of its 3 content words" in text and "'how', 'zorks'" in text


# ------------------------------------------------------------------------------ a checkpoint's vocabulary


@pytest.fixture(scope="module")
def vqa_ck(tmp_path_factory, tokenizer):
    """A tiny random VQA teacher whose training vocabulary is that of 120 shapes-VQA training questions."""
    root = tmp_path_factory.mktemp("coverage")
    model = create_model("fusion", len(tokenizer), len(VQA_ANSWERS), **TINY)
    save_checkpoint(model, tokenizer, root / "t", {"task": "vqa", "labels": list(VQA_ANSWERS), "dataset": "shapes-vqa"})
    data = load_dataset("shapes-vqa", "train", 120)
    coverage.write_train_vocab(root / "t", coverage.vocabulary_record(data, {"dataset": "shapes-vqa"}))
    return load_model(root / "t", "cpu")


def test_the_vocabulary_file_round_trips(vqa_ck, tmp_path):
    data = load_dataset("shapes-vqa", "train", 120)
    expected = {w for i in range(len(data)) for w in re.findall(r"[a-z0-9]+", data[i].text)}  # lower-case ASCII texts
    assert vqa_ck.train_vocab == expected
    record = json.loads((vqa_ck.path / TRAIN_VOCAB).read_text())
    assert record["n_texts"] == 120 and record["words"] == sorted(expected)
    assert read_train_vocab(tmp_path) is None  # no file: None
    (tmp_path / TRAIN_VOCAB).write_text(json.dumps({"words": "not a list"}))
    with pytest.raises(CheckpointError, match="damaged"):
        read_train_vocab(tmp_path)


def test_recorded_vocabulary_recomputes_the_recorded_training_split(tmp_path):
    (tmp_path / "workbench.json").write_text(json.dumps({"recipe": "hard", "train_config": {
        "dataset": "easy-vqa", "train_size": 50}}))  # fmt: skip
    record = coverage.recorded_vocabulary(tmp_path)
    import easy_vqa  # the questions straight from the package: the first 50 of the train part (90% of the images)

    qs, _, ids = easy_vqa.get_train_questions()
    cut = int(len(easy_vqa.get_train_image_paths()) * 0.9)
    questions = [q for q, i in zip(qs, ids) if i < cut][:50]
    assert set(record["words"]) == {w for q in questions for w in re.findall(r"[a-z0-9]+", q.lower())}
    assert record["source"] == {"dataset": "easy-vqa", "split": "train", "size": 200, "recipe": "hard"}  # 4 flips
    (tmp_path / "workbench.json").write_text(json.dumps({"kind": "fusion"}))
    with pytest.raises(WorkbenchError, match="records no training dataset"):
        coverage.recorded_vocabulary(tmp_path)
    (tmp_path / "workbench.json").write_text(json.dumps({"train_config": {"dataset": "vqav2"}}))
    with pytest.raises(WorkbenchError, match="data root"):
        coverage.recorded_vocabulary(tmp_path)


def _scene(w=64, h=64) -> Image.Image:
    im = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(im)
    draw.ellipse((4, 4, 28, 28), fill=(220, 40, 40))
    draw.rectangle((34, 34, 58, 58), fill=(40, 80, 220))
    return im


def test_ask_reports_unknown_words_as_typed_and_still_answers(vqa_ck):
    out = ask(vqa_ck, _scene(), "Is there a QWERTY zxcv circle?")
    assert out["answer"] in VQA_ANSWERS and out["unknown_words"] == ["QWERTY", "zxcv"]
    assert len(out["warnings"]) == 1 and "2 of its 3 content words" in out["warnings"][0]  # qwerty, zxcv, circle
    known = ask(vqa_ck, _scene(), "how many circles are there?")
    assert known["unknown_words"] == [] and known["warnings"] == []
    for question in ("🟥🟦🔺", "这是什么颜色？"):  # every token [UNK]
        out = ask(vqa_ck, _scene(), question)
        assert out["unknown_words"] == [question.rstrip("？")] and "[UNK]" in out["warnings"][0]


def test_a_checkpoint_without_a_vocabulary_reports_none_but_still_flags_unk(tmp_path, tokenizer):
    model = create_model("dual", len(tokenizer), len(VQA_ANSWERS), **TINY)
    save_checkpoint(model, tokenizer, tmp_path / "s", {"task": "vqa", "labels": list(VQA_ANSWERS)})
    ck = load_model(tmp_path / "s", "cpu")
    out = ask_cached(ck, _scene(), "qwerty zxcv?")
    assert out["unknown_words"] is None and out["warnings"] == [] and out["cache_hit"] is False
    assert "[UNK]" in ask_cached(ck, _scene(), "🟥")["warnings"][0]


# ------------------------------------------------------------------------------ images


def test_is_greyscale_tolerates_noise_and_a_stray_pixel():
    rng = np.random.default_rng(0)
    grey = np.repeat(np.linspace(0, 255, 64 * 64).reshape(64, 64, 1), 3, axis=2)
    noisy = np.clip(grey + rng.integers(-3, 4, grey.shape), 0, 255).astype(np.uint8)  # JPEG-like chroma noise
    assert coverage.is_greyscale(Image.fromarray(noisy))
    stray = noisy.copy()
    stray[0, 0] = (255, 0, 0)  # 1 pixel of 4096: under 0.5%
    assert coverage.is_greyscale(Image.fromarray(stray))
    assert not coverage.is_greyscale(_scene())  # two coloured shapes: about a quarter of the pixels


@pytest.mark.parametrize(
    "size, grid_note, aspect_note",
    [((1, 1), True, False), ((3, 40), True, True), ((4, 4), False, False), ((128, 64), False, False),
     ((129, 64), False, True), ((64, 200), False, True)],
)  # fmt: skip
def test_image_notes_for_tiny_and_stretched_images(vqa_ck, size, grid_note, aspect_note):
    notes = coverage.image_notes(vqa_ck, [_scene(*size)])
    assert any("patch grid" in n for n in notes) is grid_note
    assert any("aspect" in n for n in notes) is aspect_note
    if grid_note:
        assert f"{size[0]}×{size[1]} pixels, smaller than the model's 4×4 patch grid" in notes[0]


def test_greyscale_is_noted_only_where_colour_matters(vqa_ck, tmp_path, tokenizer):
    grey = _scene().convert("L").convert("RGB")
    assert any("greyscale" in n for n in coverage.image_notes(vqa_ck, [grey]))  # its labels name colours
    model = create_model("fusion", len(tokenizer), 2, **TINY)
    save_checkpoint(model, tokenizer, tmp_path / "yn", {"task": "vqa", "labels": ["yes", "no"]})
    assert coverage.image_notes(load_model(tmp_path / "yn", "cpu"), [grey]) == []  # no colour anywhere


def test_a_one_pixel_image_is_answered_with_a_note(vqa_ck):
    out = ask(vqa_ck, Image.new("RGB", (1, 1), (200, 30, 30)), "how many circles are there?")
    assert out["answer"] in VQA_ANSWERS and len(out["warnings"]) == 1 and "patch grid" in out["warnings"][0]


def test_two_images_are_named_left_and_right(vqa_ck):
    notes = coverage.image_notes(vqa_ck, [_scene(), Image.new("RGB", (2, 2), (200, 30, 30))])
    assert notes == [n for n in notes if n.startswith("The right image is 2×2 pixels")] and len(notes) == 1
