"""A bounded cache of image features keyed by image content (docs/design.md, "Speed").

A dual student's image tower depends on the image only, so its output can be reused for every
question about the same image. The key is the SHA-256 of the preprocessed pixel tensor (its bytes,
shape and dtype): the same picture sent twice, even as two different objects or files, hits; any
pixel change misses. Entries are evicted least recently used first once `maxsize` is reached.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections import OrderedDict

import torch
from torch import nn


def content_key(pixels: torch.Tensor) -> str:
    """SHA-256 of a tensor's values, shape and dtype (the exact pixels the model would see)."""
    t = pixels.detach().to("cpu").contiguous()
    h = hashlib.sha256(f"{tuple(t.shape)}|{t.dtype}|".encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class ImageFeatureCache:
    """LRU map from image content to the image tower's output; thread-safe (Gradio serves in threads)."""

    def __init__(self, maxsize: int = 256):
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        self._data: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def get(self, key: str) -> torch.Tensor | None:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: str, value: torch.Tensor) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def get_or_compute(self, pixels: torch.Tensor, compute) -> tuple[torch.Tensor, bool]:
        """(features, hit): the cached features of `pixels`, or `compute(pixels)` stored under its key."""
        key = content_key(pixels)
        value = self.get(key)
        if value is not None:
            return value, True
        value = compute(pixels)
        self.put(key, value)
        return value, False

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.hits = self.misses = 0

    def stats(self) -> dict:
        return {"entries": len(self._data), "maxsize": self.maxsize, "hits": self.hits, "misses": self.misses}


_CACHES: weakref.WeakKeyDictionary[nn.Module, ImageFeatureCache] = weakref.WeakKeyDictionary()


def cache_for(model: nn.Module, maxsize: int = 256) -> ImageFeatureCache:
    """The image-feature cache belonging to `model` (created on first use, dropped with the model)."""
    cache = _CACHES.get(model)
    if cache is None:
        cache = _CACHES[model] = ImageFeatureCache(maxsize)
    return cache
