"""Faithfulness of a patch map: deletion and insertion curves (Petsiuk et al., 2018, RISE).

Deletion: replace the patches with a baseline (`baseline_image`), the most relevant first, and
track the probability of the target answer (by default the answer predicted on the intact image).
A faithful map makes it fall fast: a low area under the curve (AUC). Insertion: start from the
all-baseline image and put the patches back, most relevant first: a faithful map makes the
probability rise fast, a high AUC. The same curves for random orders (averaged) are the
reference a map must beat. The x axis is the fraction of patches changed, 0 .. 1, and the AUC is
the trapezoid area, so it lies in [0, 1].

Caveats: a replaced patch is out of distribution for the model (no object was ever drawn in the
mean colour), so part of any drop is the model's surprise; on shapes "white" is the background
and means "no object here". Ties in a map are broken by patch index (row-major).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from workbench.data.collate import Batch, batches
from workbench.explain.grid import _unwrap, cell_of, patch_size_of, pixel_box
from workbench.explain.inputs import baseline_image, pixels_5d, to_device
from workbench.models.preprocess import patch_grid_mask


def mask_patches(
    pixel_values: torch.Tensor,
    cells: list[tuple[int, int]],
    patch_size: int,
    baseline: str | float | torch.Tensor = "mean",
) -> torch.Tensor:
    """A copy of `pixel_values` ([..., 3, H, W]) with the given (row, col) cells replaced by the
    baseline (a kind for `baseline_image`, or a tensor shaped like `pixel_values`)."""
    base = baseline if isinstance(baseline, torch.Tensor) else baseline_image(pixel_values, baseline)
    out = pixel_values.clone()
    for row, col in cells:
        ys, xs = pixel_box(row, col, patch_size)
        out[..., ys, xs] = base[..., ys, xs]
    return out


def patch_order(patch_map: np.ndarray) -> np.ndarray:
    """Patch indices (row-major), most relevant first; ties in index order."""
    flat = np.asarray(patch_map, dtype=np.float64).reshape(-1)
    return np.argsort(-flat, kind="stable")


def auc(scores, fractions=None) -> float:
    """Trapezoid area under `scores` sampled at `fractions` (default: evenly over [0, 1])."""
    y = np.asarray(scores, dtype=np.float64)
    x = np.linspace(0.0, 1.0, len(y)) if fractions is None else np.asarray(fractions, dtype=np.float64)
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2)


def _curve_images(pixels: torch.Tensor, order, grid, patch_size: int, base: torch.Tensor, mode: str) -> torch.Tensor:
    """[P + 1, 3, H, W]: step k has the first k patches of `order` deleted (or inserted)."""
    start, other = (pixels, base) if mode == "deletion" else (base, pixels)
    images, current = [start.clone()], start.clone()
    for p in order:
        ys, xs = pixel_box(*cell_of(int(p), grid), patch_size)
        current[..., ys, xs] = other[..., ys, xs]
        images.append(current.clone())
    return torch.stack(images)


@torch.no_grad()
def perturbation_curve(
    model: nn.Module,
    batch: Batch,
    patch_map: np.ndarray,
    mode: str = "deletion",
    target: int | None = None,
    baseline: str | float = "mean",
    random_orders: int = 0,
    seed: int = 0,
    image_index: int = 0,
    index: int = 0,
    patch_size: int | None = None,
    batch_size: int = 64,
) -> dict:
    """The deletion (or insertion) curve of example `index` for a [rows, cols] `patch_map`.

    {"mode", "fractions": [P + 1], "scores": probability of the target at each step, "auc",
    "target", and with `random_orders` > 0 "random_scores" (mean over that many random orders) and
    "random_auc"}. Works for any model whose forward is `(input_ids, attention_mask, pixel_values)
    -> .logits`; pass `patch_size` for one that has no config.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    model = _unwrap(model)
    batch = to_device(batch, model)
    patch_map = np.asarray(patch_map)
    grid = patch_map.shape
    ps = patch_size or patch_size_of(model)
    all_pixels = pixels_5d(batch.pixel_values)[index]  # [images, 3, H, W]
    pixels = all_pixels[image_index]
    base = baseline_image(pixels, baseline)
    ids, mask = batch.input_ids[index : index + 1], batch.attention_mask[index : index + 1]
    pixel_mask = None if batch.pixel_mask is None else _mask_5d(batch.pixel_mask)[index]  # [images, H, W]

    def probs(images: torch.Tensor) -> torch.Tensor:  # [K, 3, H, W] -> [K, labels]
        out = []
        for s in range(0, images.shape[0], batch_size):
            chunk = images[s : s + batch_size]
            full = all_pixels[None].expand(chunk.shape[0], *all_pixels.shape).clone()
            full[:, image_index] = chunk
            k = chunk.shape[0]
            extra = {} if pixel_mask is None else {"pixel_mask": pixel_mask[None].expand(k, *pixel_mask.shape)}
            logits = model(ids.expand(k, -1), mask.expand(k, -1), full, **extra).logits.float()
            out.append(logits.softmax(-1))
        return torch.cat(out)

    if target is None:
        target = int(probs(pixels[None]).argmax(-1)[0])
    # the patches that hold the image: all of them, or on a padded batch the image's own (padding is not removed)
    real = np.arange(grid[0] * grid[1]) if pixel_mask is None else _real_patches(pixel_mask[image_index], grid)
    p = len(real)
    fractions = np.linspace(0.0, 1.0, p + 1)
    order = patch_order(patch_map)
    if pixel_mask is not None:
        order = order[np.isin(order, real)]
    scores = probs(_curve_images(pixels, order, grid, ps, base, mode))[:, target].cpu().numpy()
    result = {"mode": mode, "fractions": fractions, "scores": scores, "auc": auc(scores, fractions), "target": target}
    if random_orders:
        rng = np.random.default_rng(seed)
        runs = [
            probs(_curve_images(pixels, real[rng.permutation(p)], grid, ps, base, mode))[:, target].cpu().numpy()
            for _ in range(random_orders)
        ]
        result["random_scores"] = np.mean(runs, axis=0)
        result["random_auc"] = auc(result["random_scores"], fractions)
    return result


def _mask_5d(pixel_mask: torch.Tensor) -> torch.Tensor:
    """[B, H, W] or [B, images, H, W] -> [B, images, H, W]."""
    return pixel_mask[:, None] if pixel_mask.dim() == 3 else pixel_mask


def _real_patches(pixel_mask: torch.Tensor, grid: tuple[int, int]) -> np.ndarray:
    """Row-major indices of the patches of a [H, W] pixel mask's image part (`patch_grid_mask`'s rule)."""
    patches = patch_grid_mask(pixel_mask[None], grid)[0].flatten()
    return torch.nonzero(patches).flatten().cpu().numpy()


def deletion_curve(model: nn.Module, batch: Batch, patch_map: np.ndarray, **kwargs) -> dict:
    return perturbation_curve(model, batch, patch_map, mode="deletion", **kwargs)


def insertion_curve(model: nn.Module, batch: Batch, patch_map: np.ndarray, **kwargs) -> dict:
    return perturbation_curve(model, batch, patch_map, mode="insertion", **kwargs)


def faithfulness_over_split(
    model: nn.Module,
    dataset,
    collator,
    methods: tuple[str, ...] | None = None,
    limit: int = 200,
    baseline: str | float = "mean",
    random_orders: int = 3,
    ig_steps: int = 16,
    batch_size: int = 32,
    progress: bool = False,
    per_example: bool = False,
) -> dict:
    """Mean deletion and insertion AUCs of each method's maps over the first `limit` examples, and
    of random orders, for the probability of each example's predicted answer.

    {"n", "baseline", "methods": {method: {"deletion_auc", "insertion_auc", "deletion_beats_random"
    (share of examples whose deletion AUC is below the random one)}}, "random": {"deletion_auc",
    "insertion_auc"}}; with `per_example`, also "per_example": {"methods": {method: {"deletion":
    [n], "insertion": [n]}}, "random": {"deletion": [n], "insertion": [n]}} (the AUC of each example,
    in dataset order). Random orders are seeded by the example's index.
    """
    from tqdm.auto import tqdm

    from workbench.explain.maps import METHODS, image_maps

    methods = tuple(methods or METHODS)
    n = min(limit, len(dataset))
    was_training = model.training
    model.eval()
    per = {m: {"deletion": [], "insertion": []} for m in methods}
    rand = {"deletion": [], "insertion": []}
    it = batches(dataset, collator, batch_size, list(range(n)))
    for batch in tqdm(it, total=-(-n // batch_size), desc="faithfulness", disable=not progress, leave=False):
        maps = {m: image_maps(model, batch, m, ig_steps=ig_steps, baseline=baseline) for m in methods}
        for i in range(len(batch)):
            first = True
            for m in methods:
                for mode in ("deletion", "insertion"):
                    curve = perturbation_curve(
                        model, batch, maps[m][i], mode, baseline=baseline, index=i,
                        random_orders=random_orders if first else 0, seed=i,
                    )  # fmt: skip
                    per[m][mode].append(curve["auc"])
                    if "random_auc" in curve:
                        rand[mode].append(curve["random_auc"])
                first = False
    model.train(was_training)
    out = {"n": n, "baseline": baseline, "random_orders": random_orders, "methods": {}}
    for m in methods:
        dele = np.asarray(per[m]["deletion"])
        out["methods"][m] = {
            "deletion_auc": float(dele.mean()),
            "insertion_auc": float(np.mean(per[m]["insertion"])),
            "deletion_beats_random": float(np.mean(dele < np.asarray(rand["deletion"]))) if rand["deletion"] else None,
        }
    if random_orders:
        out["random"] = {
            k: float(np.mean(v)) for k, v in (("deletion_auc", rand["deletion"]), ("insertion_auc", rand["insertion"]))
        }
    if per_example:
        out["per_example"] = {"methods": per, "random": rand}
    return out
