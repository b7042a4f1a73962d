"""Captions that name every object of a scene with its place (unique to the scene), and the changed scenes
whose captions are the hard negatives of image-text matching and retrieval."""

from __future__ import annotations

import random

from workbench.data.shapes.scenes import COLOURS, SHAPES, Obj, Scene, in_split

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


def perturbations(scene: Scene, kind: str) -> list[Scene]:
    """Every scene `perturb(scene, kind, ...)` can make (and, for a colour swap with all six colours used, any two
    objects' colours exchanged, not only neighbours'), in a fixed order: each object with each unused colour,
    each other shape, each free cell."""
    objs = scene.objects
    unused = [c for c in COLOURS if c not in {o.colour for o in objs}]
    free = [
        (r, c) for r in range(scene.grid) for c in range(scene.grid) if (r, c) not in {(o.row, o.col) for o in objs}
    ]
    changes: list[dict[int, Obj]] = []  # {object index: its replacement}
    for k, o in enumerate(objs):
        if kind == "colour swap" and unused:
            changes += [{k: Obj(o.shape, c, o.size, o.row, o.col)} for c in unused]
        elif kind == "colour swap":
            for j in range(k + 1, len(objs)):
                p = objs[j]
                changes.append(
                    {k: Obj(o.shape, p.colour, o.size, o.row, o.col), j: Obj(p.shape, o.colour, p.size, p.row, p.col)}
                )
        elif kind == "shape swap":
            changes += [{k: Obj(sh, o.colour, o.size, o.row, o.col)} for sh in SHAPES if sh != o.shape]
        elif kind == "position swap":
            changes += [{k: Obj(o.shape, o.colour, o.size, r, c)} for r, c in free]
        else:
            raise ValueError(f"unknown perturbation {kind!r}")
    out = []
    for change in changes:
        new = sorted((change.get(n, o) for n, o in enumerate(objs)), key=lambda x: (x.row, x.col))
        out.append(Scene(objects=new, grid=scene.grid, occluder=scene.occluder, seed=scene.seed))
    return out


def perturb_in_split(scene: Scene, kind: str, rng: random.Random, split: str, spare: random.Random) -> Scene | None:
    """`perturb` kept inside `split` (`in_split`): its own draw when that belongs to the split (so such a draw, and
    `rng` afterwards, are what `perturb` gives), else one of `perturbations` that does, drawn with `spare`; None
    when none does (a held-out pair or another split's bucket is one word away from every change)."""
    drawn = perturb(scene, kind, rng)
    if in_split(drawn.objects, split):
        return drawn
    inside = [s for s in perturbations(scene, kind) if in_split(s.objects, split)]
    return spare.choice(inside) if inside else None


def partial_scene(scene: Scene, donors: list[Scene], rng: random.Random, split: str | None = None) -> Scene | None:
    """The scene with a random non-empty, proper subset of its objects replaced by objects of a donor scene
    (in free cells); a caption of it differs from the scene's in objects anywhere in the sentence. With `split`,
    only a result inside the split (`in_split`) counts: up to 20 subsets are drawn, then None."""
    objs = list(scene.objects)
    for _ in range(1 if split is None else 20):
        kept = rng.sample(objs, rng.randint(1, len(objs) - 1)) if len(objs) > 1 else []
        for donor in donors:
            used = {(o.row, o.col) for o in kept}
            fill = [o for o in donor.objects if (o.row, o.col) not in used and o not in objs]
            new = kept + fill[: len(objs) - len(kept)]
            new.sort(key=lambda x: (x.row, x.col))
            if fill and caption(Scene(new, scene.grid)) != caption(scene) and (split is None or in_split(new, split)):
                return Scene(objects=new, grid=scene.grid, occluder=scene.occluder, seed=scene.seed)
    if split is not None:
        return None
    raise RuntimeError("no donor scene differs from the scene")  # pragma: no cover (3 random scenes)


_ROW_WORDS = ("top", "upper middle", "lower middle", "bottom")
_COL_WORDS = ("left", "centre left", "centre right", "right")


def caption(scene: Scene) -> str:
    parts = []
    for o in scene.objects:
        where = f"{_ROW_WORDS[o.row]} {_COL_WORDS[o.col]}" if scene.grid == 4 else f"row {o.row + 1} column {o.col + 1}"
        parts.append(f"a {o.size} {o.colour} {o.shape} at {where}")
    return ", ".join(parts) + "."
