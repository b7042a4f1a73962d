"""`ShapesDataset`: the shapes tasks (vqa, ve, nlvr, retrieval, itm) as map-style datasets of `Example`s.

Example i of a split is a fresh scene draw (a layout can repeat by chance within a split, never across
splits), with a question type that cycles so every type is equally frequent. Retrieval galleries are
de-duplicated so every caption names exactly one image.
"""

from __future__ import annotations

import random

from workbench.data.example import Example
from workbench.data.paraphrase import MODES, check_rewording, rephrase, text_rng
from workbench.data.shapes.captions import (
    ITM_LABELS,
    ITM_TYPES,
    RETRIEVAL_VARIANTS,
    caption,
    partial_scene,
    perturb_in_split,
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
    COLOURS,
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
        paraphrase: str | None = None,
        word_dropout: float = 0.0,
    ):
        """`itm_kinds`: the cycle of matching-pair kinds (ITM_TYPES; ITM_MIXED_TYPES for shapes-itm-mixed).
        `retrieval_groups`: the retrieval gallery in groups of near-duplicates (shapes-retrieval-hard).
        `paraphrase` (vqa, ve, nlvr): "train" or "held-out" rewords each text in a family of that group
        (`workbench.data.paraphrase`) with the example's own draw; scenes and labels stay the same. `word_dropout`:
        each word of the reworded text's own phrasing left out with that probability (`paraphrase.drop_words`)."""
        if task not in self.tasks:
            raise ValueError(f"unknown shapes task {task!r}; expected one of {self.tasks}")
        if paraphrase is not None and (paraphrase not in MODES or task not in ("vqa", "ve", "nlvr")):
            raise ValueError(f"paraphrase={paraphrase!r} on shapes-{task}: the vqa, ve and nlvr texts are reworded, "
                             f"in one of {MODES}")  # fmt: skip
        check_rewording(f"shapes-{task}", paraphrase, word_dropout)
        self.paraphrase, self.word_dropout = paraphrase, word_dropout
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
            self._gallery = (self._groups() if self.retrieval_groups else self._scenes())[: self.size]
        return self._gallery

    def _scenes(self) -> list[Scene]:
        seen: set[str] = set()
        scenes, j = [], 0
        while len(scenes) < self.size:
            scene, j = self.scene(j), j + 1
            if (key := scene_key(scene.objects)) not in seen:
                seen.add(key)
                scenes.append(scene)
        return scenes

    def _groups(self) -> list[Scene]:
        """Every variant belongs to the split (`perturb_in_split`): a scene without one of each kind there is
        skipped. Small scenes have few one-word changes (a two-object scene four shape swaps), so on val / test,
        whose buckets hold 5% of layouts, most of them would be skipped: the groups take their scenes' object
        counts in turn (2, 3, ..., 6, 2, ...; a scene draw's own count is uniform), each the next unused group of
        that count in draw order."""
        counts = range(self.cfg.min_objects, min(self.cfg.max_objects, len(COLOURS)) + 1)
        found: dict[int, list] = {n: [] for n in counts}
        seen: set[str] = set()
        scenes, j = [], 0
        while len(scenes) < self.size:
            n = counts[len(scenes) // self.group_size % len(counts)]
            while not found[n]:
                scene, j = self.scene(j), j + 1
                m = len(scene.objects)
                if found[m]:  # one group of this count is waiting its turn: no need to look at another (so
                    continue  # this never depends on `size`, and a smaller gallery is the start of a larger)
                group = [scene, *self._variants(scene, j - 1)]
                keys = [scene_key(s.objects) for s in group]
                if len(keys) == len(set(keys)) == self.group_size and not seen.intersection(keys):
                    seen.update(keys)
                    found[m].append(group)
            scenes.extend(found[n].pop())
        return scenes

    def _variants(self, scene: Scene, j: int) -> list[Scene]:
        """Gallery scene j's variants, one per kind, each inside the split; [] (the scene is skipped) at the first
        kind that has none there."""
        rng, spare = (scene_rng(self.split, j, self.cfg.seed, salt=salt) for salt in (11, 12))
        out = []
        for kind in RETRIEVAL_VARIANTS:
            variant = perturb_in_split(scene, kind, rng, self.split, spare)
            if variant is None:
                return []
            out.append(variant)
        return out

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
        example = make(i, rng)
        if self.paraphrase is not None:
            name = f"shapes-{self.task}"
            draws = text_rng(name, self.split, i, self.cfg.seed)
            example.text = rephrase(example.text, name, self.paraphrase, draws, example.qtype, self.word_dropout)
        return example

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
        """The index's own scene and, for a negative, a changed scene inside the split (`in_split`); when the scene
        has no such change of the example's kind (common on val / test, whose buckets hold 5% of layouts, and more
        so the fewer its objects), the image is the first of the index's spare scenes (i * 4 + 10^7 * attempt)
        with as many objects that has one, so each kind keeps the scene draw's object counts."""
        own, kind, spare = self.scene(i), self.qtype(i), scene_rng(self.split, i, self.cfg.seed, salt=8)
        donors = [self.scene(i, salt=k) for k in (1, 2, 3)] if kind in ("other scene", "partial scene") else []
        for attempt in range(10_000):
            scene = own if attempt == 0 else make_scene(self.split, i * 4 + attempt * 10_000_000, self.cfg)
            if len(scene.objects) != len(own.objects):
                continue
            if kind == "match":
                named = scene
            elif kind == "other scene":  # salts 1-3 draw scenes no index uses as its own (i * 4)
                named = next(o for o in donors if caption(o) != caption(scene))
            elif kind == "partial scene":
                named = partial_scene(scene, donors, rng, self.split)
            else:
                named = perturb_in_split(scene, kind, rng, self.split, spare)
            if named is not None:
                image = render(scene, self.cfg.image_size)
                return Example([image], caption(named), int(kind == "match"), kind, {"scene": scene})
        raise RuntimeError(f"no {kind} negative inside {self.split} for example {i}")  # pragma: no cover

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
