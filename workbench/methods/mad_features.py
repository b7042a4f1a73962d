"""MAD's vision-teacher features on disk, shared by the runs of a grid over the same images (rows, seeds).

One safetensors file per teacher (named by its weights' digest, so a file is only read by the teacher that
wrote it); unreadable files are ignored with a warning and the features computed again."""

from __future__ import annotations

import hashlib
import os
import warnings
from itertools import chain
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn


def teacher_digest(teacher: nn.Module) -> str:
    """A short hash of a teacher's weights and buffers (its input normalisation): a feature file is only
    valid for the teacher that made it."""
    digest = hashlib.blake2b(digest_size=8)
    for name, tensor in chain(teacher.named_parameters(), teacher.named_buffers()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _grid_name(grid) -> str:
    return "native" if grid is None else "x".join(str(g) for g in grid)


def save_image_features(cache: dict, path: Path) -> None:
    """Write `MADRecipe.image_cache` ({(grid, image key): features}) to one safetensors file, per grid a
    "<grid>.keys" [N, 16] uint8 and a "<grid>.features" [N, P, D] tensor; atomically (a reader never sees half)."""
    tensors = {}
    for grid in {g for g, _ in cache}:
        items = [(key, f) for (g, key), f in cache.items() if g == grid]
        keys = bytearray(b"".join(key for key, _ in items))
        tensors[f"{_grid_name(grid)}.keys"] = torch.frombuffer(keys, dtype=torch.uint8).view(len(items), -1)
        tensors[f"{_grid_name(grid)}.features"] = torch.stack([f.cpu() for _, f in items])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # two workers may save at once: each its own file
    save_file(tensors, tmp)
    os.replace(tmp, path)


def load_image_features(path: Path) -> dict:
    """The cache `save_image_features` wrote ({} with a warning when the file is unreadable: the teacher
    then computes the features again, nothing is lost)."""
    try:
        tensors = load_file(path)
        out = {}
        for name in {n.rsplit(".", 1)[0] for n in tensors}:
            grid = None if name == "native" else tuple(int(g) for g in name.split("x"))
            keys, feats = tensors[f"{name}.keys"], tensors[f"{name}.features"]
            width, raw = keys.shape[1], keys.numpy().tobytes()
            out.update({(grid, raw[i * width : (i + 1) * width]): f for i, f in enumerate(feats.unbind(0))})
        return out
    except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as e:
        warnings.warn(
            f"ignoring the unreadable teacher-feature cache {path} ({e}); computing the features again", stacklevel=2
        )
        return {}
