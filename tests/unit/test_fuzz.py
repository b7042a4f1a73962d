"""Property-based tests (hypothesis): the public API takes any image and any text without crashing.

Every input either works (a well-formed answer / finite maps) or raises one of our own clear errors
(`workbench.errors.WorkbenchError`); any other exception is a bug. Images: numpy arrays of every dtype,
shape and size (1x1, very thin, up to 1200 px, NaN / inf, 16-bit, bool, complex, strings...), PIL images
of every mode (palette, RGBA, CMYK, LAB, HSV, I;16, F...), image files in ten formats, damaged or cut
short, and things that are not images at all. Text: any unicode (lone surrogates, control characters,
combining marks, emoji), of any length, and things that are not text. Huge images and decompression
bombs are checked separately for bounded memory.

Run with `--hypothesis-show-statistics` to see how often each outcome (answer / error message) came up,
and with WORKBENCH_FUZZ_SCALE=10 for ten times as many examples.
"""

from __future__ import annotations

import io
import os
import re
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from workbench.api import ask, ask_cached, load_model
from workbench.errors import CheckpointError, InputError, WorkbenchError
from workbench.inputs import MAX_IMAGE_PIXELS, check_question, read_image
from workbench.models import create_model
from workbench.models.io import save_checkpoint

LABELS = ["yes", "no", "red", "blue", "1", "2"]
SCALE = int(os.environ.get("WORKBENCH_FUZZ_SCALE", "1"))  # e.g. 10 for a longer campaign (docs/reliability.md)
FUZZ = settings(
    deadline=None,
    database=None,  # no .hypothesis/ folder in the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ------------------------------------------------------------------------------------ inputs

REAL_DTYPES = ["uint8", "int8", "uint16", "int16", "int32", "int64", "uint64", "float16", "float32", "float64", "bool"]
ODD_DTYPES = ["complex64", "object", "U3", "datetime64[s]"]
# mostly small, some 1-pixel / thin, some large (bounded: the fuzz must stay fast)
sides = st.one_of(st.integers(1, 40), st.integers(1, 3), st.integers(300, 1200))


def _specials(draw, arr: np.ndarray, rng) -> np.ndarray:
    kind = draw(st.sampled_from(["none", "nan", "inf", "-inf", "all-nan", "mixed"]))
    if kind == "none":
        return arr
    if kind == "all-nan":
        return np.full_like(arr, np.nan)
    values = {"nan": [np.nan], "inf": [np.inf], "-inf": [-np.inf], "mixed": [np.nan, np.inf, -np.inf]}[kind]
    mask = rng.random(arr.shape) < draw(st.sampled_from([0.01, 0.5, 1.0]))
    return np.where(mask, rng.choice(np.asarray(values, dtype=arr.dtype), size=arr.shape), arr)


@st.composite
def arrays(draw, valid: bool = False) -> np.ndarray:
    """Any array; with `valid`, only shapes and dtypes an image can have (the values are still anything)."""
    shape = (draw(sides), draw(sides))
    channels = draw(st.sampled_from([None, 1, 3, 4] if valid else [None, None, 1, 2, 3, 3, 4, 5]))
    shape = shape if channels is None else (*shape, channels)
    dtype = np.dtype(draw(st.sampled_from(REAL_DTYPES if valid else REAL_DTYPES + ODD_DTYPES)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        lo, hi = draw(st.sampled_from([(info.min, info.max), (0, 1), (0, 255), (-5, 5)]))
        return rng.integers(max(lo, info.min), min(hi, info.max), size=shape, dtype=dtype, endpoint=True)
    if dtype.kind == "f":
        scale = draw(st.sampled_from([1.0, 255.0, 65535.0, 1e30, float(np.finfo(dtype).max)]))
        with np.errstate(over="ignore"):
            arr = (rng.random(shape) * scale * draw(st.sampled_from([1, -1]))).astype(dtype)
        return _specials(draw, arr, rng)
    if dtype.kind == "b":
        return rng.random(shape) > 0.5
    return np.zeros(shape, dtype=dtype)


MODES = ["1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "F", "I;16", "I;16B", "I;16L", "I;16N",
         "LA", "PA", "RGBX", "RGBa", "La"]  # fmt: skip


@st.composite
def pil_images(draw, modes=MODES, max_side: int | None = None) -> Image.Image:
    mode = draw(st.sampled_from(modes))
    w, h = draw(sides), draw(sides)
    if max_side:
        w, h = min(w, max_side), min(h, max_side)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = len(Image.new(mode, (w, h)).tobytes())
    image = Image.frombytes(mode, (w, h), rng.integers(0, 256, n, dtype=np.uint8).tobytes())
    if mode == "P":
        image.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tobytes())
        if draw(st.booleans()):
            image.info["transparency"] = draw(st.integers(0, 255))
    if mode == "F" and w and h and draw(st.booleans()):
        image.putpixel((0, 0), draw(st.sampled_from([float("nan"), float("inf"), float("-inf")])))
    return image


SAVEABLE = {
    "PNG": ["1", "L", "P", "RGB", "RGBA", "I", "I;16", "LA"],
    "TIFF": ["1", "L", "P", "RGB", "RGBA", "CMYK", "I", "F", "I;16", "LA", "PA"],
    "BMP": ["1", "L", "P", "RGB"],
    "GIF": ["L", "P", "RGB"],
    "JPEG": ["L", "RGB", "CMYK"],
    "WEBP": ["RGB", "RGBA"],
    "ICO": ["RGB", "RGBA"],
    "PPM": ["1", "L", "RGB", "I;16"],
    "TGA": ["L", "P", "RGB", "RGBA"],
    "PCX": ["1", "L", "P", "RGB"],
}


@st.composite
def image_files(draw) -> bytes:
    """The bytes of an image file in a random format, possibly cut short or with flipped bytes."""
    fmt = draw(st.sampled_from(sorted(SAVEABLE)))
    image = draw(pil_images(SAVEABLE[fmt], max_side=64))
    buf = io.BytesIO()
    image.save(buf, fmt)
    data = bytearray(buf.getvalue())
    damage = draw(st.sampled_from(["none", "none", "truncate", "flip", "garbage"]))
    if damage == "truncate":
        data = data[: draw(st.integers(0, max(0, len(data) - 1)))]
    elif damage == "flip":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
    elif damage == "garbage":
        data = bytearray(draw(st.binary(max_size=200)))
    return bytes(data)


not_images = st.one_of(st.none(), st.integers(), st.floats(), st.text("ab./", max_size=8), st.binary(max_size=20),
                       st.lists(st.integers(0, 255), max_size=10), st.just(Path("/nonexistent/x.png")),
                       st.just(Path("/")))  # fmt: skip
empty = st.sampled_from(
    [np.zeros((0, 5)), np.zeros((4, 0, 3), np.float32), Image.new("RGB", (0, 4)), Image.new("P", (3, 0))]
)
images = st.one_of(arrays(), pil_images(), image_files(), not_images, empty)
# for the model calls: mostly inputs that are images, so the models see many odd ones
mostly_images = st.one_of(arrays(), arrays(), pil_images(), pil_images(), image_files(), not_images, empty)

# any unicode (incl. lone surrogates, controls, combining marks, emoji), short and very long, and non-text
any_chars = st.characters(codec=None, categories=None, exclude_categories=())
text_questions = st.one_of(
    st.text(st.characters(codec="ascii"), min_size=1, max_size=120),
    st.text(min_size=1, max_size=80),
    st.text(any_chars, min_size=1, max_size=400),
    st.text(st.characters(categories=["Cs", "Cc", "Cf", "Mn", "So", "Zs", "Zl"]), min_size=1, max_size=60),
    st.just("is there a red circle?"),
)
questions = st.one_of(
    text_questions,
    st.text(max_size=5),
    st.text(any_chars, min_size=250, max_size=5000),
    st.none(),
    st.binary(max_size=30),
    st.integers(),
)


def _materialise(image, folder: Path):
    """Image-file bytes become a file on disk (the API takes paths)."""
    if isinstance(image, bytes):
        path = folder / "input.img"
        path.write_bytes(image)
        return path
    return image


def _outcome(e: Exception | None) -> str:
    """A short name for hypothesis' statistics: the error message without its numbers and paths."""
    return "ok" if e is None else f"{type(e).__name__}: " + re.sub(r"(/\S+)|\d+", "#", str(e))[:60]


# ------------------------------------------------------------------------------------ models


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from threads; on a loaded machine two threads make each call far slower."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def models(tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp("fuzz")
    out = {}
    for kind in ("fusion", "dual"):
        m = create_model(kind, len(tokenizer), len(LABELS), hidden_size=32, num_layers=1, num_heads=2)
        save_checkpoint(m, tokenizer, folder / kind, {"task": "vqa", "labels": LABELS})
        out[kind] = load_model(folder / kind, device="cpu")
    return out


# ------------------------------------------------------------------------------------ properties


@settings(FUZZ, max_examples=300 * SCALE)
@given(image=images)
def test_read_image_takes_anything(image):
    with tempfile.TemporaryDirectory() as tmp:
        try:
            out = read_image(_materialise(image, Path(tmp)))
        except WorkbenchError as e:
            event(_outcome(e))
            return
    event("ok")
    assert out.mode == "RGB" and out.width >= 1 and out.height >= 1
    assert out.width * out.height <= MAX_IMAGE_PIXELS


@settings(FUZZ, max_examples=300 * SCALE)
@given(question=questions)
def test_check_question_takes_anything(question):
    try:
        out = check_question(question)
    except InputError as e:
        event(_outcome(e))
        return
    event("ok")
    assert isinstance(out, str) and out and out == out.strip() and len(out) <= 300


def _check_answer(out: dict, labels=LABELS) -> None:
    assert out["answer"] in labels and 0 < out["confidence"] <= 1
    probs = [p for _, p in out["top"]]
    assert all(np.isfinite(probs)) and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-5


@settings(FUZZ, max_examples=150 * SCALE)
@given(
    image=mostly_images,
    question=st.one_of(text_questions, questions),
    kind=st.sampled_from(["fusion", "dual"]),
    cached=st.booleans(),
)
@example(image=np.zeros((8, 8, 3), np.uint8), question="a\ud800b", kind="fusion", cached=False)  # found by this test
@example(image=np.zeros((8, 8, 3), np.uint8), question="\udfff", kind="dual", cached=True)
def test_ask_takes_anything(models, image, question, kind, cached):
    with tempfile.TemporaryDirectory() as tmp:
        try:
            out = (ask_cached if cached else ask)(models[kind], _materialise(image, Path(tmp)), question)
        except WorkbenchError as e:
            event(_outcome(e))
            return
    event("ok")
    _check_answer(out)


@settings(FUZZ, max_examples=40 * SCALE)
@given(
    image=st.one_of(arrays(valid=True), pil_images()),
    question=text_questions,
    kind=st.sampled_from(["fusion", "dual"]),
)
@example(image=np.zeros((8, 8, 3), np.uint8), question="red \ud83d?", kind="fusion")  # a lone surrogate
def test_explain_maps_take_anything(models, image, question, kind):
    from workbench.explain import encode, explain
    from workbench.explain.grid import grid_of

    ck = models[kind]
    try:
        batch = encode(ck.model, ck.tokenizer, image, question)
    except WorkbenchError as e:
        event(_outcome(e))
        return
    event("ok")
    result = explain(ck.model, batch, ck.tokenizer, ig_steps=4)
    grid = grid_of(ck.model)
    assert set(result) == {"attention", "rollout", "relevancy", "ig"}
    for method, r in result.items():
        m = np.asarray(r["image"])
        assert m.shape == grid and np.isfinite(m).all(), method


def test_bench_takes_only_checkpoints(tmp_path, models):
    """The benchmark's user input is two checkpoint folders: anything else is a CheckpointError."""
    from workbench.bench import benchmark_pair

    (tmp_path / "file").write_text("x")
    dual, fusion = models["dual"].path, models["fusion"].path
    for teacher, student in [(tmp_path / "missing", dual), (tmp_path / "file", dual), (dual, dual), (fusion, tmp_path)]:
        with pytest.raises(CheckpointError):
            benchmark_pair(teacher, student, batch_sizes=(1,), retrieval_sizes=(), min_run_time=0.01)


# ------------------------------------------------------------------------------------ huge inputs


def _traced_peak_mb(fn) -> float:
    """Peak memory allocated through Python's allocators during `fn` above what was allocated before it
    (tracemalloc: Python objects and numpy arrays, whose buffers numpy reports to it; PIL's and torch's own
    buffers are not seen). It counts allocations, not resident pages, so the figure is the same on every run and
    with any malloc: no allocator or page-reuse behaviour can move it (resident-set peaks can)."""
    import gc
    import tracemalloc

    gc.collect()
    started = tracemalloc.is_tracing()
    if not started:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        fn()
        return (tracemalloc.get_traced_memory()[1] - before) / 2**20
    finally:
        if not started:
            tracemalloc.stop()


HUGE = 4000
huge_inputs = {
    "uint8 RGB array": lambda: np.random.default_rng(0).integers(0, 256, (HUGE, HUGE, 3), dtype=np.uint8),
    "float32 RGB array with NaN": lambda: np.where(
        np.eye(HUGE, dtype=bool)[..., None], np.float32(np.nan), np.full((HUGE, HUGE, 3), 0.5, np.float32)
    ),  # fmt: skip
    "float64 RGBA array": lambda: np.full((HUGE, HUGE, 4), 0.25),
    "16-bit PIL image": lambda: Image.new("I;16", (HUGE, HUGE), 1000),
    "float PIL image": lambda: Image.new("F", (HUGE, HUGE), 0.5),
    "RGBA PIL image": lambda: Image.new("RGBA", (HUGE, HUGE), (1, 2, 3, 4)),
}
# The 4000x4000 inputs are 45-490 MB themselves. Measured (tracemalloc): at most 122 MB allocated while answering
# (a float PIL image read as a float32 array); converting a whole float input to float64 first, as before the
# subsampling fix, allocates at least 4000 x 4000 x 3 x 8 bytes = 366 MB.
MAX_EXTRA_MB = 250


@pytest.mark.parametrize("name", list(huge_inputs))
def test_huge_images_are_answered_allocating_a_bounded_amount(models, name):
    image = huge_inputs[name]()
    out = {}
    extra = _traced_peak_mb(lambda: out.update(ask(models["fusion"], image, "how many circles are there?")))
    _check_answer(out)
    assert extra < MAX_EXTRA_MB, f"{name}: {extra:.0f} MB allocated above the input"


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG file that claims to be width x height (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [9000, 30000, 100000])
def test_decompression_bombs_are_refused_before_decoding(tmp_path, side):
    """9000^2 is over our limit (8192^2) but under PIL's own; 30000^2 and 100000^2 are over both."""
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(side, side))
    with pytest.raises(InputError, match="too large"):
        read_image(path)
    # refused from the header: no pixel is decoded (decoded, the smallest would take 81 MB)
    from PIL import ImageFile

    def never_decode(*args, **kwargs):
        raise AssertionError("the bomb was decoded")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ImageFile.ImageFile, "load", never_decode)
        patch.setattr(Image.Image, "load", never_decode)
        with pytest.raises(InputError, match="too large"):
            read_image(path)


# ------------------------------------------------------------------------------------ checkpoint files

# JSON values of every type; integers stay small (or absurd) so no fuzzed model size can fill the memory
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 70)
    | st.just(10**15)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
FIELDS = {
    "workbench.json": ["kind", "task", "labels", "num_images", "image_size", "format_version", "dataset"],
    "config.json": [
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "image_size",
        "patch_size",
        "vocab_size",
        "max_position_embeddings",
        "model_type",
        "id2label",
        "vision",
        "text",
        "embed_dim",
        "intermediate_size",
        "layer_norm_eps",
        "hidden_act",
    ],  # fmt: skip
    "tokenizer_config.json": [
        "tokenizer_class",
        "auto_map",
        "model_max_length",
        "do_lower_case",
        "added_tokens_decoder",
    ],
}


@settings(FUZZ, max_examples=60 * SCALE)
@given(
    kind=st.sampled_from(["fusion", "dual"]),
    file=st.sampled_from(sorted(FIELDS)),
    data=st.data(),
)
def test_load_checkpoint_takes_any_json_fields(models, kind, file, data):
    """A checkpoint folder whose JSON files hold anything in any field loads or raises CheckpointError."""
    import json
    import shutil

    from workbench.models.io import load_checkpoint

    key = data.draw(st.sampled_from(FIELDS[file]))
    value = data.draw(st.one_of(st.just("<drop>"), json_values))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ck"
        shutil.copytree(models[kind].path, folder)
        content = json.loads((folder / file).read_text())
        if value == "<drop>":
            content.pop(key, None)
        else:
            content[key] = value
        (folder / file).write_text(json.dumps(content))
        try:
            ck = load_checkpoint(folder)
        except CheckpointError as e:
            event(_outcome(e))
            return
    event("ok")
    if ck.labels:  # a folder that loads is a working model
        _check_answer(ask(ck, np.zeros((9, 7, 3), np.uint8), "is there a red circle?"), ck.labels)
