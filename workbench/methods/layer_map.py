"""Which teacher layer's cross-modal attention each student layer learns (DiDE's layer pairing), explicit and
checked before a run starts.

A pairing is a tuple of (teacher layer, text-tower layer, image-tower layer). It is given either as

- `layer_map`: entries "T:S" (teacher layer T into student layer S of both towers) or "T:X:I" (teacher layer T
  into text-tower layer X and image-tower layer I), or the same as tuples of ints; or
- `layers` (when `layer_map` is empty): the i-th chosen layer of each model, counted per model, so `(-1,)`
  pairs the teacher's last layer with each tower's last (a one-layer text tower's layer 0 with the image
  tower's last) and `(0, 1, 2, 3)` pairs equal indices.

Negative indices count from each model's end (-1: its last layer). A layer beyond a model's depth, a malformed
entry, or two teacher layers distilled into the same student layers is a `LayerMapError` naming what exists:
nothing is silently dropped (before, `--layers 0 1 2 3` with a one-layer text tower distilled teacher layer 0
only).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from workbench.errors import WorkbenchError

Pair = tuple[int, int, int]  # (teacher layer, text-tower layer, image-tower layer), each counted from 0


class LayerMapError(WorkbenchError, ValueError):
    """An impossible or ambiguous teacher -> student layer pairing."""


def parse_entry(entry) -> tuple[int, ...]:
    """ "3:0" -> (3, 0); "3:0:3" -> (3, 0, 3); a tuple / list of 2 or 3 ints is kept as ints."""
    if isinstance(entry, str):
        parts = entry.split(":")
        try:
            values = tuple(int(p) for p in parts)
        except ValueError:
            values = ()
    elif isinstance(entry, Sequence) and all(isinstance(v, int) and not isinstance(v, bool) for v in entry):
        values = tuple(entry)
    else:
        values = ()
    if len(values) not in (2, 3):
        raise LayerMapError(
            f"layer map entry {entry!r}: expected TEACHER:STUDENT (both towers) or TEACHER:TEXT:IMAGE, "
            "layer indices as integers (negative: from the end), e.g. 3:0 or -1:0:-1"
        )
    return values


def _index(layer: int, depth: int, what: str, entry) -> int:
    if not -depth <= layer < depth:
        valid = "0, or -1" if depth == 1 else f"0..{depth - 1}, or -{depth}..-1"
        raise LayerMapError(
            f"layer map entry {entry!r}: {what} layer {layer} does not exist; it has {depth} layer"
            f"{'s' if depth != 1 else ''} ({valid})"
        )
    return layer % depth


def resolve(
    layer_map: Iterable = (),
    layers: Sequence[int] = (-1,),
    *,
    teacher_depth: int,
    text_depth: int,
    image_depth: int,
) -> tuple[Pair, ...]:
    """The validated pairing, each index counted from 0, in the order given. Raises `LayerMapError`."""
    entries = tuple(layer_map or ())
    if entries and tuple(layers) != (-1,):
        raise LayerMapError(
            f"both layers {tuple(layers)} and layer_map {entries} are given: give one (layer_map names every pair)"
        )
    if entries:
        given = [(e, parse_entry(e)) for e in entries]
    else:
        if not layers:
            raise LayerMapError("no distilled layers: give at least one layer (e.g. -1, each model's last)")
        given = [(f"layers {tuple(layers)}", (layer, layer, layer)) for layer in layers]
    pairs: list[Pair] = []
    for entry, values in given:
        teacher, text, image = values if len(values) == 3 else (values[0], values[1], values[1])
        pairs.append(
            (
                _index(teacher, teacher_depth, "teacher", entry),
                _index(text, text_depth, "student text-tower", entry),
                _index(image, image_depth, "student image-tower", entry),
            )
        )
    _check_unique(pairs)
    return tuple(pairs)


def _check_unique(pairs: list[Pair]) -> None:
    """Each student (text, image) layer pair learns from one teacher layer: two targets for the same virtual
    attention map would pull it towards their average, which is neither teacher layer."""
    seen: dict[tuple[int, int], int] = {}
    for teacher, text, image in pairs:
        if (text, image) in seen:
            raise LayerMapError(
                f"student layers (text {text}, image {image}) are paired twice (teacher layers {seen[text, image]} "
                f"and {teacher}): each student layer pair learns from one teacher layer"
            )
        seen[text, image] = teacher


def depths(teacher, student_size: dict) -> dict[str, int]:
    """{"teacher_depth", "text_depth", "image_depth"} of a fusion teacher (a model) and a dual student's size
    (`TrainConfig.size`: `num_layers`, optionally `text_layers` / `image_layers`)."""
    n = student_size.get("num_layers") or teacher.config.num_hidden_layers
    return {
        "teacher_depth": teacher.config.num_hidden_layers,
        "text_depth": student_size.get("text_layers") or n,
        "image_depth": student_size.get("image_layers") or n,
    }


def model_depths(teacher, student) -> dict[str, int]:
    """The same, read off a built teacher and dual student."""
    return {
        "teacher_depth": teacher.config.num_hidden_layers,
        "text_depth": student.text_config.num_hidden_layers,
        "image_depth": student.vision_config.num_hidden_layers,
    }
