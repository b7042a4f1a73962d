"""The Python API the app and the notebooks use: load a checkpoint, ask it about an image.

Everything returns plain data (dicts, lists, floats), so a notebook cell or a Gradio callback
only has to display it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from workbench.cache import ImageFeatureCache, cache_for
from workbench.data.collate import image_to_tensor
from workbench.errors import InputError
from workbench.models import text_limit
from workbench.models.dual import DualStudent
from workbench.models.io import Checkpoint, load_checkpoint

MAX_QUESTION_CHARS = 300
MAX_IMAGE_PIXELS = 8192 * 8192  # decompression-bomb guard; larger images are refused, not resized
ASSETS = Path(__file__).resolve().parent.parent / "assets"


def shipped(name: str) -> Path:
    """Path of a shipped checkpoint or sample folder in assets/ (e.g. "shapes-vqa-teacher")."""
    path = ASSETS / name
    if not path.exists():
        available = sorted(p.name for p in ASSETS.iterdir() if p.is_dir()) if ASSETS.exists() else []
        raise InputError(f"no shipped asset {name!r}; available: {available}")
    return path


def load_model(path: str | Path, device: str | None = None) -> Checkpoint:
    """Load a checkpoint folder (or the name of a shipped one) for inference."""
    path = Path(path)
    if not path.exists() and not path.is_absolute() and len(path.parts) == 1:
        path = shipped(str(path))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return load_checkpoint(path, device=device)


def read_image(image) -> Image.Image:
    """Any PIL image, numpy array or file path -> RGB PIL image; clear `InputError` otherwise."""
    if isinstance(image, (str, Path)):
        try:
            with Image.open(image) as im:
                im.load()
                image = im.copy()
        except FileNotFoundError as e:
            raise InputError(f"image file {image} does not exist") from e
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
            raise InputError(f"{image} is not a readable image ({e.__class__.__name__})") from e
    elif isinstance(image, np.ndarray):
        image = array_to_image(image)
    if not isinstance(image, Image.Image):
        raise InputError(f"expected an image (PIL image, array or file path), got {type(image).__name__}")
    if image.width * image.height > MAX_IMAGE_PIXELS:
        raise InputError(f"image of {image.width}x{image.height} pixels is too large (limit {MAX_IMAGE_PIXELS})")
    if image.width == 0 or image.height == 0:
        raise InputError("image is empty (0 pixels)")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit / float greyscale: rescale to 8 bit
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(arr)
        image = Image.fromarray(arr.astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGB", image.size, (255, 255, 255))
        rgba = image.convert("RGBA")
        background.paste(rgba, mask=rgba.getchannel("A"))
        image = background
    return image.convert("RGB")


def array_to_image(arr: np.ndarray) -> Image.Image:
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise InputError(f"an image array must be HxW, HxWx1, HxWx3 or HxWx4; got shape {arr.shape}")
    if arr.size == 0:
        raise InputError("image is empty (0 pixels)")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        arr = np.nan_to_num(arr.astype(np.float64))
        lo, hi = arr.min(), arr.max()
        if 0 <= lo and hi <= 1.0:
            arr = arr * 255
        elif not (0 <= lo and hi <= 255):
            arr = (arr - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(arr)
        arr = arr.round().astype(np.uint8)
    return Image.fromarray(arr)


def check_question(question) -> str:
    if not isinstance(question, str):
        raise InputError(f"the question must be text, got {type(question).__name__}")
    question = " ".join(question.split())
    if not question:
        raise InputError("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise InputError(f"the question has {len(question)} characters; the limit is {MAX_QUESTION_CHARS}")
    return question


def _prepare(model: Checkpoint, image, question: str, second_image=None):
    """Validated inputs on the model's device: (input_ids, attention_mask, pixels [1, images, 3, H, W], truncated)."""
    question = check_question(question)
    images = [read_image(image)] + ([read_image(second_image)] if second_image is not None else [])
    need = model.meta.get("num_images", 1)
    if len(images) != need:
        raise InputError(f"this model needs {need} image(s) per question, got {len(images)}")
    device = next(model.model.parameters()).device
    pixels = torch.stack([image_to_tensor(im, model.image_size) for im in images])[None].to(device)
    limit = text_limit(model.model)
    enc = model.tokenizer([question], truncation=True, max_length=limit, return_tensors="pt")
    truncated = len(model.tokenizer(question, truncation=True, max_length=limit + 1)["input_ids"]) > limit
    return enc["input_ids"].to(device), enc["attention_mask"].to(device), pixels, truncated


def _answer(model: Checkpoint, logits: torch.Tensor, top_k: int, latency: float, truncated: bool) -> dict:
    probs = logits.float().softmax(-1).cpu()
    k = min(top_k, probs.numel())
    values, indices = probs.topk(k)
    labels = model.labels
    top = [(labels[i], float(v)) for v, i in zip(values.tolist(), indices.tolist())]
    return {"answer": top[0][0], "confidence": top[0][1], "top": top, "latency_ms": latency, "truncated": truncated}


@torch.inference_mode()
def ask(model: Checkpoint, image, question: str, top_k: int = 5, second_image=None) -> dict:
    """Answer `question` about `image` (two images for NLVR models).

    Returns {"answer", "confidence", "top": [(label, prob), ...], "latency_ms", "truncated"}.
    """
    input_ids, attention_mask, pixels, truncated = _prepare(model, image, question, second_image)
    start = time.perf_counter()
    logits = model.model(input_ids, attention_mask, pixels).logits[0]
    latency = (time.perf_counter() - start) * 1000
    return _answer(model, logits, top_k, latency, truncated)


@torch.inference_mode()
def ask_cached(
    model: Checkpoint, image, question: str, top_k: int = 5, second_image=None, cache: ImageFeatureCache | None = None
) -> dict:
    """`ask`, reusing a dual student's image features for images it has seen (keyed by pixel content).

    Only the text tower and the fusion head run for a cached image. Same answers as `ask`; the
    result also says whether every image was a cache hit ("cache_hit"; None for a fusion model,
    whose image and text are encoded together and cannot be cached). `cache` defaults to the
    model's own bounded cache (`workbench.cache.cache_for`).
    """
    net = model.model
    if not isinstance(net, DualStudent):
        return {**ask(model, image, question, top_k=top_k, second_image=second_image), "cache_hit": None}
    input_ids, attention_mask, pixels, truncated = _prepare(model, image, question, second_image)
    cache = cache if cache is not None else cache_for(net)
    start = time.perf_counter()
    states, hits = [], []
    for j in range(pixels.shape[1]):
        value, hit = cache.get_or_compute(pixels[:, j], net.encode_image)
        states.append(value)
        hits.append(hit)
    logits = net(input_ids, attention_mask, image_states=states).logits[0]
    latency = (time.perf_counter() - start) * 1000
    return {**_answer(model, logits, top_k, latency, truncated), "cache_hit": all(hits)}
