"""Retrieval galleries: images (loaded on demand) plus captions, from any dataset that has them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image


@dataclass
class Gallery:
    """Images (loaded on demand) and captions; `text_to_image[t]` is caption t's image index."""

    n_images: int
    load_image: Callable[[int], Image.Image]
    texts: list[str]
    text_to_image: list[int]


def gallery_from(dataset, limit: int | None = None) -> Gallery:
    """The retrieval gallery of a dataset: shapes `retrieval`, `KarpathyCaptions`, or any sequence of
    one-image `Example`s whose label is the image's index. `limit`: the first `limit` images (and
    their captions)."""
    from workbench.data.shapes import ShapesDataset, caption, render

    if isinstance(dataset, ShapesDataset):
        if dataset.task != "retrieval":
            raise ValueError(f"a shapes {dataset.task!r} dataset is not a retrieval gallery; use shapes-retrieval")
        scenes = dataset.gallery()[: limit or None]
        size = dataset.cfg.image_size
        return Gallery(
            len(scenes), lambda j: render(scenes[j], size), [caption(s) for s in scenes], list(range(len(scenes)))
        )
    if hasattr(dataset, "items") and hasattr(dataset, "image") and hasattr(dataset, "image_count"):  # Karpathy
        n = dataset.image_count if limit is None else min(limit, dataset.image_count)
        pairs = [(text, j) for text, j in dataset.items if j < n]
        return Gallery(n, dataset.image, [t for t, _ in pairs], [j for _, j in pairs])
    return _gallery_of_examples(dataset, limit)


def _gallery_of_examples(dataset, limit: int | None) -> Gallery:
    images: dict[int, Image.Image] = {}
    texts, t2i = [], []
    for i in range(len(dataset)):
        e = dataset[i]
        if limit is not None and e.label >= limit:
            continue
        images.setdefault(e.label, e.images[0])
        texts.append(e.text)
        t2i.append(e.label)
    n = max(images) + 1 if images else 0
    if sorted(images) != list(range(n)):
        raise ValueError("labels must number the gallery's images 0..N-1")
    return Gallery(n, images.__getitem__, texts, t2i)
