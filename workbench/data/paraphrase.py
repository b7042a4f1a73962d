"""Reworded questions, hypotheses and statements: the same meaning in other words, as data.

Every generated text of shapes-vqa, shapes-ve, shapes-nlvr and easy-VQA is one of a few fixed templates (the
"original" ones: what the generators and the easy-VQA package write). Each meaning (an `Intent`: "what colour
is the {shape}?") also has families of rewordings, in two groups (four for shapes-vqa):

* `train` families: synonyms ("larger" / "bigger", "picture" / "image"), British and American spellings
  ("colour" / "color"; the easy-VQA colour "gray" is also written "grey"), other word orders ("the {shape} is
  what colour?", "of the A and the B, which ..."), "can you see" for "is there", "what number of" for "how many",
  contractions ("what's", "there's", "isn't");
* `held_out` families: other rewordings, never used in training, made only of words the train families of the
  same dataset use (so a model has seen every word and must read the new combination or order);
* `held_out_val` families (shapes-vqa so far): a third set of such rewordings, for choosing a recipe on the
  validation split (`val-paraphrase`) without ever looking at the test rewordings;
* `wider` families (shapes-vqa so far): more training rewordings, drawn beside the train families in the
  "train-wide" mode (`TrainConfig.paraphrase_families`), never a validation or test text.

`rephrase` rewrites a text into a family of one group: the intent and its slots (colours, shapes, sizes,
numbers) are read from the text, so the label, which comes from the scene, stays the example's. A template
keeps every slot of its intent and nothing else; no held-out rendering is a training text (tests/unit/
test_paraphrase.py renders them all). The datasets draw from the train families with `paraphrase="train"` and
from the held-out ones on the `test-paraphrase` split, the validation rewordings on `val-paraphrase`
(`workbench.data.load_dataset`).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace
from itertools import product

from workbench.data.shapes.scenes import COLOURS, SHAPES, SIZES

# which families a dataset draws its text from: "train-wide" is "train" plus the wider training set (`wider`)
MODES = ("train", "train-wide", "held-out", "held-out-val")
# split name -> (the split whose examples it rewords, the families it rewords them in)
PARAPHRASE_SPLITS = {"test-paraphrase": ("test", "held-out"), "val-paraphrase": ("val", "held-out-val")}
EASY_VQA_COLOURS = ("green", "red", "gray", "teal", "black", "yellow", "brown", "blue")
EASY_VQA_SHAPES = ("circle", "rectangle", "triangle")
SPELLINGS = {"gray": "grey"}  # American -> British slot values: either may be written (50/50)

_COLOUR_WORDS = tuple(dict.fromkeys([*COLOURS, *EASY_VQA_COLOURS, *SPELLINGS.values()]))
_SHAPE_WORDS = tuple(dict.fromkeys([*SHAPES, *EASY_VQA_SHAPES]))
# slot name -> the words it takes (the same domain for every slot of one kind)
SLOT_WORDS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("colour", "ca", "cb"), _COLOUR_WORDS),
    **dict.fromkeys(("shape", "sa", "sb", "x", "y"), _SHAPE_WORDS),
    "size": SIZES,
    "axis": ("row", "column"),
    "n": tuple(str(k) for k in range(10)),
}


@dataclass(frozen=True)
class Intent:
    """One meaning: the dataset's own templates, its training rewordings and its held-out ones."""

    name: str
    qtype: str  # the example's question type (`Example.qtype`)
    original: tuple[str, ...]
    train: tuple[str, ...]
    held_out: tuple[str, ...]
    held_out_val: tuple[str, ...] = ()
    wider: tuple[str, ...] = ()  # more training rewordings, drawn only in the "train-wide" mode

    def templates(self, mode: str) -> tuple[str, ...]:
        """The templates a dataset draws from in `mode`: the originals and the train families (and the wider
        ones), the held-out (test) ones or the validation ones. Only the families `mode` names: "train-wide" of
        an intent without wider rewordings is empty, so `check_rewording` can tell."""
        if mode not in MODES:
            raise ValueError(f"unknown paraphrase mode {mode!r}; expected one of {MODES}")
        if mode == "train":
            return self.original + self.train
        if mode == "train-wide":
            return self.original + self.train + self.wider if self.wider else ()
        return self.held_out if mode == "held-out" else self.held_out_val


_A, _B = "the {ca} {sa}", "the {cb} {sb}"  # the two objects of a two-object question

SHAPES_VQA = (
    Intent("colour of a shape", "attribute", ("what colour is the {shape}?",),
           ("what color is the {shape}?", "what is the colour of the {shape}?", "which color does the {shape} have?",
            "the {shape} is what colour?"),
           ("what's the color of the {shape}?", "what colour does the {shape} have?", "the {shape} has which color?",
            "which colour is the {shape}?")),
    Intent("shape of a colour", "attribute", ("what shape is the {colour} object?",),
           ("what is the shape of the {colour} object?", "which shape is the {colour} thing?",
            "the {colour} object is what shape?", "what kind of shape is the {colour} item?"),
           ("what's the shape of the {colour} thing?", "which shape does the {colour} object have?",
            "the {colour} item has which shape?", "what kind of shape is the {colour} object?")),
    Intent("size", "attribute", ("what size is the {colour} {shape}?",),
           ("what's the size of the {colour} {shape}?", "how big is the {colour} {shape}?",
            "is the {colour} {shape} small or large?", "the {colour} {shape} has what size?"),
           ("what is the size of the {colour} {shape}?", "is the {colour} {shape} large or small?",
            "which size does the {colour} {shape} have?", "how large is the {colour} {shape}?")),
    Intent("existence", "existence", ("is there a {colour} {shape}?",),
           ("can you see a {colour} {shape}?", "does the picture contain a {colour} {shape}?",
            "is a {colour} {shape} present?", "is there a {colour} {shape} in the image?"),
           ("do you see a {colour} {shape}?", "does the image contain a {colour} {shape}?",
            "is a {colour} {shape} in the picture?", "can a {colour} {shape} be seen?")),
    Intent("count of a size", "counting", ("how many {size} objects are there?",),
           ("what number of {size} objects are there?", "how many {size} things can you see?",
            "count the {size} objects.", "how many objects are {size}?"),
           ("how many {size} things are there?", "what number of objects are {size}?",
            "how many {size} objects do you see?", "what is the number of {size} objects?")),
    Intent("count of a shape", "counting", ("how many {shape}s are there?",),
           ("what number of {shape}s are there?", "how many {shape}s can you see?", "count the {shape}s.",
            "what is the number of {shape}s in the picture?"),
           ("how many {shape}s do you see?", "what's the number of {shape}s?", "how many {shape}s are in the image?",
            "what number of {shape}s can be seen?")),
    Intent("count of all", "counting", ("how many objects are there?",),
           ("how many things are there?", "how many objects can be seen?", "count the objects.",
            "how many shapes are in the picture?"),
           ("what is the number of objects?", "how many objects do you see?", "how many shapes are there?",
            "count the things in the image.")),
    Intent("row", "position", ("which row is the {colour} {shape} in?",),
           ("in which row is the {colour} {shape}?", "what row is the {colour} {shape} in?",
            "the {colour} {shape} is in which row?", "which row contains the {colour} {shape}?"),
           ("in what row is the {colour} {shape}?", "what row contains the {colour} {shape}?",
            "the {colour} {shape} sits in which row?", "which row is the {colour} {shape} located in?")),
    Intent("column", "position", ("which column is the {colour} {shape} in?",),
           ("in which column is the {colour} {shape}?", "what column is the {colour} {shape} in?",
            "which column is the {colour} {shape} located in?", "the {colour} {shape} sits in which column?"),
           ("in what column is the {colour} {shape}?", "which column contains the {colour} {shape}?",
            "the {colour} {shape} is in which column?", "what column is the {colour} {shape} located in?")),
    Intent("further left", "relation", (f"which is further left, {_A} or {_B}?",),
           (f"which is farther left, {_A} or {_B}?", f"which one is further to the left: {_A} or {_B}?",
            f"of {_A} and {_B}, which is further left?", f"which is closer to the left, {_A} or {_B}?"),
           (f"which is farther to the left, {_A} or {_B}?", f"of {_A} and {_B}, which one is further left?",
            f"{_A} or {_B}: which is more to the left?", f"which one is closer to the left: {_A} or {_B}?")),
    Intent("higher", "relation", (f"which is higher, {_A} or {_B}?",),
           (f"which one is higher up, {_A} or {_B}?", f"which is closer to the top, {_A} or {_B}?",
            f"of {_A} and {_B}, which sits higher?", f"which is nearer the top: {_A} or {_B}?"),
           (f"which sits higher, {_A} or {_B}?", f"of {_A} and {_B}, which one is closer to the top?",
            f"which is higher up: {_A} or {_B}?", f"{_A} or {_B}: which is higher?")),
    Intent("bigger", "comparison", (f"which is bigger, {_A} or {_B}?",),
           (f"which is larger, {_A} or {_B}?", f"which one is bigger: {_A} or {_B}?",
            f"of {_A} and {_B}, which is larger?", f"which is the bigger object, {_A} or {_B}?"),
           (f"which one is larger, {_A} or {_B}?", f"of {_A} and {_B}, which one is bigger?",
            f"{_A} or {_B}: which is larger?", f"which is the larger object, {_A} or {_B}?")),
    Intent("more common", "comparison", ("which shape is more common, {x} or {y}?",),
           ("which shape is more frequent, {x} or {y}?", "are there more {x}s or more {y}s?",
            "which shape appears more often, {x} or {y}?", "which is more common: {x}s or {y}s?"),
           ("which shape is more frequent: {x}s or {y}s?", "which appears more often, {x}s or {y}s?",
            "are there more {x}s or {y}s?", "which is more common, {x} or {y}?")),
    Intent("same size", "comparison", (f"are {_A} and {_B} the same size?",),
           (f"is {_A} the same size as {_B}?", f"do {_A} and {_B} have the same size?",
            f"are {_A} and {_B} equal in size?", f"do {_A} and {_B} match in size?"),
           (f"is {_A} equal in size to {_B}?", f"are {_A} and {_B} of the same size?",
            f"does {_A} have the same size as {_B}?", f"do {_A} and {_B} have equal size?")),
)  # fmt: skip

# The validation rewordings of shapes-vqa (`held_out_val`): neither a training nor a test (held-out) template,
# made of the training families' words like the held-out ones; by intent name
_SHAPES_VQA_VAL = {
    "colour of a shape": ("what is the color of the {shape} in the picture?",
                          "which colour does the {shape} in the image have?", "the colour of the {shape} is what?"),
    "shape of a colour": ("what shape does the {colour} thing have?", "the {colour} thing is which shape?",
                          "what is the shape of the {colour} item in the picture?"),
    "size": ("the {colour} {shape} is what size?", "what size does the {colour} {shape} have?",
             "is the {colour} {shape} big or small?"),
    "existence": ("is there a {colour} {shape} in the picture?", "is a {colour} {shape} present in the image?",
                  "does the picture have a {colour} {shape}?"),
    "count of a size": ("how many {size} objects can be seen?", "count the {size} things.",
                        "how many {size} objects are in the picture?"),
    "count of a shape": ("how many {shape}s can be seen?", "count the {shape}s in the image.",
                         "how many {shape}s are in the picture?"),
    "count of all": ("how many things can you see?", "what number of objects are in the image?", "count the shapes."),
    "row": ("which row has the {colour} {shape}?", "the {colour} {shape} is located in what row?"),
    "column": ("which column has the {colour} {shape}?", "the {colour} {shape} is located in what column?"),
    "further left": (f"which one is farther left, {_A} or {_B}?", f"of {_A} and {_B}, which is closer to the left?"),
    "higher": (f"which one is nearer the top, {_A} or {_B}?", f"of {_A} and {_B}, which is higher up?"),
    "bigger": (f"which one is the bigger object: {_A} or {_B}?", f"of {_A} and {_B}, which is bigger?"),
    "more common": ("which shape is more common: {x}s or {y}s?", "which one appears more often, {x} or {y}?"),
    "same size": (f"does {_A} match {_B} in size?", f"is {_A} of the same size as {_B}?"),
}  # fmt: skip
# The wider training rewordings of shapes-vqa (`wider`, drawn in the "train-wide" mode): more closers, openers and
# word orders per meaning ("how many ... does the picture contain?", "... in the scene?", "which of A and B ...?"),
# made of the words the shipped tokenizer already has (so a checkpoint can be fine-tuned on them), never a
# validation or test template (tests/unit/test_paraphrase.py renders them all); by intent name
_SHAPES_VQA_WIDER = {
    "colour of a shape": ("what colour is the {shape} in the picture?", "what color is the {shape} in the scene?",
                          "the {shape} has what colour?", "what's the colour of the {shape} in the image?",
                          "which color is the {shape} in the picture?"),
    "shape of a colour": ("what is the shape of the {colour} thing?", "which shape is the {colour} object in the "
                          "picture?", "the {colour} thing is what kind of shape?", "what shape is the {colour} item?",
                          "the {colour} object has what shape?"),
    "size": ("what size is the {colour} {shape} in the picture?", "how big is the {colour} {shape} in the image?",
             "the size of the {colour} {shape} is what?", "is the {colour} {shape} small or big?",
             "which size is the {colour} {shape}?"),
    "existence": ("is there a {colour} {shape} in the scene?", "does the scene contain a {colour} {shape}?",
                  "can a {colour} {shape} be seen in the image?", "is a {colour} {shape} shown?",
                  "can you see a {colour} {shape} in the picture?"),
    "count of a size": ("how many {size} things are in the image?", "how many {size} shapes does the picture "
                        "contain?", "count the {size} things in the picture.", "how many {size} objects are shown?",
                        "what number of {size} things can you see?"),
    "count of a shape": ("how many {shape}s does the picture contain?", "how many {shape}s are shown?",
                         "how many {shape}s are in the scene?", "what number of {shape}s does the image contain?",
                         "count the {shape}s in the picture."),
    "count of all": ("how many objects does the picture contain?", "how many shapes can you see?",
                     "how many things are shown?", "what number of things are there?",
                     "how many objects are in the scene?", "count the objects in the picture."),
    "row": ("what row is the {colour} {shape} located in?", "the {colour} {shape} is located in which row?",
            "the {colour} {shape} is in what row?", "in which row is the {colour} {shape} located?"),
    "column": ("the {colour} {shape} sits in what column?", "the {colour} {shape} is located in which column?",
               "the {colour} {shape} is in what column?", "in which column is the {colour} {shape} located?"),
    "further left": (f"which is further to the left, {_A} or {_B}?", f"of {_A} and {_B}, which one is farther left?",
                     f"{_A} or {_B}: which is further left?", f"which one is more to the left, {_A} or {_B}?"),
    "higher": (f"which one sits higher, {_A} or {_B}?", f"of {_A} and {_B}, which is nearer the top?",
               f"{_A} or {_B}: which one is higher up?", f"which one is closer to the top: {_A} or {_B}?"),
    "bigger": (f"which is the bigger one, {_A} or {_B}?", f"which of {_A} and {_B} is larger?",
               f"{_A} or {_B}: which one is bigger?", f"of {_A} and {_B}, which is the bigger object?"),
    "more common": ("which shape appears more often: {x}s or {y}s?", "are there more {x}s or {y}s in the picture?",
                    "which one is more frequent, {x} or {y}?", "which is more frequent: {x}s or {y}s?"),
    "same size": (f"do {_A} and {_B} share the same size?", f"are {_A} and {_B} of equal size?",
                  f"is the size of {_A} the same as the size of {_B}?"),
}  # fmt: skip
SHAPES_VQA = tuple(
    replace(i, held_out_val=_SHAPES_VQA_VAL[i.name], wider=_SHAPES_VQA_WIDER[i.name]) for i in SHAPES_VQA
)

# Entailment hypotheses say what the scene holds, never what can be seen: an object under the cloth is there
# but not visible, so "can be seen" would turn a neutral hypothesis into a contradiction.
SHAPES_VE = (
    Intent("there is", "existence", ("there is a {colour} {shape}.",),
           ("there's a {colour} {shape}.", "a {colour} {shape} is present.", "the scene contains a {colour} {shape}.",
            "there exists a {colour} {shape}."),
           ("a {colour} {shape} exists.", "a {colour} {shape} is present in the scene.",
            "there's a {colour} {shape} in the scene.", "the scene has a {colour} {shape}.")),
    Intent("there is no", "existence", ("there is no {colour} {shape}.",),
           ("there's no {colour} {shape}.", "there isn't a {colour} {shape}.", "no {colour} {shape} is present.",
            "the scene does not contain a {colour} {shape}.", "the scene has no {colour} {shape} in it."),
           ("there is not a {colour} {shape}.", "the scene contains no {colour} {shape}.",
            "no {colour} {shape} exists.", "a {colour} {shape} isn't present.")),
    Intent("at least", "counting", ("the number of {shape}s is at least {n}.",),
           ("there are at least {n} {shape}s.", "the scene contains at least {n} {shape}s.",
            "the count of {shape}s is at least {n}.", "the number of {shape}s is {n} or more."),
           ("there are {n} or more {shape}s.", "the scene has at least {n} {shape}s.",
            "the count of {shape}s is {n} or more.", "at least {n} {shape}s are in the scene.")),
    Intent("same row or column", "relation", (f"{_A} is in the same {{axis}} as {_B}.",),
           (f"{_A} and {_B} are in the same {{axis}}.", f"{_A} shares a {{axis}} with {_B}.",
            f"{_A} is located in the same {{axis}} as {_B}.", f"{_A} and {_B} share a {{axis}}."),
           (f"{_A} and {_B} are located in the same {{axis}}.", f"in the same {{axis}} as {_B} is {_A}.",
            f"{_A} is in the {{axis}} of {_B}.", f"{_A} and {_B} share the same {{axis}}.")),
)  # fmt: skip

SHAPES_NLVR = (
    Intent("both", "both", ("both images contain a {colour} object.",),
           ("each image contains a {colour} object.", "there is a {colour} object in both images.",
            "both pictures have a {colour} object.", "a {colour} object appears in both images."),
           ("each picture has a {colour} object.", "there is a {colour} object in each image.",
            "a {colour} object appears in each picture.", "both pictures contain a {colour} object.")),
    Intent("exactly one", "exactly one", ("exactly one image contains a {shape}.",),
           ("only one of the images contains a {shape}.", "exactly one picture has a {shape}.",
            "a {shape} appears in exactly one image.", "there is a {shape} in exactly one of the two images."),
           ("exactly one of the images has a {shape}.", "only one picture contains a {shape}.",
            "a {shape} appears in only one of the two pictures.", "there is a {shape} in exactly one picture.")),
    Intent("more", "more", ("the left image contains more {shape}s than the right image.",),
           ("the right image contains fewer {shape}s than the left image.",
            "there are more {shape}s in the left image than in the right image.",
            "the left picture has more {shape}s than the right picture.",
            "the left image has more {shape}s than the right one."),
           ("the right picture has fewer {shape}s than the left picture.",
            "there are fewer {shape}s in the right image than in the left image.",
            "the left image contains more {shape}s than the right one.",
            "the left picture contains more {shape}s than the right picture.")),
)  # fmt: skip

# easy-VQA's images hold one shape, so "is the shape red?" and "is there a red shape?" ask the same
_EV_HAS = ("does the image contain a {}?", "is a {} present?", "is there a {} in the image?", "is there a {}?")
_EV_NOT = ("does the image not contain a {}?", "is no {} present?", "is there not a {} in the image?",
           "is there not a {}?")  # fmt: skip
EASY_VQA = (
    Intent("which shape", "shape", ("what shape does the image contain?", "what shape is in the image?",
                                    "what shape is present?"),
           ("which shape is in the picture?", "what shape can you see?", "what is the shape in the image?",
            "what kind of shape is shown?", "what shape is it?",
            "which shape do you see in the picture?"),
           ("which shape does the picture contain?", "what shape do you see?", "what's the shape in the picture?",
            "what kind of shape is present?")),
    Intent("shape of a colour", "shape", ("what is the {colour} shape?",),
           ("which shape is {colour}?", "what shape is the {colour} one?", "what is the {colour} object?",
            "the {colour} shape is which shape?"),
           ("what shape is {colour}?", "which shape is the {colour} one?", "what's the {colour} object?",
            "the {colour} object is which shape?")),
    Intent("colour of a shape", "colour", ("what color is the {shape}?", "what is the color of the {shape}?"),
           ("what colour is the {shape}?", "which color is the {shape}?", "what's the colour of the {shape}?",
            "the {shape} is what color?"),
           ("what is the colour of the {shape}?", "which colour is the {shape}?", "what's the color of the {shape}?",
            "what color does the {shape} have?")),
    Intent("colour of the shape", "colour", ("what color is the shape?", "what is the color of the shape?"),
           ("which color is the shape?", "what's the colour of the shape?", "what color does the shape have?",
            "the shape is what colour?"),
           ("what colour is the shape?", "what is the colour of the shape?", "which colour is the shape?",
            "the shape is what color?")),
    Intent("a colour", "yes/no", tuple(t.format("{colour} shape") for t in _EV_HAS),
           ("can you see a {colour} shape?", "is there a {colour} object?",
            "does the picture contain a {colour} shape?", "is the shape {colour}?"),
           ("do you see a {colour} shape?", "is there a {colour} shape in the picture?",
            "is a {colour} object present?", "is the shape in the image {colour}?")),
    Intent("a shape", "yes/no", tuple(t.format("{shape}") for t in _EV_HAS),
           ("can you see a {shape}?", "is the shape a {shape}?", "does the picture contain a {shape}?",
            "is there a {shape} in the picture?"),
           ("do you see a {shape}?", "is it a {shape}?", "is a {shape} in the image?",
            "is the shape in the picture a {shape}?")),
    Intent("no colour", "yes/no", tuple(t.format("{colour} shape") for t in _EV_NOT),
           ("is there no {colour} shape?", "does the picture lack a {colour} shape?", "is a {colour} shape absent?",
            "is the image without a {colour} shape?", "is the shape not {colour}?"),
           ("is there no {colour} shape in the picture?", "does the image lack a {colour} shape?",
            "is the picture without a {colour} shape?", "is a {colour} object absent?")),
    Intent("no shape", "yes/no", tuple(t.format("{shape}") for t in _EV_NOT),
           ("is there no {shape}?", "does the picture lack a {shape}?", "is a {shape} absent?",
            "is the shape not a {shape}?"),
           ("is there no {shape} in the image?", "does the image lack a {shape}?", "is the image without a {shape}?",
            "is it not a {shape}?")),
)  # fmt: skip

INTENTS: dict[str, tuple[Intent, ...]] = {
    "shapes-vqa": SHAPES_VQA,
    "shapes-ve": SHAPES_VE,
    "shapes-nlvr": SHAPES_NLVR,
    "easy-vqa": EASY_VQA,
}
_SLOT = re.compile(r"\{(\w+)\}")


def slots(template: str) -> list[str]:
    """The slot names of a template, in order."""
    return _SLOT.findall(template)


def _pattern(template: str) -> re.Pattern:
    pieces = _SLOT.split(template)  # literal, slot, literal, slot, ..., literal
    out = [re.escape(p) if k % 2 == 0 else f"(?P<{p}>{'|'.join(SLOT_WORDS[p])})" for k, p in enumerate(pieces)]
    return re.compile("".join(out))


_PATTERNS = {
    name: [(intent, _pattern(t)) for intent in intents for t in intent.original] for name, intents in INTENTS.items()
}


def parse(text: str, dataset: str) -> tuple[Intent, dict[str, str]]:
    """The intent of one of the dataset's own texts and its slot values; ValueError for any other text."""
    if dataset not in INTENTS:
        raise ValueError(f"{dataset} has no reworded texts; these do: {tuple(INTENTS)}")
    for intent, pattern in _PATTERNS[dataset]:
        if m := pattern.fullmatch(text):
            return intent, m.groupdict()
    raise ValueError(f"{text!r} is none of {dataset}'s own templates")


def text_rng(dataset: str, split: str, index: int, seed: int = 0) -> random.Random:
    """The draws of example `index`'s rewording: its own stream, so the scene and the label are untouched."""
    return random.Random(f"paraphrase:{dataset}:{split}:{index}:{seed}")


def rephrase(
    text: str, dataset: str, mode: str, rng: random.Random, qtype: str | None = None, word_dropout: float = 0.0
) -> str:
    """`text` (one of `dataset`'s own) in a family of `mode` ("train": the originals and the train families;
    "held-out"; "held-out-val"), drawn with `rng`; a "gray" slot is written "grey" half the time. `qtype`, when
    given, must be the intent's (a check that the text was read as what the example asks). `word_dropout`: each
    word of the template's own text is left out with this probability (`drop_words`), drawn after the rest so a
    dataset without it rewords exactly as before."""
    intent, values = parse(text, dataset)
    if qtype is not None and qtype != intent.qtype:
        raise ValueError(f"{text!r} reads as a {intent.qtype!r} question, not {qtype!r}")
    templates = intent.templates(mode)
    if not templates:
        raise ValueError(f"{dataset} has no {mode} rewordings (its intent {intent.name!r} has none)")
    template = rng.choice(templates)
    values = {k: SPELLINGS[v] if v in SPELLINGS and rng.random() < 0.5 else v for k, v in values.items()}
    if word_dropout > 0:
        template = drop_words(template, word_dropout, rng)
    return template.format(**values)


def check_rewording(dataset: str, mode: str | None, word_dropout: float = 0.0) -> None:
    """ValueError unless `dataset`'s texts can be reworded in `mode` (None: kept as they are) with `word_dropout`:
    a known mode, templates of that mode for every meaning of the dataset (`held-out-val` exists for shapes-vqa
    only), a dropout probability in [0, 1) and only on reworded text. The datasets call it when built, so a bad
    combination fails there, not at the first example."""
    if not 0 <= word_dropout < 1:
        raise ValueError(f"word dropout {word_dropout!r}: expected a probability in [0, 1)")
    if mode is None:
        if word_dropout:
            raise ValueError("word_dropout applies to reworded text: give paraphrase too")
        return
    if mode not in MODES:
        raise ValueError(f"unknown paraphrase mode {mode!r}; expected one of {MODES}")
    missing = [intent.name for intent in INTENTS.get(dataset, ()) if not intent.templates(mode)]
    if missing:
        raise ValueError(f"{dataset} has no {mode} rewordings (its intents {missing} have none)")


def drop_words(template: str, p: float, rng: random.Random) -> str:
    """`template` with each word of its own text left out with probability `p`; the slots (the colours, shapes,
    sizes the answer depends on) always stay, so the label still holds, and so does one own word and the closing
    "?" or ".". A training-time noise: the model cannot lean on any single word of the phrasing."""
    if not 0 <= p < 1:
        raise ValueError(f"word dropout {p!r}: expected a probability in [0, 1)")
    pieces = template.split(" ")
    own = [k for k, w in enumerate(pieces) if "{" not in w]
    gone = {k for k in own if rng.random() < p}
    if own and len(gone) == len(own):
        gone.discard(own[rng.randrange(len(own))])
    out = " ".join(w for k, w in enumerate(pieces) if k not in gone)
    end = template[-1]
    return out + end if end in "?." and not out.endswith(end) else out


def renderings(template: str, dataset: str) -> set[str]:
    """Every text `template` can give with the dataset's slot values (the test of the held-out split)."""
    names = slots(template)
    domains = [_dataset_words(dataset, n) for n in names]
    return {template.format(**dict(zip(names, values))) for values in product(*domains)}


def _dataset_words(dataset: str, slot: str) -> tuple[str, ...]:
    words = SLOT_WORDS[slot]
    if slot in ("colour", "ca", "cb"):
        own = EASY_VQA_COLOURS + tuple(SPELLINGS.values()) if dataset == "easy-vqa" else tuple(COLOURS)
        return tuple(w for w in words if w in own)
    if slot in ("shape", "sa", "sb", "x", "y"):
        return EASY_VQA_SHAPES if dataset == "easy-vqa" else SHAPES
    return words


def words(template: str) -> set[str]:
    """The words of a template's fixed text (as the tokenizer splits them: "what's" -> what, s)."""
    return set(re.findall(r"[a-z]+", _SLOT.sub(" ", template)))


def vocabulary(dataset: str | None = None, mode: str | None = None) -> list[str]:
    """The words of the templates, sorted: every dataset's (or `dataset`'s), every group's (or `mode`'s); with
    neither, the slot values too (what a tokenizer for reworded training needs)."""
    out: set[str] = set()
    if dataset is None and mode is None:
        out = {w for values in SLOT_WORDS.values() for v in values for w in re.findall(r"[a-z]+", v)}
    for name, intents in INTENTS.items():
        for intent in intents if dataset in (None, name) else ():
            every = intent.original + intent.train + intent.wider + intent.held_out + intent.held_out_val
            for t in intent.templates(mode) if mode else every:
                out |= words(t)
    return sorted(out)


def family_counts(dataset: str) -> dict[str, dict[str, int]]:
    """{qtype: {"intents", "original", "train", "wider", "held-out", "held-out-val"}}: how many templates of each
    group per question type."""
    out: dict[str, dict[str, int]] = {}
    for intent in INTENTS[dataset]:
        groups = ("intents", "original", "train", "wider", "held-out", "held-out-val")
        row = out.setdefault(intent.qtype, dict.fromkeys(groups, 0))
        row["intents"] += 1
        row["original"] += len(intent.original)
        row["train"] += len(intent.train)
        row["wider"] += len(intent.wider)
        row["held-out"] += len(intent.held_out)
        row["held-out-val"] += len(intent.held_out_val)
    return out


_ALL_PATTERNS: dict[str, list] = {}


def template_of(text: str, dataset: str) -> tuple[Intent, str, str]:
    """(intent, group, template) of any text a template of `dataset` gives (group: "original", "train",
    "held-out" or "held-out-val"); ValueError for any other text."""
    if dataset not in _ALL_PATTERNS:
        _ALL_PATTERNS[dataset] = [
            (intent, group, t, _pattern(t))
            for intent in INTENTS[dataset]
            for group, templates in (
                ("original", intent.original),
                ("train", intent.train),
                ("wider", intent.wider),
                ("held-out", intent.held_out),
                ("held-out-val", intent.held_out_val),
            )  # fmt: skip
            for t in templates
        ]
    for intent, group, template, pattern in _ALL_PATTERNS[dataset]:
        if pattern.fullmatch(text):
            return intent, group, template
    raise ValueError(f"{text!r} is no template of {dataset}")
