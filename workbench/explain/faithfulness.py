"""Faithfulness of a patch map: deletion and insertion curves (Petsiuk et al., 2018, RISE).

Deletion: replace the patches with a baseline (`baseline_image`), the most relevant first, and
track the probability of the target answer (by default the answer predicted on the intact image).
A faithful map makes it fall fast: a low area under the curve (AUC). Insertion: start from the
all-baseline image and put the patches back, most relevant first: a faithful map makes the
probability rise fast, a high AUC. The same curves for random orders (averaged) are the
reference a map must beat. The x axis is the fraction of patches changed, 0 .. 1, and the AUC is
the trapezoid area, so it lies in [0, 1]. By default a curve has 11 points, 0%, 10%, ..., 100% of the
patches (Chefer et al. 2021's perturbation test); `steps="patch"` gives one point per patch, as the
shipped faithfulness results were measured (`curves` says how points are chosen and batched).

Caveats: a replaced patch is out of distribution for the model (no object was ever drawn in the
mean colour), so part of any drop is the model's surprise; on shapes "white" is the background
and means "no object here". Ties in a map are broken by patch index (row-major).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from workbench.data.collate import Batch, batches
from workbench.explain.curves import DEFAULT_STEPS, CurveRunner, check_steps, model_forward, step_counts
from workbench.explain.grid import _unwrap, patch_size_of, pixel_box
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


class _Example:
    """One example's image, baseline, real patches and batched forward (`CurveRunner`), for the curves."""

    def __init__(self, model, batch, grid, baseline, image_index, index, patch_size, batch_size):
        model = _unwrap(model)
        batch = to_device(batch, model)
        all_pixels = pixels_5d(batch.pixel_values)[index]  # [images, 3, H, W]
        pixels = all_pixels[image_index]
        ids, mask = batch.input_ids[index : index + 1], batch.attention_mask[index : index + 1]
        pixel_mask = None if batch.pixel_mask is None else _mask_5d(batch.pixel_mask)[index]  # [images, H, W]
        forward = model_forward(model, ids, mask, all_pixels, image_index, pixel_mask)
        ps = patch_size or patch_size_of(model)
        self.runner = CurveRunner(forward, pixels, baseline_image(pixels, baseline), grid, ps, batch_size)
        # the patches that hold the image: all of them, or on a padded batch the image's own (padding stays)
        n = grid[0] * grid[1]
        self.real = np.arange(n) if pixel_mask is None else _real_patches(pixel_mask[image_index], grid)

    def target(self, target: int | None) -> int:
        """`target`, or the answer predicted on the intact image."""
        return int(self.runner.forward(self.runner.pixels[None]).argmax(-1)[0]) if target is None else int(target)

    def order(self, patch_map: np.ndarray) -> np.ndarray:
        order = patch_order(patch_map)
        return order[np.isin(order, self.real)] if len(self.real) < order.size else order


def _check_mode(mode: str) -> None:
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")


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
    steps: int | str = DEFAULT_STEPS,
) -> dict:
    """The deletion (or insertion) curve of example `index` for a [rows, cols] `patch_map`.

    {"mode", "fractions": [points], "scores": probability of the target at each point, "auc", "target",
    "steps", and with `random_orders` > 0 "random_scores" (mean over that many random orders) and
    "random_auc"}. `steps`: 10 (default) samples 0%, 10%, ..., 100% of the patches, "patch" every patch
    (`curves.step_counts`); `batch_size` bounds the perturbed images per forward pass. Works for any model
    whose forward is `(input_ids, attention_mask, pixel_values) -> .logits`; pass `patch_size` for one that
    has no config.
    """
    _check_mode(mode)
    patch_map = np.asarray(patch_map)
    ex = _Example(model, batch, patch_map.shape, baseline, image_index, index, patch_size, batch_size)
    target = ex.target(target)
    p = len(ex.real)
    counts = step_counts(p, steps)
    fractions = counts / p
    scores = ex.runner.curves([(ex.order(patch_map), mode)], counts, share_ends=False)[0][:, target].cpu().numpy()
    result = {"mode": mode, "fractions": fractions, "scores": scores, "auc": auc(scores, fractions), "target": target}
    result["steps"] = check_steps(steps)
    if random_orders:
        rng = np.random.default_rng(seed)
        orders = [(ex.real[rng.permutation(p)], mode) for _ in range(random_orders)]
        runs = [c[:, target].cpu().numpy() for c in ex.runner.curves(orders, counts, share_ends=False)]
        result["random_scores"] = np.mean(runs, axis=0)
        result["random_auc"] = auc(result["random_scores"], fractions)
    return result


@torch.no_grad()
def perturbation_curves(
    model: nn.Module,
    batch: Batch,
    patch_maps: dict[str, np.ndarray],
    target: int | None = None,
    modes: tuple[str, ...] = ("deletion", "insertion"),
    baseline: str | float = "mean",
    random_orders: int = 0,
    seed: int = 0,
    index: int = 0,
    batch_size: int = 32,
    steps: int | str = DEFAULT_STEPS,
    ends: dict | None = None,
) -> dict:
    """Every curve of several maps of example `index` at once: {(name, mode): `perturbation_curve` result},
    plus {("random", mode): the mean of `random_orders` random orders} when asked (insertion: the same orders
    reversed). One stream of perturbed images in batches of `batch_size`, each distinct image evaluated once
    (the same probabilities as one `perturbation_curve` per map, up to float rounding of the batching). `ends`: a dict
    kept between calls on the same example, model and baseline, so the two end images run once for all."""
    for mode in modes:
        _check_mode(mode)
    grid = np.asarray(next(iter(patch_maps.values()))).shape
    ex = _Example(model, batch, grid, baseline, 0, index, None, batch_size)
    target = ex.target(target)
    p = len(ex.real)
    counts = step_counts(p, steps)
    fractions = counts / p
    rng = np.random.default_rng(seed)
    randoms = [ex.real[rng.permutation(p)] for _ in range(random_orders)]
    keys = [(name, mode) for name in patch_maps for mode in modes]
    requests = [(ex.order(np.asarray(patch_maps[name])), mode) for name, mode in keys]
    # the insertion chance curve inserts each random order reversed (an order reversed is as random): its images
    # are the deletion chance curve's, read backwards, so the chance baseline costs one curve per order, not two
    requests += [(order if mode == "deletion" else order[::-1], mode) for mode in modes for order in randoms]
    scores = [c[:, target].cpu().numpy() for c in ex.runner.curves(requests, counts, share_ends=True, ends=ends)]
    out = {}
    for key, s in zip(keys, scores):
        out[key] = {"mode": key[1], "fractions": fractions, "scores": s, "auc": auc(s, fractions), "target": target}
        out[key]["steps"] = check_steps(steps)
    for k, mode in enumerate(modes if random_orders else ()):
        s = np.mean(scores[len(keys) + k * random_orders : len(keys) + (k + 1) * random_orders], axis=0)
        out[("random", mode)] = {"mode": mode, "fractions": fractions, "scores": s, "auc": auc(s, fractions)}
    return out


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
    steps: int | str = DEFAULT_STEPS,
) -> dict:
    """Mean deletion and insertion AUCs of each method's maps over the first `limit` examples, and
    of random orders, for the probability of each example's predicted answer.

    {"n", "baseline", "methods": {method: {"deletion_auc", "insertion_auc", "deletion_beats_random"
    (share of examples whose deletion AUC is below the random one)}}, "random": {"deletion_auc",
    "insertion_auc"}}; with `per_example`, also "per_example": {"methods": {method: {"deletion":
    [n], "insertion": [n]}}, "random": {"deletion": [n], "insertion": [n]}} (the AUC of each example,
    in dataset order). Random orders are seeded by the example's index. `steps`: the points of each
    curve (`perturbation_curve`; "patch" for one per patch).
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
                        random_orders=random_orders if first else 0, seed=i, steps=steps,
                    )  # fmt: skip
                    per[m][mode].append(curve["auc"])
                    if "random_auc" in curve:
                        rand[mode].append(curve["random_auc"])
                first = False
    model.train(was_training)
    out = {"n": n, "baseline": baseline, "random_orders": random_orders, "steps": check_steps(steps), "methods": {}}
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
