"""Pictures embedded in figures: an image as [H, W, 3] uint8, and as a data URI (PNG or JPEG, whichever is
smaller), cached because a grid of maps shows the same picture under every panel."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

_URIS: dict = {}  # (picture digest, shape, size) -> (data URI, scale), the last few
_KEEP = 8


def rgb_array(image) -> np.ndarray:
    """PIL image or array -> [H, W, 3] uint8."""
    arr = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255 if arr.max() <= 1.0 else 1), 0, 255).astype(np.uint8)
    return arr[..., :3]


def encode(arr: np.ndarray, max_side: int = 512) -> tuple[str, float]:
    """A data URI of the picture (at most `max_side` pixels a side; PNG or JPEG, whichever is smaller: a drawn
    scene compresses best as PNG, a photo or noise as JPEG) and its scale factor: far smaller in a figure than the
    pixel values as JSON."""
    im = Image.fromarray(arr)
    scale = min(1.0, max_side / max(im.size))
    if scale < 1.0:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))))
    encoded = {fmt: io.BytesIO() for fmt in ("png", "jpeg")}
    for fmt, buf in encoded.items():
        im.save(buf, format=fmt, quality=90)  # PNG ignores quality
    fmt = min(encoded, key=lambda f: len(encoded[f].getvalue()))
    return f"data:image/{fmt};base64," + base64.b64encode(encoded[fmt].getvalue()).decode(), scale


def data_uri(arr: np.ndarray, max_side: int = 512) -> tuple[str, float]:
    """`encode`, remembered for the last few pictures (144 panels of a ViLT-B/32 head grid encode it once)."""
    key = (hash(arr.tobytes()), arr.shape, max_side)
    if key not in _URIS:
        _URIS[key] = encode(arr, max_side)
        if len(_URIS) > _KEEP:
            _URIS.pop(next(iter(_URIS)))
    return _URIS[key]
