"""Reworded texts (`workbench.data.paraphrase`): held-out wordings never reach training, meaning and labels are
kept, and the default datasets are what they were.

The default digests below were computed from the generators before the rewording layer existed (sha256 of
"text<TAB>label<TAB>qtype" lines of the first 300 examples, first 16 hex digits): the shipped checkpoints were
trained and measured on exactly those texts.
"""

from __future__ import annotations

import hashlib

import pytest

from workbench.data import load_dataset
from workbench.data.easy_vqa import QTYPES as EASY_VQA_QTYPES
from workbench.data.paraphrase import (
    INTENTS,
    drop_words,
    family_counts,
    parse,
    renderings,
    rephrase,
    slots,
    template_of,
    text_rng,
    words,
)
from workbench.data.shapes import VQA_TYPES

TASKS = ("shapes-vqa", "shapes-ve", "shapes-nlvr", "easy-vqa")
QUESTION_TYPES = {
    "shapes-vqa": set(VQA_TYPES),
    "shapes-ve": {"existence", "counting", "relation"},
    "shapes-nlvr": {"both", "exactly one", "more"},
    "easy-vqa": set(EASY_VQA_QTYPES),
}
DEFAULT_DIGESTS = {
    ("shapes-vqa", "train"): "07b1fb81c6b7dfd0",
    ("shapes-vqa", "test"): "bcbb0c0857abb960",
    ("shapes-ve", "train"): "86920033ff168d15",
    ("shapes-ve", "test"): "85930d872bb2eef8",
    ("shapes-nlvr", "train"): "aa8066eb391e4849",
    ("shapes-nlvr", "test"): "68173084f565cb17",
    ("easy-vqa", "train"): "d4c35cbcfd1acfb8",
    ("easy-vqa", "test"): "cdb50972725b91a0",
}
N_TRAIN = 6000  # training texts drawn per task


def digest(data, n: int) -> str:
    h = hashlib.sha256()
    for i in range(min(n, len(data))):
        e = data[i]
        h.update(f"{e.text}\t{e.label}\t{e.qtype}\n".encode())
    return h.hexdigest()[:16]


def training_texts(name: str) -> list[str]:
    data = load_dataset(name, "train", None if name == "easy-vqa" else N_TRAIN, paraphrase="train")
    if name == "easy-vqa":  # one wording per question, shared by its four flips: read them without the images
        return [item[0] for item in data.items[:N_TRAIN]]
    return [data[i].text for i in range(N_TRAIN)]


@pytest.mark.parametrize("name,split", sorted(DEFAULT_DIGESTS))
def test_default_datasets_are_unchanged(name, split):
    assert digest(load_dataset(name, split, 300), 300) == DEFAULT_DIGESTS[(name, split)]


@pytest.mark.parametrize("name", TASKS)
def test_every_question_type_has_two_train_and_two_held_out_families(name):
    counts = family_counts(name)
    assert set(counts) == QUESTION_TYPES[name]
    for intent in INTENTS[name]:  # per meaning, so per question type too
        assert len(intent.train) >= 2 and len(intent.held_out) >= 2, intent.name
        assert not set(intent.held_out) & set(intent.original + intent.train), intent.name


@pytest.mark.parametrize("name", TASKS)
def test_every_template_of_a_meaning_keeps_its_slots(name):
    """The same colours, shapes, sizes and numbers, none dropped and none added."""
    for intent in INTENTS[name]:
        expected = sorted(slots(intent.original[0]))
        for t in intent.original + intent.train + intent.wider + intent.held_out + intent.held_out_val:
            assert sorted(slots(t)) == expected, (intent.name, t)


@pytest.mark.parametrize("name", TASKS)
def test_held_out_templates_use_only_words_of_the_training_templates(name):
    seen = set().union(*(words(t) for i in INTENTS[name] for t in i.original + i.train))
    for intent in INTENTS[name]:
        for t in intent.held_out + intent.held_out_val:
            assert words(t) <= seen, (t, words(t) - seen)


@pytest.mark.parametrize("name", TASKS)
def test_no_held_out_text_occurs_in_training(name):
    held_out = set().union(*(renderings(t, name) for i in INTENTS[name] for t in i.held_out))
    texts = training_texts(name)
    assert len(held_out) > 40
    assert not held_out & set(texts)
    used = {template_of(text, name)[1:] for text in texts}
    assert {group for group, _ in used} == {"original", "train"}
    # every training family is drawn, so the option really varies the wording
    assert {t for _, t in used} == {t for i in INTENTS[name] for t in i.original + i.train}


@pytest.mark.parametrize("name", TASKS)
def test_the_paraphrase_split_is_the_test_split_in_held_out_wording(name):
    n = 400
    test, reworded = load_dataset(name, "test", n), load_dataset(name, "test-paraphrase", n)
    assert len(reworded) == len(test) == n
    groups, held = set(), set()
    for i in range(n):
        a, b = test[i], reworded[i]
        assert (b.label, b.qtype) == (a.label, a.qtype)
        assert [im.tobytes() for im in b.images] == [im.tobytes() for im in a.images]
        intent, group, template = template_of(b.text, name)
        assert intent is parse(a.text, name)[0]
        groups.add(group)
        held.add(template)
    assert groups == {"held-out"}
    assert len(held) >= len(INTENTS[name])  # many held-out families, not one per meaning


@pytest.mark.parametrize("name", TASKS)
def test_reworded_training_keeps_images_labels_and_easy_vqa_tags(name):
    n = 200
    plain, reworded = load_dataset(name, "train", n), load_dataset(name, "train", n, paraphrase="train")
    for i in range(n):
        a, b = plain[i], reworded[i]
        assert (b.label, b.qtype, b.meta) == (a.label, a.qtype, a.meta)
        assert [im.tobytes() for im in b.images] == [im.tobytes() for im in a.images]
        if name == "easy-vqa":  # the curriculum's yes/no kinds are read from the package's wording
            assert reworded.tags(i) == plain.tags(i)
    again = load_dataset(name, "train", n, paraphrase="train")
    assert [again[i].text for i in range(n)] == [reworded[i].text for i in range(n)]


class First:
    """An rng that always takes the first choice, and writes "gray" as "grey" (random() < 0.5)."""

    def choice(self, seq):
        return seq[0]

    def random(self):
        return 0.0


def test_rephrase_worked_by_hand():
    text = "which is further left, the red circle or the blue square?"
    intent, values = parse(text, "shapes-vqa")
    assert intent.name == "further left" and values == {"ca": "red", "sa": "circle", "cb": "blue", "sb": "square"}
    assert (
        rephrase(text, "shapes-vqa", "held-out", First())
        == "which is farther to the left, the red circle or the blue square?"
    )
    assert rephrase(text, "shapes-vqa", "train", First()) == text  # the originals open the train families
    assert (
        rephrase("is there not a gray shape?", "easy-vqa", "held-out", First())
        == "is there no grey shape in the picture?"
    )
    assert (
        rephrase("the number of squares is at least 3.", "shapes-ve", "held-out", First())
        == "there are 3 or more squares."
    )
    assert (
        rephrase("the left image contains more circles than the right image.", "shapes-nlvr", "held-out", First())
        == "the right picture has fewer circles than the left picture."
    )


def test_rephrase_is_deterministic_per_example_and_differs_across_examples():
    text = "how many objects are there?"
    one = [rephrase(text, "shapes-vqa", "held-out", text_rng("shapes-vqa", "test", i)) for i in range(40)]
    two = [rephrase(text, "shapes-vqa", "held-out", text_rng("shapes-vqa", "test", i)) for i in range(40)]
    assert one == two
    count_all = next(i for i in INTENTS["shapes-vqa"] if i.name == "count of all")
    assert set(one) == set(count_all.held_out)  # no slots: the four held-out templates themselves


def test_rephrase_refuses_what_it_cannot_read():
    with pytest.raises(ValueError, match="none of"):
        rephrase("what is the meaning of life?", "shapes-vqa", "train", First())
    with pytest.raises(ValueError, match="reads as"):
        rephrase("is there a red square?", "shapes-vqa", "train", First(), qtype="counting")
    with pytest.raises(ValueError, match="mode"):
        rephrase("is there a red square?", "shapes-vqa", "both", First())
    with pytest.raises(ValueError, match="no reworded texts"):
        load_dataset("shapes-itm", "test-paraphrase", 10)
    with pytest.raises(ValueError, match="held-out"):
        load_dataset("shapes-vqa", "test-paraphrase", 10, paraphrase="train")


def test_the_validation_rewordings_are_neither_training_nor_test_texts():
    """shapes-vqa's `held_out_val` families: every intent has some, and no text they give is a training text or a
    test (held-out) one, so choosing a recipe on val-paraphrase never looks at the test wordings."""
    name = "shapes-vqa"
    assert all(len(i.held_out_val) >= 2 for i in INTENTS[name])
    val = set().union(*(renderings(t, name) for i in INTENTS[name] for t in i.held_out_val))
    test = set().union(*(renderings(t, name) for i in INTENTS[name] for t in i.held_out))
    train = set().union(*(renderings(t, name) for i in INTENTS[name] for t in i.original + i.train))
    assert len(val) > 40 and not val & test and not val & train
    assert not val & set(training_texts(name))


def test_the_val_paraphrase_split_is_the_val_split_in_validation_wording():
    n = 300
    val, reworded = load_dataset("shapes-vqa", "val", n), load_dataset("shapes-vqa", "val-paraphrase", n)
    groups = set()
    for i in range(n):
        a, b = val[i], reworded[i]
        assert (b.label, b.qtype) == (a.label, a.qtype)
        assert [im.tobytes() for im in b.images] == [im.tobytes() for im in a.images]
        intent, group, _ = template_of(b.text, "shapes-vqa")
        assert intent is parse(a.text, "shapes-vqa")[0]
        groups.add(group)
    assert groups == {"held-out-val"}


def test_the_wider_training_rewordings_are_no_validation_or_test_text_and_need_no_new_word():
    """shapes-vqa's `wider` families (the "train-wide" mode): every intent has some, none gives a text of the
    validation or test rewordings, and every word is one the shipped tokenizer has (so the shipped teacher can be
    fine-tuned on them; a new word would be read letter by letter)."""
    import json
    from pathlib import Path

    name = "shapes-vqa"
    assert all(len(i.wider) >= 3 for i in INTENTS[name])
    wider = set().union(*(renderings(t, name) for i in INTENTS[name] for t in i.wider))
    held = set().union(*(renderings(t, name) for i in INTENTS[name] for t in i.held_out + i.held_out_val))
    train = set().union(*(renderings(t, name) for i in INTENTS[name] for t in i.original + i.train))
    assert len(wider) > 1000 and not wider & held and not wider & train
    tokenizer = Path(__file__).resolve().parents[2] / "assets" / "shapes-vqa-teacher" / "tokenizer.json"
    vocab = set(json.loads(tokenizer.read_text())["model"]["vocab"])
    assert set().union(*(words(t) for i in INTENTS[name] for t in i.wider)) <= vocab


def test_train_wide_draws_the_train_and_the_wider_families_and_keeps_every_label():
    n = 400
    plain = load_dataset("shapes-vqa", "train", n)
    wide = load_dataset("shapes-vqa", "train", n, paraphrase="train-wide")
    groups = set()
    for i in range(n):
        a, b = plain[i], wide[i]
        assert (b.label, b.qtype) == (a.label, a.qtype)
        intent, group, _ = template_of(b.text, "shapes-vqa")
        assert intent is parse(a.text, "shapes-vqa")[0]
        groups.add(group)
    assert groups == {"original", "train", "wider"}


def test_train_wide_of_a_dataset_without_wider_rewordings_is_an_error():
    with pytest.raises(ValueError, match="no train-wide rewordings"):
        load_dataset("shapes-ve", "train", 4, paraphrase="train-wide")


def test_val_paraphrase_of_a_dataset_without_validation_rewordings_is_an_error():
    with pytest.raises(ValueError, match="no held-out-val rewordings"):
        load_dataset("shapes-ve", "val-paraphrase", 4)[0]


class Draws:
    """An rng whose random() returns the given values in turn (and choice/randrange take the first)."""

    def __init__(self, values):
        self.values = list(values)

    def random(self):
        return self.values.pop(0)

    def randrange(self, n):
        return 0


def test_drop_words_worked_by_hand():
    template = "how many {shape}s can you see?"
    # own words: how, many, can, you, see? -> draws below 0.3 drop "many" and "you"
    assert drop_words(template, 0.3, Draws([0.9, 0.1, 0.5, 0.2, 0.7])) == "how {shape}s can see?"
    # "see?" dropped: the closing mark stays
    assert drop_words(template, 0.3, Draws([0.9, 0.9, 0.9, 0.9, 0.1])) == "how many {shape}s can you?"
    # every own word drawn to go: one stays (the first, by this rng), with the mark
    assert drop_words(template, 0.5, Draws([0.0] * 5)) == "how {shape}s?"
    assert drop_words(template, 0.0, Draws([0.0] * 5)) == template
    with pytest.raises(ValueError, match="probability"):
        drop_words(template, 1.0, Draws([]))


def test_word_dropout_keeps_labels_and_slots_and_zero_changes_nothing():
    n = 300
    plain = load_dataset("shapes-vqa", "train", n, paraphrase="train")
    dropped = load_dataset("shapes-vqa", "train", n, paraphrase="train", word_dropout=0.3)
    zero = load_dataset("shapes-vqa", "train", n, paraphrase="train", word_dropout=0.0)
    original = load_dataset("shapes-vqa", "train", n)
    shorter = 0
    for i in range(n):
        a, b = plain[i], dropped[i]
        assert zero[i].text == a.text
        assert (b.label, b.qtype) == (a.label, a.qtype)
        kept = b.text.rstrip("?.").split()
        assert set(kept) <= set(a.text.rstrip("?.").split())  # only left out, never added or reordered
        for value in parse(original[i].text, "shapes-vqa")[1].values():  # every colour, shape, size is still there
            assert value in b.text
        shorter += len(kept) < len(a.text.rstrip("?.").split())
    assert shorter > n // 2  # at 0.3 most texts lose a word
    with pytest.raises(ValueError, match="paraphrase"):
        load_dataset("shapes-vqa", "train", 4, word_dropout=0.1)
