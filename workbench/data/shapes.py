"""The `shapes` scene generator and its four tasks (vqa, ve, nlvr, retrieval).

Scenes are deterministic functions of (split, index, seed). Objects sit on a G x G grid whose
cells coincide with the model's image patches (64 px image, 4 x 4 grid, 16 px patches by
default): one object per patch makes training fast and attention maps crisp (DESIGN.md §3).

Within a scene every object has its own colour, so "the red circle" always names at most one
object, found by one attribute. Every answer is computed from the scene graph (`Scene.objects`), and
the tests recompute them independently.

Splits are disjoint by construction: a layout belongs to the split its hash falls in. The
`compositional` split holds out some (colour, shape) combinations: the train / val / test
scenes never contain them, every compositional scene contains at least one and its questions
mention it (the domain shift of MAD's protocol).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

from workbench.errors import WorkbenchError

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (150, 60, 190),
    "cyan": (40, 190, 200),
}
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
# Held out of train/val/test scenes; the compositional split is made of them.
HELD_OUT = (("red", "circle"), ("blue", "triangle"), ("green", "square"), ("yellow", "circle"))
SPLITS = ("train", "val", "test", "compositional")
_SPLIT_SALT = {"train": 1, "val": 2, "test": 3, "compositional": 4}
NUMBER_WORDS = ("0", "1", "2", "3", "4", "5", "6")

VQA_TYPES = ("attribute", "existence", "counting", "position", "relation", "comparison")
VQA_ANSWERS = (*COLOURS, *SHAPES, *SIZES, "yes", "no", *NUMBER_WORDS)
VE_LABELS = ("entailment", "neutral", "contradiction")
NLVR_LABELS = ("false", "true")
ITM_LABELS = ("mismatch", "match")
# half the pairs match; the other half are hard negatives: the caption of the same scene with one
# attribute of one object changed
ITM_TYPES = ("match", "colour swap", "match", "shape swap", "match", "position swap")
# shapes-itm-mixed, the MCAD fusion teacher's data; half the pairs match, and the negatives are of three sorts:
# - one-attribute swaps (a quarter): trained on these alone, a matcher learns "a match unless some word is off"
#   and ranks a true caption first among 20 random ones only about half the time;
# - another scene's caption (a quarter): with swaps and these alone, re-ranking a dual teacher's top 10 with the
#   matcher cost 3.5 points of R@1 (measured 2026-12-01), and in the failures we read the wrong caption mostly
#   shared the true one's first object (a random scene's first object almost never matches);
# - a partial scene (half): the caption of the scene with a random non-empty subset of its objects (never all)
#   replaced by another scene's, so any object named can be the wrong one.
ITM_MIXED_TYPES = (
    *("match", "colour swap", "match", "partial scene", "match", "other scene", "match", "partial scene"),
    *("match", "shape swap", "match", "partial scene", "match", "other scene", "match", "partial scene"),
    *("match", "position swap", "match", "partial scene", "match", "other scene", "match", "partial scene"),
)
# shapes-retrieval-hard: each gallery scene comes with these variants (one object changed), so R@1 measures
# binding every attribute to its object; on random scenes alone a 1.75 M-parameter student reached R@1 99.9
RETRIEVAL_VARIANTS = ("colour swap", "shape swap", "position swap")
OCCLUDER_RGB = (90, 90, 90)


@dataclass(frozen=True)
class Obj:
    shape: str
    colour: str
    size: str
    row: int
    col: int

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass
class Scene:
    objects: list[Obj]
    grid: int = 4
    occluder: tuple[int, int] | None = None  # (row, col) of an opaque cloth, or None
    seed: int = 0

    def find(self, colour: str, shape: str) -> Obj | None:
        return next((o for o in self.objects if o.colour == colour and o.shape == shape), None)

    def count(self, colour: str | None = None, shape: str | None = None) -> int:
        return sum(
            1 for o in self.objects if (colour is None or o.colour == colour) and (shape is None or o.shape == shape)
        )


@dataclass
class Example:
    """One task example in the shared format (see `workbench.data.collate`)."""

    images: list[Image.Image]
    text: str
    label: int
    qtype: str
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ShapesConfig:
    image_size: int = 64
    grid: int = 4
    min_objects: int = 2
    max_objects: int = 6
    seed: int = 0


# ----------------------------------------------------------------------------------------------
# scenes and rendering


def _rng(split: str, index: int, seed: int, salt: int = 0) -> random.Random:
    if split not in _SPLIT_SALT:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    # Disjoint streams per split: the split name is part of the (string) seed, hashed by SHA-512.
    return random.Random(f"shapes/{seed}/{split}/{index}/{salt}")


# Train / val / test are disjoint by construction: a scene belongs to the split its layout hashes
# to (90 / 5 / 5 of 100 buckets), and each split only keeps draws from its own buckets.
_BUCKETS = {"train": range(0, 90), "val": range(90, 95), "test": range(95, 100)}


def scene_key(objects: list[Obj]) -> str:
    """Canonical description of a layout (objects and places), the identity used for disjointness."""
    return ";".join(
        f"{o.colour},{o.shape},{o.size},{o.row},{o.col}" for o in sorted(objects, key=lambda o: (o.row, o.col))
    )


def _bucket(objects: list[Obj]) -> int:
    return int.from_bytes(hashlib.sha256(scene_key(objects).encode()).digest()[:4], "big") % 100


def make_scene(split: str, index: int, cfg: ShapesConfig = ShapesConfig(), occluder: bool = False) -> Scene:
    """Scene number `index` of `split`: deterministic in (split, index, cfg.seed)."""
    for attempt in range(10_000):
        rng = _rng(split, index, cfg.seed, salt=1000 + attempt)
        n = rng.randint(cfg.min_objects, min(cfg.max_objects, len(COLOURS)))
        # every object has its own colour, so "the red circle" / "the red object" names one object
        # by a single attribute; relations then need one look-up per object (DESIGN.md §3: binding
        # two attributes per object is what a small model from scratch learns slowest)
        if split == "compositional":
            pairs = [rng.choice(HELD_OUT)]
            colours = rng.sample([c for c in COLOURS if c != pairs[0][0]], n - 1)
        else:
            pairs, colours = [], rng.sample(list(COLOURS), n)
        for c in colours:
            pairs.append((c, rng.choice([sh for sh in SHAPES if (c, sh) not in HELD_OUT])))
        cells = rng.sample([(r, c) for r in range(cfg.grid) for c in range(cfg.grid)], n + 1)
        objects = [
            Obj(shape=sh, colour=c, size=rng.choice(SIZES), row=r, col=k) for (c, sh), (r, k) in zip(pairs, cells)
        ]
        objects.sort(key=lambda o: (o.row, o.col))
        if split == "compositional" or _bucket(objects) in _BUCKETS[split]:
            return Scene(objects=objects, grid=cfg.grid, occluder=cells[n] if occluder else None, seed=index)
    raise RuntimeError("no scene found for this split")  # pragma: no cover - probability ~ 0.95**10000


def render(scene: Scene, image_size: int = 64) -> Image.Image:
    """Draw the scene: white background, one object centred in each occupied cell."""
    img = Image.new("RGB", (image_size, image_size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    cell = image_size / scene.grid
    for o in scene.objects:
        half = cell * (0.42 if o.size == "large" else 0.24)
        cx, cy = (o.col + 0.5) * cell, (o.row + 0.5) * cell
        box = (cx - half, cy - half, cx + half, cy + half)
        rgb = COLOURS[o.colour]
        if o.shape == "circle":
            draw.ellipse(box, fill=rgb)
        elif o.shape == "square":
            draw.rectangle(box, fill=rgb)
        else:
            draw.polygon([(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)], fill=rgb)
    if scene.occluder is not None:
        r, c = scene.occluder
        box = (c * cell, r * cell, (c + 1) * cell - 1, (r + 1) * cell - 1)
        draw.rectangle(box, fill=OCCLUDER_RGB)
        # A hatch marks it as a cloth, not a grey object.
        draw.line((box[0], box[1], box[2], box[3]), fill=(200, 200, 200), width=1)
        draw.line((box[0], box[3], box[2], box[1]), fill=(200, 200, 200), width=1)
    return img


# ----------------------------------------------------------------------------------------------
# VQA


def _yes(b: bool) -> str:
    return "yes" if b else "no"


def _absent_pair(scene: Scene, rng: random.Random, allowed: list[tuple[str, str]]) -> tuple[str, str]:
    present = {(o.colour, o.shape) for o in scene.objects}
    choices = [p for p in allowed if p not in present]
    return rng.choice(choices)


# Two-object questions are asked as a choice ("which is further left, the A or the B?", answer: a
# colour), not as an ordered yes/no ("is the A left of the B?"), and without mirror words ("further
# right", "lower"). Measured on a 4-layer ViLT from scratch: every single-object type, position
# included, reached 100% in 4,000 steps while the yes/no form stayed at chance (it answered "yes"
# 96% of the time), and so did the choice form with all four words. In both, what the first
# learning step would use cancels out on average: a symmetric look-up of A and B says nothing about
# an ordered question, and a pull towards the left helps "further left" exactly as much as it hurts
# "further right". "which is bigger" (no "smaller") learned to 99.5% in the same run.
_CHOICE_WORDS = {"horizontal": "further left", "vertical": "higher"}


def _relation_question(scene: Scene, rng: random.Random) -> tuple[str, str] | None:
    """ "which is further left, the A or the B?" for two objects that differ on the chosen axis."""
    if len(scene.objects) < 2:
        return None
    a, b = rng.sample(scene.objects, 2)
    axes = [ax for ax, differ in (("horizontal", a.col != b.col), ("vertical", a.row != b.row)) if differ]
    axis = rng.choice(axes)  # never empty: objects sit in distinct cells
    word = _CHOICE_WORDS[axis]
    ka, kb = (a.col, b.col) if axis == "horizontal" else (a.row, b.row)
    winner = a if ka < kb else b  # further left: smaller column; higher: smaller row
    return f"which is {word}, the {a.name} or the {b.name}?", winner.colour


def vqa_question(scene: Scene, qtype: str, rng: random.Random, focus: tuple[str, str] | None = None) -> tuple[str, str]:
    """One (question, answer) of `qtype` about `scene`; answers come from the scene graph.

    `focus` (a (colour, shape) pair in the scene) makes the question mention that object when the
    type allows it; the compositional split uses it to ask about held-out combinations.
    """
    objs = scene.objects
    target = scene.find(*focus) if focus else rng.choice(objs)
    if qtype == "attribute":
        kind = rng.choice(("size", "colour", "shape"))
        if kind == "colour" and scene.count(shape=target.shape) == 1:
            return f"what colour is the {target.shape}?", target.colour
        if kind == "shape" and scene.count(colour=target.colour) == 1:
            return f"what shape is the {target.colour} object?", target.shape
        return f"what size is the {target.name}?", target.size
    if qtype == "existence":
        if rng.random() < 0.5:  # ask about something absent (a held-out pair on the compositional split)
            allowed = list(HELD_OUT) if focus else [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in HELD_OUT]
            colour, shape = _absent_pair(scene, rng, allowed)
        else:
            colour, shape = target.colour, target.shape
        return f"is there a {colour} {shape}?", _yes(scene.find(colour, shape) is not None)
    if qtype == "counting":
        kind = rng.choice(("size", "shape", "all"))
        if kind == "size":
            size = target.size if focus or rng.random() < 0.7 else rng.choice(SIZES)
            return f"how many {size} objects are there?", str(sum(o.size == size for o in objs))
        if kind == "shape":
            s = target.shape if focus or rng.random() < 0.7 else rng.choice(SHAPES)
            return f"how many {s}s are there?", str(scene.count(shape=s))
        return "how many objects are there?", str(len(objs))
    if qtype == "position":
        if rng.random() < 0.5:
            return f"which row is the {target.name} in?", str(target.row + 1)
        return f"which column is the {target.name} in?", str(target.col + 1)
    if qtype == "relation":
        if focus is not None:
            other = rng.choice([o for o in objs if o is not target])
            return _relation_question(Scene(objects=[target, other], grid=scene.grid), rng)
        return _relation_question(scene, rng)
    if qtype == "comparison":  # symmetric in the two things compared, like the relation type
        other = rng.choice([o for o in objs if o is not target])
        kind = rng.choice(("bigger", "same size", "more"))
        if kind == "bigger" and target.size != other.size:
            first, second = (target, other) if rng.random() < 0.5 else (other, target)
            big = target if target.size == "large" else other
            return f"which is bigger, the {first.name} or the {second.name}?", big.colour
        if kind == "more":
            counts = {sh: scene.count(shape=sh) for sh in SHAPES}
            pairs = [(x, y) for x in SHAPES for y in SHAPES if x < y and counts[x] != counts[y]]
            if pairs:
                x, y = rng.choice(pairs)
                if rng.random() < 0.5:
                    x, y = y, x
                return f"which shape is more common, {x} or {y}?", x if counts[x] > counts[y] else y
        return f"are the {target.name} and the {other.name} the same size?", _yes(target.size == other.size)
    raise ValueError(f"unknown VQA question type {qtype!r}; expected one of {VQA_TYPES}")


# ----------------------------------------------------------------------------------------------
# Visual entailment: the occluder makes "neutral" principled — a hypothesis about something that
# is not visible is undecidable exactly when it could be hidden under the cloth.


def ve_hypothesis(scene: Scene, rng: random.Random, want: str) -> tuple[str, str, str] | None:
    """A (hypothesis, label, type) with label `want`, or None when this scene cannot give one."""
    hidden = 1 if scene.occluder is not None else 0
    allowed = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in HELD_OUT]
    kind = rng.choice(("existence", "counting", "relation"))
    visible_colours = {o.colour for o in scene.objects}
    if kind == "existence":
        # Colours are unique within a scene, so an absent "red circle" is impossible (contradiction)
        # when a red object is visible; it could be under the cloth (neutral) only if no red is.
        present = rng.choice(scene.objects)
        absent = [p for p in allowed if scene.find(*p) is None]
        hideable = [p for p in absent if p[0] not in visible_colours] if hidden else []
        decided = [p for p in absent if p not in hideable]
        negate = rng.random() < 0.5
        if want == "neutral":
            if not hideable:
                return None
            colour, shape = rng.choice(hideable)
            return (f"there is no {colour} {shape}." if negate else f"there is a {colour} {shape}."), want, kind
        if negate == (want == "entailment"):  # "there is no <absent>" / "there is a <absent>"
            colour, shape = rng.choice(decided)
            return (f"there is no {colour} {shape}." if negate else f"there is a {colour} {shape}."), want, kind
        return (f"there is no {present.name}." if negate else f"there is a {present.name}."), want, kind
    if kind == "counting":
        shape = rng.choice(SHAPES)
        seen = scene.count(shape=shape)
        # the cloth can hide one more object only if some colour is not visible (colours are unique)
        could_hide = int(bool(hidden) and len(visible_colours) < len(COLOURS))
        if want == "entailment" and seen >= 1:
            n = rng.randint(1, seen)
        elif want == "contradiction":
            n = seen + could_hide + 1
        elif want == "neutral" and could_hide:
            n = seen + 1
        else:
            return None
        return f"the number of {shape}s is at least {n}.", want, kind
    # relation between two visible objects: never neutral. Symmetric ("in the same row as"), for
    # the reason given at _relation_question.
    if want == "neutral":
        return None
    a, b = rng.sample(scene.objects, 2)
    axis = rng.choice(("row", "column"))
    same = a.row == b.row if axis == "row" else a.col == b.col
    if same != (want == "entailment"):
        others = [o for o in scene.objects if o is not a]
        matching = [
            o for o in others if ((o.row == a.row) if axis == "row" else (o.col == a.col)) == (want == "entailment")
        ]
        if not matching:
            return None
        b = rng.choice(matching)
    return f"the {a.name} is in the same {axis} as the {b.name}.", want, kind


# ----------------------------------------------------------------------------------------------
# NLVR: two scenes, one statement, true / false


def nlvr_statement(left: Scene, right: Scene, rng: random.Random) -> tuple[str, bool, str]:
    kind = rng.choice(("both", "exactly one", "more"))
    colour = rng.choice(list(COLOURS))
    shape = rng.choice(SHAPES)
    if kind == "both":
        a = left.count(colour=colour) > 0
        b = right.count(colour=colour) > 0
        return f"both images contain a {colour} object.", a and b, kind
    if kind == "exactly one":
        a = left.count(shape=shape) > 0
        b = right.count(shape=shape) > 0
        return f"exactly one image contains a {shape}.", a != b, kind
    return (
        f"the left image contains more {shape}s than the right image.",
        left.count(shape=shape) > right.count(shape=shape),
        kind,
    )


# ----------------------------------------------------------------------------------------------
# Retrieval: a caption that names every object with its place, so it is unique to the scene


def perturb(scene: Scene, kind: str, rng: random.Random) -> Scene:
    """The scene with one object's colour, shape or cell changed (a hard negative for matching)."""
    objs = list(scene.objects)
    k = rng.randrange(len(objs))
    o = objs[k]
    if kind == "colour swap":
        unused = [c for c in COLOURS if c not in {x.colour for x in objs}]
        new = (
            Obj(o.shape, rng.choice(unused), o.size, o.row, o.col)
            if unused
            else Obj(o.shape, o.colour, o.size, o.row, o.col)
        )
        if not unused:  # all six colours used: exchange two objects' colours instead
            j = (k + 1) % len(objs)
            objs[j] = Obj(objs[j].shape, o.colour, objs[j].size, objs[j].row, objs[j].col)
            new = Obj(o.shape, scene.objects[j].colour, o.size, o.row, o.col)
    elif kind == "shape swap":
        new = Obj(rng.choice([s for s in SHAPES if s != o.shape]), o.colour, o.size, o.row, o.col)
    elif kind == "position swap":
        free = [
            (r, c) for r in range(scene.grid) for c in range(scene.grid) if (r, c) not in {(x.row, x.col) for x in objs}
        ]
        r, c = rng.choice(free)
        new = Obj(o.shape, o.colour, o.size, r, c)
    else:
        raise ValueError(f"unknown perturbation {kind!r}")
    objs[k] = new
    objs.sort(key=lambda x: (x.row, x.col))
    return Scene(objects=objs, grid=scene.grid, occluder=scene.occluder, seed=scene.seed)


def partial_scene(scene: Scene, donors: list[Scene], rng: random.Random) -> Scene:
    """The scene with a random non-empty, proper subset of its objects replaced by objects of a donor scene
    (in free cells); a caption of it differs from the scene's in objects anywhere in the sentence."""
    objs = list(scene.objects)
    kept = rng.sample(objs, rng.randint(1, len(objs) - 1)) if len(objs) > 1 else []
    for donor in donors:
        used = {(o.row, o.col) for o in kept}
        fill = [o for o in donor.objects if (o.row, o.col) not in used and o not in objs]
        new = kept + fill[: len(objs) - len(kept)]
        new.sort(key=lambda x: (x.row, x.col))
        if fill and caption(Scene(new, scene.grid)) != caption(scene):
            return Scene(objects=new, grid=scene.grid, occluder=scene.occluder, seed=scene.seed)
    raise RuntimeError("no donor scene differs from the scene")  # pragma: no cover (3 random scenes)


_ROW_WORDS = ("top", "upper middle", "lower middle", "bottom")
_COL_WORDS = ("left", "centre left", "centre right", "right")


def caption(scene: Scene) -> str:
    parts = []
    for o in scene.objects:
        where = f"{_ROW_WORDS[o.row]} {_COL_WORDS[o.col]}" if scene.grid == 4 else f"row {o.row + 1} column {o.col + 1}"
        parts.append(f"a {o.size} {o.colour} {o.shape} at {where}")
    return ", ".join(parts) + "."


# ----------------------------------------------------------------------------------------------
# Datasets: example i of a split is a fresh scene draw (a layout can repeat by chance within a
# split, never across splits), with a question type that cycles so every type is equally
# frequent. Retrieval galleries are de-duplicated so every caption names exactly one image.


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
                    rng = _rng(self.split, j, self.cfg.seed, salt=11)
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
        rng = _rng(self.split, i, self.cfg.seed, salt=7)
        size = self.cfg.image_size
        if self.task == "vqa":
            scene = self.scene(i)
            qtype = VQA_TYPES[i % len(VQA_TYPES)]
            focus = None
            if self.split == "compositional":
                focus = next((o.colour, o.shape) for o in scene.objects if (o.colour, o.shape) in HELD_OUT)
            text, answer = vqa_question(scene, qtype, rng, focus)
            return Example([render(scene, size)], text, self.labels.index(answer), qtype, {"scene": scene})
        if self.task == "ve":
            want = VE_LABELS[i % 3]
            for attempt in range(100):
                scene = self.scene(i, occluder=rng.random() < 0.5 or want == "neutral", salt=attempt)
                out = ve_hypothesis(scene, rng, want)
                if out is not None:
                    text, label, kind = out
                    return Example([render(scene, size)], text, VE_LABELS.index(label), kind, {"scene": scene})
            raise RuntimeError(f"could not make a {want} hypothesis for example {i}")  # pragma: no cover
        if self.task == "itm":
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
            return Example([render(scene, size)], text, int(kind == "match"), kind, {"scene": scene})
        if self.task == "nlvr":
            want = bool(i % 2)
            for attempt in range(100):
                left, right = self.scene(i, salt=0), make_scene(self.split, i * 4 + 1 + attempt * 10_000_000, self.cfg)
                text, truth, kind = nlvr_statement(left, right, rng)
                if truth == want:
                    images = [render(left, size), render(right, size)]
                    return Example(images, text, int(truth), kind, {"scenes": (left, right)})
            raise RuntimeError(f"could not make a {want} statement for example {i}")  # pragma: no cover
        scene = self.gallery()[i]
        return Example([render(scene, size)], caption(scene), i, "caption", {"scene": scene})
