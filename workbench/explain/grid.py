"""Where a patch is: the one mapping between token indices, grid cells and pixels.

Every method in `workbench.explain` turns per-token values into an image map through `to_grid`,
so the convention lives in one place and one test pins it down:

* the patches of an image are in row-major order: patch `p` is cell `(p // cols, p % cols)`;
* in the fusion teacher's joint sequence, `[text (text_len)] [image CLS] [patches]`, patch `p` is
  token `text_len + 1 + p`; in the student's image tower, `[CLS] [patches]`, it is token `1 + p`;
* cell `(row, col)` covers pixels `[row * patch, (row + 1) * patch) x [col * patch, (col + 1) * patch)`,
  row 0 at the top of the picture.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from workbench.models.fusion import FusionTeacher


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def is_fusion(model: nn.Module) -> bool:
    return isinstance(_unwrap(model), FusionTeacher)


def patch_size_of(model: nn.Module) -> int:
    model = _unwrap(model)
    if isinstance(model, FusionTeacher):
        return model.config.patch_size
    if hasattr(model, "vision_config"):
        return model.vision_config.patch_size
    if hasattr(model, "patch_size"):  # hand-made models in tests
        return int(model.patch_size)
    raise TypeError(f"cannot tell the patch size of a {type(model).__name__}")


def grid_of(model: nn.Module, pixel_values: torch.Tensor | None = None) -> tuple[int, int]:
    """(rows, cols) of the patch grid, for the given pixels or the model's own image size."""
    p = patch_size_of(model)
    if pixel_values is not None:
        return pixel_values.shape[-2] // p, pixel_values.shape[-1] // p
    model = _unwrap(model)
    size = model.config.image_size if isinstance(model, FusionTeacher) else model.vision_config.image_size
    return size // p, size // p


def patch_offset(model: nn.Module, text_len: int) -> int:
    """Index of the first patch token in the sequence the model attends over (see the module doc)."""
    return text_len + 1 if is_fusion(model) else 1


def patch_index(row: int, col: int, grid: tuple[int, int]) -> int:
    rows, cols = grid
    if not (0 <= row < rows and 0 <= col < cols):
        raise ValueError(f"cell ({row}, {col}) is outside the {rows}x{cols} grid")
    return row * cols + col


def cell_of(index: int, grid: tuple[int, int]) -> tuple[int, int]:
    return divmod(int(index), grid[1])


def to_grid(values, grid: tuple[int, int], offset: int = 0):
    """[..., offset + rows*cols (+ more)] per-token values -> [..., rows, cols] (tensor or array).

    `offset` is where the patches start along the last axis (`patch_offset`); tokens after the
    patches are ignored.
    """
    rows, cols = grid
    patches = values[..., offset : offset + rows * cols]
    if patches.shape[-1] != rows * cols:
        raise ValueError(f"expected at least {offset + rows * cols} tokens, got {values.shape[-1]}")
    return patches.reshape(*patches.shape[:-1], rows, cols)


def from_grid(grid_values, offset: int = 0):
    """Inverse of `to_grid` for the patch part: [..., rows, cols] -> [..., rows*cols]."""
    return grid_values.reshape(*grid_values.shape[:-2], grid_values.shape[-2] * grid_values.shape[-1])


def pixel_box(row: int, col: int, patch_size: int) -> tuple[slice, slice]:
    """(rows, cols) pixel slices of a cell, for an image array indexed [..., y, x]."""
    return slice(row * patch_size, (row + 1) * patch_size), slice(col * patch_size, (col + 1) * patch_size)


def upsample(patch_map: np.ndarray, patch_size: int) -> np.ndarray:
    """[rows, cols] -> [rows * patch, cols * patch]: each cell's value over its pixels."""
    return np.kron(np.asarray(patch_map), np.ones((patch_size, patch_size)))
