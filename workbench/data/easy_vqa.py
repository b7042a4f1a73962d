"""easy-VQA (PyPI package `easy-vqa`, MIT): 64x64 images of one shape, 13 answers.

The package ships a train and a test split; we carve a validation split off the end of train
(by image id, so no image is in both). Train has only 3,600 images, so the training split is
augmented with the four flips of each image (no question mentions left, right, up or down, so
every answer survives a flip): example i is question i // 4 under flip i % 4 — deterministic,
so resumed runs see exactly the same data.
"""

from __future__ import annotations

import re

from PIL import Image

from workbench.data.example import Example
from workbench.data.paraphrase import check_rewording, rephrase, text_rng

QTYPES = ("shape", "colour", "yes/no")
# Finer kinds a curriculum phase may name (`TrainConfig.curriculum`): the yes/no questions split by what they ask
# about, whether it is in the image, and whether the question is negated ("not-": "is there not a red shape?").
# The asked colour is present in 1 question in 8, so "not there" is right 7 times in 8; and a negated question
# flips the answer, so a match feature helps one half and hurts the other until negation is learned too
# (docs/lab-notes.md "easy-VQA: what it took").
TAGS = tuple(
    f"{neg}{about}-{where}" for neg in ("", "not-") for about in ("colour", "shape") for where in ("present", "absent")
)
_NEGATED = re.compile(r"\b(not|no)\b")


# The students' curriculum (`distill.experiment.TASK_RUN`; the teacher's until 2026-12-01): shape questions alone,
# then shape and colour, then the full mix. In the mix from the start, shape questions stayed near chance (46%
# after 3,200 steps): the answer to three of the four other question kinds does not need shape, and it is
# learned only when it is nearly all of the gradient (docs/lab-notes.md "easy-VQA: what it took").
CURRICULUM = [[["shape"], 600], [["shape", "colour"], 400]]
# ... and the rarest yes/no kind drawn 4 times per epoch (`TrainConfig.oversample`): "is there not a red shape?"
# with red there is 1 question in 32, and "yes" is right 7 times in 8 among negated colour questions; drawn once,
# it stayed at 27% (96.6% overall), drawn 4 times it reached 99.7% (99.6% overall)
OVERSAMPLE = {"not-colour-present": 4}

# The teacher's curriculum (workbench/configs/teachers.py); the students keep the two above (their rows in
# assets/results/dide.json were trained with them). Each phase ends once learned (`until=`, `train.PhaseGate`)
# instead of after a fixed number of steps: the shape plateau lasts 400-800 steps depending on the seed (seed 2
# left it after step 800, and never learned shape in a 600-step phase); the steps a fast run does not need go to
# the mix. Chosen again on validation (2026-12-03, reworded text): with the gates 99.90%, with the same phase
# lengths fixed 89.30% (one seed each; docs/lab-notes.md "The easy-VQA recipe, chosen on validation"); gates at
# 0.90 / 0.90 left a colour kind unlearned in both runs, 94.15 and 97.00% against 99.90 and 99.80% (seeds 0, 1;
# "The easy-VQA recipe over seeds, on validation").
TEACHER_CURRICULUM = [[["shape"], 1000, "until=0.97"], [["shape", "colour"], 500, "until=0.95"]]


def _tag(question: str, answer: str) -> str:
    """A yes/no question's kind: is the colour (or shape) it asks about in the image, is the question negated?
    Read from the question and its gold answer alone: "is there not a red shape?" -> "no" means red is there."""
    about = "colour" if " shape" in question else "shape"  # the templates: "a red shape" / "a circle"
    negated = bool(_NEGATED.search(question))
    present = (answer == "yes") != negated
    return f"{'not-' if negated else ''}{about}-{'present' if present else 'absent'}"


def _qtype(answer: str, shapes: set[str]) -> str:
    if answer in ("yes", "no"):
        return "yes/no"
    return "shape" if answer in shapes else "colour"


class EasyVQADataset:
    """Map-style dataset of `Example`s over the easy-VQA package's files."""

    def __init__(
        self,
        split: str,
        size: int | None = None,
        val_fraction: float = 0.1,
        augment: bool | None = None,
        paraphrase: str | None = None,
        word_dropout: float = 0.0,
    ):
        """`paraphrase`: "train" or "held-out" rewords each question in a family of that group
        (`workbench.data.paraphrase`), one draw per question (its flips share it); None keeps the package's.
        `word_dropout`: each word of a reworded question's own phrasing left out with that probability."""
        import easy_vqa

        if split not in ("train", "val", "test"):
            raise ValueError(f"easy-VQA has splits train / val / test, not {split!r}")
        self.labels: tuple[str, ...] = tuple(easy_vqa.get_answers())
        self.qtypes = QTYPES
        self.curriculum_tags = TAGS
        if split == "test":
            qs, answers, ids = easy_vqa.get_test_questions()
            paths = easy_vqa.get_test_image_paths()
        else:
            qs, answers, ids = easy_vqa.get_train_questions()
            paths = easy_vqa.get_train_image_paths()
            cut = int(len(paths) * (1 - val_fraction))
            keep = (lambda i: i >= cut) if split == "val" else (lambda i: i < cut)
            qs, answers, ids = zip(*[(q, a, i) for q, a, i in zip(qs, answers, ids) if keep(i)])
        shapes = {"circle", "rectangle", "triangle"}
        self.items = [(q, self.labels.index(a), i, _qtype(a, shapes)) for q, a, i in zip(qs, answers, ids)]
        if size is not None:
            self.items = self.items[:size]
        self._tags = [(qt, _tag(q, self.labels[a])) if qt == "yes/no" else (qt,) for q, a, _, qt in self.items]
        check_rewording("easy-vqa", paraphrase, word_dropout)
        if paraphrase is not None:  # after the tags, which are read from the package's wording
            self.items = [
                (rephrase(q, "easy-vqa", paraphrase, text_rng("easy-vqa", split, j), qt, word_dropout), a, i, qt)
                for j, (q, a, i, qt) in enumerate(self.items)
            ]
        self.paraphrase = paraphrase
        self.paths = paths
        self.flips = 4 if (split == "train" if augment is None else augment) else 1
        self._cache: dict[int, Image.Image] = {}

    def __len__(self) -> int:
        return len(self.items) * self.flips

    def qtype(self, i: int) -> str:
        """Example i's question type, without loading its image (the training curriculum filters on it)."""
        return self.items[i // self.flips][3]

    def tags(self, i: int) -> tuple[str, ...]:
        """Example i's question type and, for yes/no questions, its finer kind (`TAGS`), for the curriculum."""
        return self._tags[i // self.flips]

    def __getitem__(self, i: int) -> Example:
        if not 0 <= i < len(self):
            raise IndexError(i)
        q, label, image_id, qtype = self.items[i // self.flips]
        if image_id not in self._cache:
            with Image.open(self.paths[image_id]) as im:
                self._cache[image_id] = im.convert("RGB")
        image = self._cache[image_id]
        flip = i % self.flips
        if flip & 1:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        if flip & 2:
            image = image.transpose(Image.FLIP_TOP_BOTTOM)
        return Example([image], q, label, qtype, {"image_id": image_id, "flip": flip})
