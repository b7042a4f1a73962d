"""`ShapesDataset`: the shapes tasks (vqa, ve, nlvr, retrieval, itm) as map-style datasets of `Example`s.

Example i of a split is a fresh scene draw (a layout can repeat by chance within a split, never across
splits), with a question type that cycles so every type is equally frequent. Retrieval galleries are
de-duplicated so every caption names exactly one image.
"""

from __future__ import annotations

import random

from workbench.data.example import Example
from workbench.data.shapes.captions import (
    ITM_LABELS,
    ITM_TYPES,
    RETRIEVAL_VARIANTS,
    caption,
    partial_scene,
    perturb,
)
from workbench.data.shapes.questions import (
    NLVR_LABELS,
    VE_LABELS,
    VQA_ANSWERS,
    VQA_TYPES,
    nlvr_statement,
    ve_hypothesis,
    vqa_question,
)
from workbench.data.shapes.scenes import (
    HELD_OUT,
    SPLITS,
    Scene,
    ShapesConfig,
    make_scene,
    render,
    scene_key,
    scene_rng,
)
from workbench.errors import WorkbenchError


class ShapesDataset:
    """Map-style dataset of `Example`s for one task and split; rendering happens on access."""

    tasks = ("vqa", "ve", "nlvr", "retrieval", "itm")

    def __init__(
        self,
        task: str,
        split: str,
        size: int,
        cfg: ShapesConfig = ShapesConfig(),
        itm_kinds: tuple = ITM_TYPES,
        retrieval_groups: bool = False,
    ):
        """`itm_kinds`: the cycle of matching-pair kinds (ITM_TYPES; ITM_MIXED_TYPES for shapes-itm-mixed).
        `retrieval_groups`: the retrieval gallery in groups of near-duplicates (shapes-retrieval-hard)."""
        if task not in self.tasks:
            raise ValueError(f"unknown shapes task {task!r}; expected one of {self.tasks}")
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        self.task, self.split, self.size, self.cfg = task, split, size, cfg
        self.retrieval_groups = retrieval_groups
        self.labels: tuple[str, ...] = {
            "vqa": VQA_ANSWERS,
            "ve": VE_LABELS,
            "nlvr": NLVR_LABELS,
            "retrieval": (),
            "itm": ITM_LABELS,
        }[task]
        self.qtypes: tuple[str, ...] = {
            "vqa": VQA_TYPES,
            "ve": ("existence", "counting", "relation"),
            "nlvr": ("both", "exactly one", "more"),
            "retrieval": ("caption",),
            "itm": itm_kinds,
        }[task]

    def __len__(self) -> int:
        return self.size

    @property
    def group_size(self) -> int:
        """Examples per group of near-duplicates (the training order keeps a group together): retrieval-hard 4."""
        return 1 + len(RETRIEVAL_VARIANTS) if self.task == "retrieval" and self.retrieval_groups else 1

    def scene(self, i: int, occluder: bool = False, salt: int = 0) -> Scene:
        return make_scene(self.split, i * 4 + salt, self.cfg, occluder=occluder)

    def gallery(self) -> list[Scene]:
        """Retrieval: `size` distinct scenes (duplicate layouts skipped), built once. With `retrieval_groups`,
        consecutive groups of `group_size`: a scene, then the same scene with one object's colour, shape or
        cell changed (`perturb`), so a caption's image must be told from images that differ in one word."""
        if not hasattr(self, "_gallery"):
            seen: set[str] = set()
            scenes, j = [], 0
            while len(scenes) < self.size:
                scene = self.scene(j)
                group = [scene]
                if self.retrieval_groups:
                    rng = scene_rng(self.split, j, self.cfg.seed, salt=11)
                    group += [perturb(scene, kind, rng) for kind in RETRIEVAL_VARIANTS]
                j += 1
                keys = [scene_key(s.objects) for s in group]
                if len(set(keys)) == len(keys) and not seen.intersection(keys):
                    seen.update(keys)
                    scenes.extend(group)
            self._gallery = scenes[: self.size]
        return self._gallery

    def qtype(self, i: int) -> str:
        """Example i's question type without rendering it (the training curriculum filters on it). Only VQA
        and ITM fix the type by index; a ve / nlvr type depends on the generated scene."""
        if self.task == "vqa":
            return VQA_TYPES[i % len(VQA_TYPES)]
        if self.task == "itm":
            return self.qtypes[i % len(self.qtypes)]
        raise WorkbenchError(f"shapes-{self.task}: an example's question type depends on its scene; "
                             "a --curriculum needs shapes-vqa, shapes-itm or easy-vqa")  # fmt: skip

    def __getitem__(self, i: int) -> Example:
        if not 0 <= i < self.size:
            raise IndexError(i)
        rng = scene_rng(self.split, i, self.cfg.seed, salt=7)
        if self.task == "retrieval":
            scene = self.gallery()[i]
            return Example([render(scene, self.cfg.image_size)], caption(scene), i, "caption", {"scene": scene})
        make = {"vqa": self._vqa, "ve": self._ve, "itm": self._itm, "nlvr": self._nlvr}[self.task]
        return make(i, rng)

    def _vqa(self, i: int, rng: random.Random) -> Example:
        scene = self.scene(i)
        qtype = VQA_TYPES[i % len(VQA_TYPES)]
        focus = None
        if self.split == "compositional":
            focus = next((o.colour, o.shape) for o in scene.objects if (o.colour, o.shape) in HELD_OUT)
        text, answer = vqa_question(scene, qtype, rng, focus)
        image = render(scene, self.cfg.image_size)
        return Example([image], text, self.labels.index(answer), qtype, {"scene": scene})

    def _ve(self, i: int, rng: random.Random) -> Example:
        want = VE_LABELS[i % 3]
        for attempt in range(100):
            scene = self.scene(i, occluder=rng.random() < 0.5 or want == "neutral", salt=attempt)
            out = ve_hypothesis(scene, rng, want)
            if out is not None:
                text, label, kind = out
                image = render(scene, self.cfg.image_size)
                return Example([image], text, VE_LABELS.index(label), kind, {"scene": scene})
        raise RuntimeError(f"could not make a {want} hypothesis for example {i}")  # pragma: no cover

    def _itm(self, i: int, rng: random.Random) -> Example:
        scene, kind = self.scene(i), self.qtype(i)
        if kind == "match":
            text = caption(scene)
        elif kind == "other scene":  # salts 1-3 draw scenes no index uses as its own (i * 4)
            other = next(o for o in (self.scene(i, salt=k) for k in (1, 2, 3)) if caption(o) != caption(scene))
            text = caption(other)
        elif kind == "partial scene":
            text = caption(partial_scene(scene, [self.scene(i, salt=k) for k in (1, 2, 3)], rng))
        else:
            text = caption(perturb(scene, kind, rng))
        return Example([render(scene, self.cfg.image_size)], text, int(kind == "match"), kind, {"scene": scene})

    def _nlvr(self, i: int, rng: random.Random) -> Example:
        want = bool(i % 2)
        size = self.cfg.image_size
        for attempt in range(100):
            left, right = self.scene(i, salt=0), make_scene(self.split, i * 4 + 1 + attempt * 10_000_000, self.cfg)
            text, truth, kind = nlvr_statement(left, right, rng)
            if truth == want:
                images = [render(left, size), render(right, size)]
                return Example(images, text, int(truth), kind, {"scenes": (left, right)})
        raise RuntimeError(f"could not make a {want} statement for example {i}")  # pragma: no cover
