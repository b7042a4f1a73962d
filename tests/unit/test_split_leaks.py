"""No image or caption of a val / test split reaches a training stream, and no training image or text names a
held-out (colour, shape) pair of the compositional split.

The checks are independent of the generator's own bookkeeping: images are compared as rendered pixels, captions
as strings, and a caption's split is recomputed from the caption alone (the whole-stream check hashes the
generator's layout key, which a test ties to that caption hash) (parsed with a regex, then hashed the way
docs/design.md describes: SHA-256 of the canonical layout, first 4 bytes, mod 100; train 0-89, val 90-94, test
95-99). The samples are the evaluated galleries (1,000 test images, 500 val), 300 val and test examples of the
other tasks, and the first 3,000 training examples of every shapes task (4,000, i.e. 1,000 groups, of the grouped
gallery). Before variants and hard negatives were kept inside their split, this sample caught: 2 to 5 val / test
images in the training examples of every task but shapes-ve (and 2 to 4 captions in those of the matching and
retrieval tasks); held-out pairs named by 302 `shapes-itm`, 81 `shapes-itm-mixed` and 627 grouped-gallery
training texts (the last also drawn); 704 of the 1,000 test and 356 of the 500 val gallery captions, and 34 to
49% of the val / test matching texts, describing another split's layout.
"""

from __future__ import annotations

import hashlib
import random
import re
from functools import cache

import pytest

from workbench.data import DATASETS, load_dataset
from workbench.data.shapes import HELD_OUT, caption, make_scene, perturb, perturb_in_split, perturbations, scene_key

SHAPES_TASKS = [name for name in DATASETS if name.startswith("shapes-")]
GALLERIES = ("shapes-retrieval", "shapes-retrieval-hard")
GALLERY_SIZE = {"test": 1000, "val": 500}  # what `workbench retrieval` and the MCAD grid evaluate
N_TRAIN = {"shapes-retrieval-hard": 4000}  # else 3,000
N_HELD = 300  # val / test examples of the other tasks whose images are also kept out of training
BUCKETS = {"train": range(0, 90), "val": range(90, 95), "test": range(95, 100)}

ROWS = ("top", "upper middle", "lower middle", "bottom")
COLS = ("left", "centre left", "centre right", "right")
OBJECT = re.compile(
    rf"a (small|large) (\w+) (circle|square|triangle) at ({'|'.join(ROWS)}) ({'|'.join(COLS)})(?=, |\.$)"
)
NAMES_HELD_OUT = re.compile(r"\b(" + "|".join(f"{c} {s}" for c, s in HELD_OUT) + r")s?\b")


def caption_bucket(text: str) -> int:
    """The hash bucket of the layout a caption describes, from the caption's words alone."""
    objects = OBJECT.findall(text)
    assert objects and ", ".join(f"a {' '.join(o[:3])} at {o[3]} {o[4]}" for o in objects) + "." == text, text
    cells = sorted((ROWS.index(row), COLS.index(col), colour, shape, size) for size, colour, shape, row, col in objects)
    key = ";".join(f"{colour},{shape},{size},{r},{c}" for r, c, colour, shape, size in cells)
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % 100


def scenes_of(example) -> list:
    return list(example.meta["scenes"]) if "scenes" in example.meta else [example.meta["scene"]]


@cache
def examples(name: str, split: str, n: int) -> tuple:
    data = load_dataset(name, split, n)
    return tuple(data[i] for i in range(n))


def training(name: str) -> tuple:
    return examples(name, "train", N_TRAIN.get(name, 3000))


def held_out_size(name: str, split: str) -> int:
    return GALLERY_SIZE[split] if name in GALLERIES else N_HELD


@cache
def held_out_split() -> tuple[dict[bytes, str], dict[str, str]]:
    """{image bytes: where}, {caption: where} of the val and test galleries, and the images (and the matching
    captions) of the val and test examples of every shapes task."""
    images, captions = {}, {}
    for split in ("val", "test"):
        for name in SHAPES_TASKS:
            for e in examples(name, split, held_out_size(name, split)):
                images.update({im.tobytes(): f"{name} {split}" for im in e.images})
                if name in GALLERIES or name.startswith("shapes-itm"):
                    captions[e.text] = f"{name} {split}"
    return images, captions


@pytest.mark.parametrize("name", SHAPES_TASKS)
def test_no_val_or_test_image_or_caption_in_a_training_stream(name):
    images, captions = held_out_split()
    leaked_images = [images[im.tobytes()] for e in training(name) for im in e.images if im.tobytes() in images]
    leaked_texts = [captions[e.text] for e in training(name) if e.text in captions]
    assert not leaked_images and not leaked_texts, (
        f"{len(leaked_images)} images and {len(leaked_texts)} texts of val / test in {name} train",
        sorted(set(leaked_images + leaked_texts)),
    )


@pytest.mark.parametrize("name", SHAPES_TASKS)
def test_no_training_image_or_text_names_a_held_out_pair(name):
    texts = [e.text for e in training(name) if NAMES_HELD_OUT.search(e.text)]
    images = [
        s for e in training(name) for s in scenes_of(e) if {(o.colour, o.shape) for o in s.objects} & set(HELD_OUT)
    ]
    assert not texts and not images, (f"{len(texts)} texts and {len(images)} images of {name} train", texts[:3])


# the longest training stream a shipped run of each task reads (DiDE students 192,000; the matching teacher 128,000
# a pass; MCAD's students 64,000 of the galleries), sampled over its whole length, with every rewording mode a run
# can train on: the first 3,000 examples above are where every run starts, these are where long runs go
STREAM = {"shapes-itm": 128_000, "shapes-itm-mixed": 128_000, "shapes-retrieval": 64_000,
          "shapes-retrieval-hard": 64_000}  # fmt: skip
CAPTION_TASKS = (*GALLERIES, "shapes-itm", "shapes-itm-mixed")


@pytest.mark.parametrize("name", SHAPES_TASKS)
def test_a_whole_training_stream_keeps_to_the_train_buckets_and_never_names_a_held_out_pair(name, monkeypatch):
    from workbench.data import PARAPHRASED
    from workbench.data.shapes import dataset as shapes_dataset

    monkeypatch.setattr(shapes_dataset, "render", lambda scene, size: None)  # layouts and texts only: fast
    rewordings = (None, "train", "train-wide") if name == "shapes-vqa" else (None, "train")  # wider: its teacher's
    for rewording in rewordings if name in PARAPHRASED else (None,):
        data = load_dataset(name, "train", STREAM.get(name, 192_000), paraphrase=rewording)
        for i in random.Random(f"{name}/{rewording}").sample(range(len(data)), 2000):
            e = data[i]
            for scene in scenes_of(e):
                assert layout_bucket(scene) in BUCKETS["train"], (name, rewording, i, "image of another split")
                assert not {(o.colour, o.shape) for o in scene.objects} & set(HELD_OUT), (name, i, "held-out image")
            assert not NAMES_HELD_OUT.search(e.text), (name, rewording, i, e.text)
            if name in CAPTION_TASKS:  # what a caption (a negative's too) describes is a training layout
                assert caption_bucket(e.text) in BUCKETS["train"], (name, i, e.text)


def layout_bucket(scene) -> int:
    return int.from_bytes(hashlib.sha256(scene_key(scene.objects).encode()).digest()[:4], "big") % 100


def test_layout_bucket_is_the_bucket_of_the_scenes_caption():
    for j in range(50):
        scene = make_scene("train", j)
        assert layout_bucket(scene) == caption_bucket(caption(scene))


@pytest.mark.parametrize("split", ["train", "val", "test"])
@pytest.mark.parametrize("name", [*GALLERIES, "shapes-itm", "shapes-itm-mixed"])
def test_every_caption_of_a_split_describes_a_layout_of_its_buckets(name, split):
    """Gallery captions (a scene and its variants) and matching texts (hard negatives included): the split of
    what a caption says, recomputed from its words, is the caption's split."""
    sample = training(name) if split == "train" else examples(name, split, held_out_size(name, split))
    outside = [e.text for e in sample if caption_bucket(e.text) not in BUCKETS[split]]
    assert not outside, f"{len(outside)} of {len(sample)} {name} {split} captions describe another split's layout"


def test_compositional_variants_and_negatives_keep_a_held_out_pair():
    """A compositional caption always names a held-out pair, so it is never a train / val / test caption."""
    for name in ("shapes-retrieval-hard", "shapes-itm"):
        texts = [e.text for e in examples(name, "compositional", 200)]
        assert all(NAMES_HELD_OUT.search(t) for t in texts), [t for t in texts if not NAMES_HELD_OUT.search(t)][:2]


def test_caption_bucket_is_the_hash_of_the_layout_worked_by_hand():
    text = "a small red square at top left, a large cyan circle at bottom centre right."
    key = "red,square,small,0,0;cyan,circle,large,3,2"
    assert caption_bucket(text) == int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100
    with pytest.raises(AssertionError):
        caption_bucket("a small red square at the top.")


def inside_test(text: str) -> bool:
    return caption_bucket(text) in BUCKETS["test"] and not NAMES_HELD_OUT.search(text)


def test_perturb_in_split_keeps_a_draw_inside_the_split_and_replaces_one_outside():
    """Inside the split, `perturb`'s own draw and the rng state after it (so a clean gallery group or negative is
    what it was before the rule); outside, a change of the same kind inside the split, from `perturbations`."""
    kept = replaced = 0
    for j in range(60):
        scene = make_scene("test", j)
        for kind in ("colour swap", "shape swap", "position swap"):
            a, b = random.Random(j), random.Random(j)
            drawn, got = perturb(scene, kind, a), perturb_in_split(scene, kind, b, "test", random.Random(0))
            everything = {scene_key(s.objects) for s in perturbations(scene, kind)}
            assert scene_key(drawn.objects) in everything and a.random() == b.random()
            if inside_test(caption(drawn)):
                kept += 1
                assert got == drawn
            elif got is not None:
                replaced += 1
                assert scene_key(got.objects) in everything and inside_test(caption(got))
    assert kept >= 3 and replaced >= 20, (kept, replaced)  # 5% of layouts are test's: mostly replaced


@pytest.mark.parametrize("name", ["shapes-retrieval-hard", "shapes-itm-mixed"])
def test_val_and_test_streams_with_replaced_variants_are_deterministic(name):
    a, b = load_dataset(name, "val", 40), load_dataset(name, "val", 40)
    assert [(a[i].text, a[i].images[0].tobytes()) for i in range(40)] == [
        (b[i].text, b[i].images[0].tobytes()) for i in range(40)
    ]


def test_grouped_gallery_keeps_the_scene_draws_object_counts_and_grows_by_appending():
    """Kept inside its buckets, a test group of two objects is rare (2% of draws: four shape swaps, each in the
    test buckets one time in 20), so skipping scenes alone would fill the test gallery with six-object scenes;
    the groups take counts 2..6 in turn, as uniform as a scene draw's."""
    gallery = [e.meta["scene"] for e in examples("shapes-retrieval-hard", "test", GALLERY_SIZE["test"])]
    counts = [len(s.objects) for s in gallery[::4]]
    assert counts[:10] == [2, 3, 4, 5, 6, 2, 3, 4, 5, 6] and all(counts.count(n) == 50 for n in range(2, 7))
    assert [len(s.objects) for s in gallery] == [n for n in counts for _ in range(4)]  # a variant keeps the count
    larger = [e.text for e in training("shapes-retrieval-hard")]
    assert [e.text for e in examples("shapes-retrieval-hard", "train", 1000)] == larger[:1000]
