"""The Python API the app and the notebooks use: load a checkpoint, ask it about an image.

Everything returns plain data (dicts, lists, floats), so a notebook cell or a Gradio callback
only has to display it. An answer also says what the model could not read (`workbench.coverage`): the
question's words it never saw in training ("unknown_words") and warnings ("warnings": unknown words that
dominate the question, an image smaller than its patch grid, greyscale for a colour task, an extreme aspect
ratio). The model answers anyway. Inputs are checked by `workbench.inputs` (re-exported here: `check_question`,
`read_image`). Shipped checkpoints are looked up by name in `assets_dir()`: the directory given, else the
environment variable WORKBENCH_ASSETS, else the repository's `assets/`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from workbench.cache import ImageFeatureCache, cache_for
from workbench.coverage import input_report
from workbench.data.collate import Collator
from workbench.errors import InputError
from workbench.inputs import (
    MAX_IMAGE_PIXELS,
    MAX_QUESTION_CHARS,
    check_question,
    read_image,
    read_images,
)
from workbench.models import text_limit
from workbench.models.dual import DualStudent
from workbench.models.io import Checkpoint, load_checkpoint

ASSETS_ENV = "WORKBENCH_ASSETS"
REPO_ASSETS = Path(__file__).resolve().parent.parent / "assets"  # the repository's shipped checkpoints


def assets_dir(path: str | Path | None = None) -> Path:
    """Where shipped checkpoints and samples are: `path` if given, else $WORKBENCH_ASSETS, else the
    repository's `assets/`. Read at each call, so setting the variable later (the app's --assets) applies."""
    if path:
        return Path(path)
    env = os.environ.get(ASSETS_ENV)
    return Path(env) if env else REPO_ASSETS


# The assets directory when this module was imported (notebooks write `ASSETS / "shapes-vqa-teacher"`);
# library code calls `assets_dir()` instead.
ASSETS = assets_dir()


def shipped(name: str, assets: str | Path | None = None) -> Path:
    """Path of a shipped checkpoint or sample folder (e.g. "shapes-vqa-teacher") in `assets_dir(assets)`."""
    root = assets_dir(assets)
    path = root / name
    if not path.exists():
        available = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []
        raise InputError(f"no shipped asset {name!r} in {root}; available: {available}")
    return path


def load_model(path: str | Path, device: str | None = None, assets: str | Path | None = None) -> Checkpoint:
    """Load a checkpoint folder, or the name of a shipped one (looked up in `assets_dir(assets)`), for inference."""
    path = Path(path)
    if not path.exists() and not path.is_absolute() and len(path.parts) == 1:
        path = shipped(str(path), assets)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return load_checkpoint(path, device=device)


def _prepare(model: Checkpoint, image, question: str, second_image=None):
    """Validated inputs on the model's device: (input_ids, attention_mask, pixels [1, images, 3, H, W], pixel
    mask [1, images, H, W] or None, truncated, the checked question, the images read). The images are read as
    the checkpoint reads them (`Collator.for_checkpoint`): square for our own folders; a HF ViLT folder (and a
    student distilled from one) keeps the aspect ratio and pads two images of different sizes, with a pixel mask."""
    question = check_question(question)
    images = read_images(image, second_image)
    need = model.meta.get("num_images", 1)
    if len(images) != need:
        raise InputError(f"this model needs {need} image(s) per question, got {len(images)}")
    device = next(model.model.parameters()).device
    pixels, pixel_mask = Collator.for_checkpoint(model).pixels([images])
    pixel_mask = None if pixel_mask is None else pixel_mask.to(device)
    limit = text_limit(model.model)
    enc = model.tokenizer([question], truncation=True, max_length=limit, return_tensors="pt")
    truncated = len(model.tokenizer(question, truncation=True, max_length=limit + 1)["input_ids"]) > limit
    ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    return ids, mask, pixels.to(device), pixel_mask, truncated, question, images


def _masked(pixel_mask: torch.Tensor | None) -> dict:
    """The forward pass's `pixel_mask` keyword: only for a padded batch (our own checkpoints take none)."""
    return {} if pixel_mask is None else {"pixel_mask": pixel_mask}


def _real_pixels(pixels: torch.Tensor, pixel_mask: torch.Tensor | None) -> torch.Tensor:
    """One image of one example [1, 3, H, W] without its padding (the mask's [1, H, W] real part): its features
    are then a function of the image alone, and so is the cache key."""
    if pixel_mask is None:
        return pixels
    h, w = int(pixel_mask[0].any(1).sum()), int(pixel_mask[0].any(0).sum())
    return pixels[..., :h, :w]


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

    Returns {"answer", "confidence", "top": [(label, prob), ...], "latency_ms", "truncated", "unknown_words",
    "warnings"}: the question's words the model never saw in training (as typed; None when the checkpoint records
    no training vocabulary) and warnings about input it cannot read (`workbench.coverage.input_report`).
    """
    input_ids, attention_mask, pixels, pixel_mask, truncated, question, images = _prepare(
        model, image, question, second_image
    )
    start = time.perf_counter()
    logits = model.model(input_ids, attention_mask, pixels, **_masked(pixel_mask)).logits[0]
    latency = (time.perf_counter() - start) * 1000
    return {**_answer(model, logits, top_k, latency, truncated), **input_report(model, images, question)}


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
    input_ids, attention_mask, pixels, pixel_mask, truncated, question, images = _prepare(
        model, image, question, second_image
    )
    cache = cache if cache is not None else cache_for(net)
    start = time.perf_counter()
    states, hits = [], []
    for j in range(pixels.shape[1]):
        image_j = _real_pixels(pixels[:, j], None if pixel_mask is None else pixel_mask[:, j])
        value, hit = cache.get_or_compute(image_j, net.encode_image)
        states.append(value)
        hits.append(hit)
    logits = net(input_ids, attention_mask, image_states=states).logits[0]
    latency = (time.perf_counter() - start) * 1000
    report = input_report(model, images, question)
    return {**_answer(model, logits, top_k, latency, truncated), **report, "cache_hit": all(hits)}


__all__ = [  # the input checks are `workbench.inputs`'s, re-exported for the API's users
    "ASSETS",
    "MAX_IMAGE_PIXELS",
    "MAX_QUESTION_CHARS",
    "ask",
    "ask_cached",
    "assets_dir",
    "check_question",
    "load_model",
    "read_image",
    "read_images",
    "shipped",
]
