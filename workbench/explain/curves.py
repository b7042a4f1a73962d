"""The forward passes behind deletion / insertion curves (`faithfulness`): which points a curve has, and the
perturbed images of many curves evaluated in bounded batches.

Points: `steps="patch"` changes one patch per point (P + 1 points, the old behaviour, one forward pass per
patch); an integer `steps=n` samples fractions 0, 1/n, ..., 1 of the patches (n + 1 points; the default 10 is
the perturbation test of Chefer et al. 2021: 0%, 10%, ..., 90% of the patches, plus the end). A fraction
becomes a whole number of patches (rounded half up), and the x axis is that number over P, so the AUC (the
trapezoid rule over the points) is computed the same way at any step. With fewer patches than steps, repeated
counts are dropped.

Cost: a curve costs one forward pass per point; `CurveRunner` stacks the perturbed images of all requested
curves into batches of at most `batch_size` (built lazily, so memory holds one batch of images, not every
curve), and with `share_ends` evaluates the intact and the all-baseline image once for all of them (both
curve kinds start or end at one of those two) and every other image that two curves share once.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from workbench.explain.grid import cell_of, pixel_box

DEFAULT_STEPS = 10
PER_PATCH = "patch"


def check_steps(steps) -> int | str:
    """`steps` as used: "patch" or a whole number >= 1 ("10" from the command line is 10)."""
    if steps in (PER_PATCH, None):
        return PER_PATCH
    try:
        n = int(steps)
    except (TypeError, ValueError):
        raise ValueError(f"curve steps must be 'patch' or a whole number >= 1, got {steps!r}") from None
    if n < 1 or str(n) != str(steps).strip():
        raise ValueError(f"curve steps must be 'patch' or a whole number >= 1, got {steps!r}")
    return n


def step_counts(patches: int, steps=DEFAULT_STEPS) -> np.ndarray:
    """How many patches are changed at each point of a curve over `patches` patches: 0 .. patches."""
    steps = check_steps(steps)
    if steps == PER_PATCH:
        return np.arange(patches + 1)
    k = np.arange(steps + 1)
    return np.unique((2 * k * patches + steps) // (2 * steps))  # round(k * P / steps), halves up


class CurveRunner:
    """Probabilities of perturbed copies of one example's image (the image `image_index` of example `index`).

    `images` are [images, 3, H, W] (every image of the example, the perturbed one replaced per copy), `base`
    the baseline image, `forward(k, pixels)` -> [k, labels] probabilities of `k` copies."""

    def __init__(self, forward, pixels: torch.Tensor, base: torch.Tensor, grid, patch_size: int, batch_size: int):
        self.forward, self.pixels, self.base = forward, pixels, base
        self.grid, self.patch_size, self.batch_size = grid, patch_size, max(int(batch_size), 1)

    def images(self, order: np.ndarray, mode: str, counts: np.ndarray) -> Iterator[torch.Tensor]:
        """The image at each count of a curve: the first `count` patches of `order` deleted (or inserted)."""
        # an insertion starts from the all-baseline image of the order's patches (padding kept, as a deletion
        # keeps it), so the same replaced patches always make the same image (`curves` evaluates it once)
        start, other = (self.pixels, self.base) if mode == "deletion" else (self._all_base(order), self.pixels)
        current, done = start.clone(), 0
        for count in counts:
            for p in order[done:count]:
                ys, xs = pixel_box(*cell_of(int(p), self.grid), self.patch_size)
                current[..., ys, xs] = other[..., ys, xs]
            done = count
            yield current.clone()

    def probs(self, images: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
        """[labels] per image, evaluated `batch_size` images at a time."""
        chunk = []
        for image in images:
            chunk.append(image)
            if len(chunk) == self.batch_size:
                yield from self.forward(torch.stack(chunk))
                chunk = []
        if chunk:
            yield from self.forward(torch.stack(chunk))

    def curves(
        self, requests: list[tuple[np.ndarray, str]], counts: np.ndarray, share_ends: bool = True, ends=None
    ) -> list:
        """[len(counts), labels] probabilities for each (order, mode) request. Without `share_ends` every curve
        is evaluated alone from its first image to its last (the one-curve-at-a-time path); with it, the images
        of all curves run through the same batches and the two end images once (`ends`: a dict that keeps them
        for the next call on the same example, model and baseline)."""
        if not share_ends:
            return [torch.stack(list(self.probs(self.images(o, m, counts)))) for o, m in requests]
        ends = {} if ends is None else ends
        if "intact" not in ends:
            both = self.forward(torch.stack([self.pixels, self._all_base(requests[0][0])]))
            ends.update(intact=both[0], blank=both[1])
        intact, blank = ends["intact"], ends["blank"]
        inner = counts[1:-1]  # the points between the two ends
        slots: dict[frozenset, int] = {}  # the patches an image has replaced -> its place in the evaluated stream
        plan: list[list[int]] = []  # per request, the stream place of each inner point

        def fresh() -> Iterator[torch.Tensor]:
            """Each distinct perturbed image once: a deletion of the first k patches of an order and an insertion
            of the rest of it are the same image (a chance curve and its reversed order, in `perturbation_curves`)."""
            for order, mode in requests:
                plan.append([])
                for count, image in zip(inner, self.images(order, mode, inner)):
                    replaced = frozenset((order[:count] if mode == "deletion" else order[count:]).tolist())
                    if replaced not in slots:
                        slots[replaced] = len(slots)
                        yield image
                    plan[-1].append(slots[replaced])

        probs = list(self.probs(fresh()))
        out = []
        for (_, mode), places in zip(requests, plan):
            first, last = (intact, blank) if mode == "deletion" else (blank, intact)
            out.append(torch.stack([first, *(probs[i] for i in places), last]))
        return out

    def _all_base(self, order: np.ndarray) -> torch.Tensor:
        """The image with every patch of `order` (all the image's own patches) replaced by the baseline."""
        return next(self.images(order, "deletion", np.array([len(order)])))


def model_forward(model: nn.Module, ids, mask, all_pixels, image_index: int, pixel_mask):
    """`forward(chunk)` for `CurveRunner`: the softmax of `model` on copies of the example whose image
    `image_index` is each image of `chunk` ([k, 3, H, W])."""
    if hasattr(model, "encode_text") and hasattr(model, "fuse"):
        return _dual_forward(model, ids, mask, all_pixels, image_index, pixel_mask)

    def forward(chunk: torch.Tensor) -> torch.Tensor:
        k = chunk.shape[0]
        full = all_pixels[None].expand(k, *all_pixels.shape).clone()
        full[:, image_index] = chunk
        extra = {} if pixel_mask is None else {"pixel_mask": pixel_mask[None].expand(k, *pixel_mask.shape)}
        with torch.no_grad():
            return model(ids.expand(k, -1), mask.expand(k, -1), full, **extra).logits.float().softmax(-1)

    return forward


def _dual_forward(model: nn.Module, ids, mask, all_pixels, image_index: int, pixel_mask):
    """`model_forward` for a dual encoder, whose towers are separate: the question and the images that are not
    perturbed are encoded once, and each copy runs only the perturbed image through the image tower and the
    head (the same function as the model's forward; a two-image NLVR student costs half)."""

    def image_mask(j: int, k: int):
        return None if pixel_mask is None else pixel_mask[j][None].expand(k, *pixel_mask.shape[1:])

    with torch.no_grad():
        text = model.encode_text(ids, mask)
        fixed = {
            j: model.encode_image(all_pixels[j][None], pixel_mask=image_mask(j, 1))
            for j in range(all_pixels.shape[0])
            if j != image_index
        }

    def forward(chunk: torch.Tensor) -> torch.Tensor:
        k = chunk.shape[0]
        with torch.no_grad():
            mine = model.encode_image(chunk, pixel_mask=image_mask(image_index, k))
            states = [mine if j == image_index else fixed[j].expand(k, -1, -1) for j in range(all_pixels.shape[0])]
            return model.fuse(text.expand(k, -1, -1), states).float().softmax(-1)

    return forward
