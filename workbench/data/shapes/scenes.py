"""Scenes of the `shapes` world: objects on a grid, generated deterministically per split, and drawn.

Scenes are deterministic functions of (split, index, seed). Objects sit on a G x G grid whose
cells coincide with the model's image patches (64 px image, 4 x 4 grid, 16 px patches by
default): one object per patch makes training fast and attention maps crisp.

Within a scene every object has its own colour, so "the red circle" always names at most one
object, found by one attribute.

Splits are disjoint by construction: a layout belongs to the split its hash falls in (`in_split`).
The `compositional` split holds out some (colour, shape) combinations: the train / val / test
scenes never contain them, every compositional scene contains at least one. The same rule holds
for every changed scene a split shows or names (hard negatives, retrieval variants), so no image
or caption of one split is an image or caption of another.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

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


@dataclass(frozen=True)
class ShapesConfig:
    image_size: int = 64
    grid: int = 4
    min_objects: int = 2
    max_objects: int = 6
    seed: int = 0


def scene_rng(split: str, index: int, seed: int, salt: int = 0) -> random.Random:
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
    return _key_bucket(scene_key(objects))


def _key_bucket(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % 100


def in_split(objects: list[Obj], split: str) -> bool:
    """Whether a layout belongs to `split`: a compositional layout holds a held-out (colour, shape) pair; a train /
    val / test one holds none and hashes to one of the split's buckets. Every scene a split shows as an image or
    names in a caption (its scenes, and the changed scenes of hard negatives and retrieval variants) passes this."""
    if split not in _SPLIT_SALT:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    held = any((o.colour, o.shape) in HELD_OUT for o in objects)
    return held if split == "compositional" else not held and _bucket(objects) in _BUCKETS[split]


_SHAPES_OF = {c: [sh for sh in SHAPES if (c, sh) not in HELD_OUT] for c in COLOURS}  # the shapes a colour may take


def make_scene(split: str, index: int, cfg: ShapesConfig = ShapesConfig(), occluder: bool = False) -> Scene:
    """Scene number `index` of `split`: deterministic in (split, index, cfg.seed). Draws until the layout belongs
    to the split (`in_split`; on val / test one draw in 20), so the loop is kept lean: objects are made once."""
    if split not in _SPLIT_SALT:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    all_cells = [(r, c) for r in range(cfg.grid) for c in range(cfg.grid)]
    for attempt in range(10_000):
        rng = scene_rng(split, index, cfg.seed, salt=1000 + attempt)
        n = rng.randint(cfg.min_objects, min(cfg.max_objects, len(COLOURS)))
        # every object has its own colour, so "the red circle" / "the red object" names one object
        # by a single attribute; relations then need one look-up per object (binding
        # two attributes per object is what a small model from scratch learns slowest)
        if split == "compositional":
            pairs = [rng.choice(HELD_OUT)]
            colours = rng.sample([c for c in COLOURS if c != pairs[0][0]], n - 1)
        else:
            pairs, colours = [], rng.sample(list(COLOURS), n)
        pairs += [(c, rng.choice(_SHAPES_OF[c])) for c in colours]
        cells = rng.sample(all_cells, n + 1)
        # (row, col, colour, shape, size) in reading order: what `scene_key` joins
        drawn = sorted((r, k, c, sh, rng.choice(SIZES)) for (c, sh), (r, k) in zip(pairs, cells))
        # a train / val / test draw never holds a held-out pair, a compositional one always does (its first)
        if (
            split == "compositional"
            or _key_bucket(";".join(f"{c},{sh},{size},{r},{k}" for r, k, c, sh, size in drawn)) in _BUCKETS[split]
        ):
            objects = [Obj(shape=sh, colour=c, size=size, row=r, col=k) for r, k, c, sh, size in drawn]
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
