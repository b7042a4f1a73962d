"""What a model cannot read: the words of a question it never saw in training, and images unlike the ones it was
trained on. The model still answers; these checks tell the user when the answer is a guess.

**Training vocabulary.** Every word of the texts of the model's training split (`training_vocabulary`), written
beside the weights as `train_vocab.json` (`write_train_vocab`) by training (`workbench.train`), and read back as
`Checkpoint.train_vocab`. For a checkpoint saved before training wrote it, `recorded_vocabulary(folder)` recomputes
it from the run its `workbench.json` records: the dataset, its train split, the recorded train size. Only the
model's own training split counts: words it met only in a checkpoint it was initialised from (`init_from`,
`warm_start`) never reached its task head.

**Words.** `words(text)` splits a text into the words as the user typed them: runs of characters between
whitespace and punctuation ("what's" -> "what", "s"; "有几个圆" stays one word; "🟥🟦" is one word). A word is
known when its `normalise`d form (lower case, accents removed: how the uncased BERT tokenizer reads it) is in the
vocabulary. Unknown words are reported as typed, not as the word pieces the tokenizer splits them into.

**The warning** (`text_warning`), when unknown words dominate the question:
  * every token the model reads is [UNK] (emoji, Chinese or other characters outside its vocabulary), or
  * more than half of its content words are unknown (content words: the words minus a short list of English
    function words, FUNCTION_WORDS; all the words when there are only function words), or
  * the question has no word at all (only punctuation).

**Images** (`image_notes`, from the checkpoint's metadata and config):
  * smaller than the patch grid: a side shorter than image_size / patch_size pixels (a 1x1 image on a 64-pixel
    model of 8-pixel patches), so every patch holds less than one pixel of it;
  * greyscale (at most GREY_SHARE of the pixels with channels more than GREY_TOLERANCE apart) for a model whose
    labels or training words name colours (COLOUR_WORDS);
  * an aspect ratio beyond MAX_ASPECT for a model that reads square images (it is squeezed to a square).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from workbench.errors import WorkbenchError
from workbench.models.io import TRAIN_VOCAB, Checkpoint, write_json_atomic

VOCAB_FORMAT = 1
FUNCTION_WORDS = frozenset(
    "a an the is are was were be been am it its this that these those there here of in on at to from by with and "
    "or but not no any some do does did i you he she we they me my your our their".split()
)
COLOUR_WORDS = frozenset(
    "red green blue yellow purple orange cyan magenta pink brown black white gray grey teal violet".split()
)
GREY_TOLERANCE = 12  # channel spread (0-255) below which a pixel has no colour (JPEG noise included)
GREY_SHARE = 0.005  # an image is greyscale when at most this share of its pixels has colour
MAX_ASPECT = 2.0  # longer side / shorter side beyond which a square-reading model distorts the image


# ------------------------------------------------------------------------------ words


def _is_separator(ch: str) -> bool:
    """Whitespace or punctuation, as BERT's basic tokenizer splits: ASCII symbols and Unicode P* categories."""
    if ch.isspace():
        return True
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def words(text: str) -> list[str]:
    """The words of `text` as typed: maximal runs of characters that are neither whitespace nor punctuation."""
    out, current = [], []
    for ch in text:
        if _is_separator(ch):
            if current:
                out.append("".join(current))
                current = []
        else:
            current.append(ch)
    if current:
        out.append("".join(current))
    return out


def normalise(word: str) -> str:
    """A word as an uncased BERT tokenizer reads it: lower case, accents removed ("Círculo" -> "circulo")."""
    decomposed = unicodedata.normalize("NFD", word.lower())
    return "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")


# ------------------------------------------------------------------------------ the training vocabulary


def dataset_texts(dataset) -> Iterable[str]:
    """Every text of a dataset, without opening an image where the dataset keeps its texts apart (`texts`, or
    `items` whose first field is the text, as the easy-VQA and real datasets do); else each example's text."""
    texts = getattr(dataset, "texts", None)
    if isinstance(texts, (list, tuple)):
        return texts
    items = getattr(dataset, "items", None)
    if isinstance(items, list) and items and isinstance(items[0], tuple) and isinstance(items[0][0], str):
        return [item[0] for item in items]
    return (dataset[i].text for i in range(len(dataset)))


def training_vocabulary(texts: Iterable[str]) -> set[str]:
    """The normalised words of `texts`."""
    vocab: set[str] = set()
    for text in texts:
        vocab.update(normalise(w) for w in words(text))
    return vocab


def vocabulary_record(dataset, source: dict) -> dict:
    """What `train_vocab.json` holds for a model trained on `dataset` (its train split): the sorted words, how
    many texts they come from, and `source` (which dataset, split and size). A run on reworded text (`source`
    {"paraphrase": "train"}) also counts every word of its dataset's training templates
    (`workbench.data.paraphrase.vocabulary`): its texts were drawn from them."""
    texts = list(dataset_texts(dataset))
    vocab = training_vocabulary(texts)
    if source.get("paraphrase"):
        from workbench.data.paraphrase import vocabulary

        vocab |= {normalise(w) for w in vocabulary(source["dataset"], source["paraphrase"])}
    return {
        "format_version": VOCAB_FORMAT,
        "words": sorted(vocab),
        "n_texts": len(texts),
        "source": source,
        "normalised": "lower case, accents removed; words split at whitespace and punctuation",
    }


def write_train_vocab(folder: str | Path, record: dict) -> Path:
    """Write `record` (`vocabulary_record`) as the checkpoint folder's `train_vocab.json`."""
    path = Path(folder) / TRAIN_VOCAB
    write_json_atomic(path, record)
    return path


def recorded_vocabulary(folder: str | Path, data_root: str | Path | None = None) -> dict:
    """`vocabulary_record` of the training split a checkpoint's `workbench.json` records (dataset, train split,
    train size): for a checkpoint saved before training wrote `train_vocab.json`. A real dataset is read from
    `data_root`. A run on reworded text (train config `paraphrase`) is read back reworded as it trained, with its
    training templates' words (`vocabulary_record`). Raises `WorkbenchError` when the folder records no training
    run."""
    import json

    from workbench.data import is_real_dataset, load_dataset

    folder = Path(folder)
    meta_path = folder / "workbench.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    cfg = meta.get("train_config") or {}
    name = cfg.get("dataset") or meta.get("dataset")
    if not name:
        raise WorkbenchError(f"{folder} records no training dataset (workbench.json: train_config.dataset)")
    size = cfg.get("train_size")
    paraphrase = cfg.get("paraphrase_families", "train") if cfg.get("paraphrase") else None
    if is_real_dataset(name):
        if data_root is None:
            raise WorkbenchError(f"{folder} was trained on {name}, read from disk: give its data root")
        data = load_dataset(name, "train", size, data_root=data_root, labels=meta.get("labels"))
    else:
        data = load_dataset(name, "train", size, paraphrase=paraphrase)
    source = {"dataset": name, "split": "train", "size": len(data), "recipe": meta.get("recipe")}
    if paraphrase:
        source["paraphrase"] = paraphrase
    return vocabulary_record(data, source)


# ------------------------------------------------------------------------------ a question


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def text_warning(question_words: list[str], unknown: list[str] | None, all_unk: bool) -> str | None:
    """The warning for a question (the rule in the module docstring), or None. `unknown`: its words missing
    from the training vocabulary (None: no vocabulary recorded); `all_unk`: every token it reads is [UNK]."""
    if all_unk:
        return "The model cannot read this question: every token of it is [UNK] (outside its vocabulary)."
    if not question_words:
        return "The question has no words, only punctuation."
    if unknown is None:
        return None
    content = [w for w in question_words if normalise(w) not in FUNCTION_WORDS] or question_words
    missing = set(unknown)
    unread = _dedupe(w for w in content if w in missing)
    n_unread = sum(w in missing for w in content)
    if 2 * n_unread <= len(content):
        return None
    shown = ", ".join(f"'{w}'" for w in unread[:6]) + (", ..." if len(unread) > 6 else "")
    return (f"Most of this question is new to the model: {n_unread} of its {len(content)} content words never "
            f"occurred in its training data ({shown}). The answer is a guess.")  # fmt: skip


def question_report(ck: Checkpoint, question: str) -> dict:
    """{"unknown_words": the question's words (as typed, each once) missing from the checkpoint's training
    vocabulary, or None when it records none; "text_warning": `text_warning`'s message or None}."""
    found = words(question)
    vocab = ck.train_vocab
    unknown = None if vocab is None else _dedupe(w for w in found if normalise(w) not in vocab)
    tokens = ck.tokenizer.tokenize(question)
    unk = getattr(ck.tokenizer, "unk_token", "[UNK]")
    all_unk = bool(tokens) and all(t == unk for t in tokens)
    return {"unknown_words": unknown, "text_warning": text_warning(found, unknown, all_unk)}


# ------------------------------------------------------------------------------ images


def patch_grid(ck: Checkpoint) -> tuple[int, int]:
    """(patches per side of the square images it reads, their side in pixels), from the model's config."""
    model = getattr(ck.model, "module", ck.model)
    config = getattr(model, "config", None) or model.vision_config
    return config.image_size // config.patch_size, config.image_size


def colour_matters(ck: Checkpoint) -> bool:
    """Whether the model answers about colours: its labels or its training words name one (COLOUR_WORDS)."""
    named = {normalise(w) for label in ck.labels for w in words(label)} | set(ck.train_vocab or ())
    return bool(named & COLOUR_WORDS)


def is_greyscale(image: Image.Image) -> bool:
    """At most GREY_SHARE of the pixels have channels more than GREY_TOLERANCE apart (on a copy of at most
    256 pixels a side)."""
    small = image.convert("RGB")
    small.thumbnail((256, 256))
    arr = np.asarray(small, dtype=np.int16)
    spread = arr.max(axis=2) - arr.min(axis=2)
    return float((spread > GREY_TOLERANCE).mean()) <= GREY_SHARE


def image_notes(ck: Checkpoint, images: list[Image.Image]) -> list[str]:
    """Notes on images unlike the model's training images (the checks in the module docstring)."""
    grid, side = patch_grid(ck)
    square = ck.image_spec is None
    colour = colour_matters(ck)
    notes = []
    for k, image in enumerate(images):
        name = "The image" if len(images) == 1 else f"The {('left', 'right')[k] if k < 2 else k + 1} image"
        w, h = image.size
        if min(w, h) < grid:
            notes.append(
                f"{name} is {w}×{h} pixels, smaller than the model's {grid}×{grid} patch grid: it is blown up to "
                f"{side}×{side}, so every patch holds less than one of its pixels. The answer says nothing about it."
            )
        if colour and is_greyscale(image):
            notes.append(f"{name} is greyscale, and this model answers about colours (it was trained on colour "
                         "images): what it says about colour is a guess.")  # fmt: skip
        if square and max(w, h) > MAX_ASPECT * min(w, h):
            notes.append(
                f"{name} is {w}×{h} (aspect {max(w, h) / min(w, h):.1f}:1); the model was trained on square images "
                f"and squeezes it to {side}×{side}, so shapes come out stretched."
            )
    return notes


def input_report(ck: Checkpoint, images: list[Image.Image], question: str) -> dict:
    """What `workbench.api.ask` adds to an answer: {"unknown_words": [...] or None, "warnings": [the text
    warning, then the image notes]}."""
    text = question_report(ck, question)
    warnings = [text["text_warning"]] if text["text_warning"] else []
    return {"unknown_words": text["unknown_words"], "warnings": warnings + image_notes(ck, images)}
