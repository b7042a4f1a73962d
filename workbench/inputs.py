"""User input, checked once for every face (the Python API, the explainers, the app, the CLI): questions and
images in, clean values or a clear `InputError` out.

* `check_question(text)`: the text with its whitespace collapsed; refused when it is not text, empty, longer
  than MAX_QUESTION_CHARS or not valid unicode.
* `read_image(image)`: any PIL image, numpy array or file path -> an RGB PIL image; refused when it is not
  one of those, empty, larger than MAX_IMAGE_PIXELS (checked from a file's header, before decoding), or
  does not decode. 16-bit, float and transparent images are converted (transparency onto white).
* `read_images(image, second_image)`: the one or two images of a question.

Torch-free, so a face can validate before loading a model.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from workbench.errors import InputError

MAX_QUESTION_CHARS = 300
MAX_IMAGE_PIXELS = 8192 * 8192  # decompression-bomb guard; larger images are refused, not resized
MAX_ARRAY_SIDE = 1024  # non-8-bit arrays are subsampled to this before conversion, so memory stays bounded


def check_question(question, what: str = "question") -> str:
    """The text with its whitespace collapsed; a clear `InputError` when it is not text, empty, longer than
    MAX_QUESTION_CHARS or not valid unicode. `what` names it in the messages (e.g. "query")."""
    if not isinstance(question, str):
        raise InputError(f"the {what} must be text, got {type(question).__name__}")
    question = " ".join(question.split())
    if not question:
        raise InputError(f"the {what} is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise InputError(f"the {what} has {len(question)} characters; the limit is {MAX_QUESTION_CHARS}")
    try:
        question.encode("utf-8")
    except UnicodeEncodeError as e:  # the tokenizer cannot take it (a string decoded with errors="surrogateescape"?)
        raise InputError(f"the {what} is not valid unicode: character {e.start + 1} is a lone surrogate") from e
    return question


def read_image(image) -> Image.Image:
    """Any PIL image, numpy array or file path -> RGB PIL image; clear `InputError` otherwise."""
    if isinstance(image, (str, Path)):
        image = _open_image(image)
    elif isinstance(image, np.ndarray):
        image = array_to_image(image)
    if not isinstance(image, Image.Image):
        raise InputError(f"expected an image (PIL image, array or file path), got {type(image).__name__}")
    _check_size(image.width, image.height)
    try:
        if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):  # 16-bit / float greyscale: to 8 bit
            image = Image.fromarray(_to_uint8(np.asarray(image), stretch=True))
        if image.mode == "La":  # premultiplied alpha: PIL converts it to LA only
            image = image.convert("LA")
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            background = Image.new("RGB", image.size, (255, 255, 255))
            rgba = image.convert("RGBA")
            background.paste(rgba, mask=rgba.getchannel("A"))
            image = background
        return image.convert("RGB")
    except (ValueError, OSError) as e:  # a mode PIL cannot convert, or pixel data that does not decode
        raise InputError(f"cannot convert a {image.mode} image to RGB ({e})") from e


def read_images(image, second_image=None) -> list[Image.Image]:
    """The images of one question as RGB PIL images: `image`, and `second_image` when given (NLVR)."""
    return [read_image(image)] + ([read_image(second_image)] if second_image is not None else [])


def _check_size(width: int, height: int) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise InputError(f"image of {width}x{height} pixels is too large (limit {MAX_IMAGE_PIXELS} pixels)")
    if width == 0 or height == 0:
        raise InputError("image is empty (0 pixels)")


def _open_image(path: str | Path) -> Image.Image:
    """Decode an image file, after checking its size from the header: a decompression bomb (a small file
    of a huge image) is refused before any pixel is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we refuse those below ourselves
            with Image.open(path) as im:
                _check_size(im.width, im.height)
                im.load()
                return im.copy()
    except InputError:
        raise
    except FileNotFoundError as e:
        raise InputError(f"image file {path} does not exist") from e
    except Image.DecompressionBombError as e:
        raise InputError(f"{path} is too large an image ({e})") from e
    except Exception as e:  # noqa: BLE001 - decoders of damaged files raise anything (OSError, SyntaxError, struct.error...)
        raise InputError(f"{path} is not a readable image ({e.__class__.__name__})") from e


def array_to_image(arr: np.ndarray) -> Image.Image:
    """An HxW, HxWx1, HxWx3 or HxWx4 array of real numbers -> PIL image (uint8 as is, others scaled)."""
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise InputError(f"an image array must be HxW, HxWx1, HxWx3 or HxWx4; got shape {arr.shape}")
    if arr.size == 0:
        raise InputError("image is empty (0 pixels)")
    if not (arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"an image array must hold real numbers; got dtype {arr.dtype}")
    _check_size(arr.shape[1], arr.shape[0])
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    return Image.fromarray(arr if arr.dtype == np.uint8 else _to_uint8(arr, stretch=False))


def _to_uint8(arr: np.ndarray, stretch: bool) -> np.ndarray:
    """Real numbers -> uint8: values in [0, 1] are scaled by 255, values in [0, 255] kept, anything else
    (or everything, with `stretch`) stretched from its min..max. NaN and -inf take the smallest finite
    value, +inf the largest. Arrays wider or taller than MAX_ARRAY_SIDE are subsampled first."""
    step = -(-max(arr.shape[:2]) // MAX_ARRAY_SIDE)
    with np.errstate(invalid="ignore"):  # signalling NaNs (e.g. random float32 bits) warn when cast
        arr = arr[::step, ::step].astype(np.float64)
    finite = np.isfinite(arr)
    if not finite.all():
        lo, hi = (arr[finite].min(), arr[finite].max()) if finite.any() else (0.0, 0.0)
        arr = np.where(finite, arr, np.where(arr == np.inf, hi, lo))
    lo, hi = arr.min(), arr.max()
    if not stretch and 0 <= lo and hi <= 1:
        arr = arr * 255
    elif stretch or not (0 <= lo and hi <= 255):
        span = hi / 2 - lo / 2  # halves: the span of float64's extremes would overflow
        arr = (arr / 2 - lo / 2) / span * 255 if span > 0 else np.zeros_like(arr)
    return np.clip(arr.round(), 0, 255).astype(np.uint8)
