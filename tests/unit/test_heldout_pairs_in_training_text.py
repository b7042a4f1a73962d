"""The compositional split's held-out (colour, shape) pairs are never named in any shapes task's training text.

The compositional split measures generalisation to combinations never seen in training (MAD's domain shift):
a training question, hypothesis, statement or caption that names "a red circle" (negatives and hard-negative
captions included) would teach the pair in words even though no training image shows it. Every shapes task's
training stream (the first 3,000 examples, which every shipped run starts with) is read as the trainer reads
it, and each text is searched for a held-out pair, with or without a size between or a plural."""

import re

import pytest

from workbench.data import DATASETS, load_dataset
from workbench.data.shapes import HELD_OUT

SHAPES_TASKS = [name for name in DATASETS if name.startswith("shapes-")]
NAMES = re.compile(r"\b(" + "|".join(f"{colour} {shape}" for colour, shape in HELD_OUT) + r")s?\b")
N = 3000


def test_the_detector_finds_held_out_pairs_where_they_are_asked_about():
    """On the compositional split every VQA question is about a held-out pair where its type names one."""
    data = load_dataset("shapes-vqa", "compositional", 600)
    named = sum(bool(NAMES.search(data[i].text)) for i in range(len(data)))
    assert named > 300
    assert NAMES.search("a small red circle at top left.") and NAMES.search("how many blue triangles are there?")
    assert not NAMES.search("a small red square at top left.")


@pytest.mark.parametrize("name", SHAPES_TASKS)
def test_training_text_never_names_a_held_out_pair(name):
    data = load_dataset(name, "train", N)
    naming = [(i, data[i].text) for i in range(len(data)) if NAMES.search(data[i].text)]
    assert naming == [], f"{len(naming)} of {N} {name} training texts name a held-out pair, e.g. {naming[:3]}"
