"""The training state on disk: `<out>/state/` holds the model, optimizer and scheduler states, the RNG states
and the loop's progress, as safetensors for tensors and JSON for the rest (no pickle). Written atomically
(`state.tmp`, then renamed; a crash mid-swap leaves `state.old`, which `latest_state` picks up)."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from workbench.errors import CheckpointError


def save_state(dirpath: Path, model: nn.Module, optimizer, scheduler, progress: dict) -> None:
    """Write the training state to `dirpath` atomically; `progress` is the loop's own JSON record."""
    tmp = dirpath.with_name(dirpath.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
    opt = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, st in opt["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    tensors["rng.torch"] = torch.get_rng_state()
    save_file(tensors, tmp / "optimizer.safetensors")
    (tmp / "state.json").write_text(
        json.dumps(
            {
                "progress": progress,
                "param_groups": opt["param_groups"],
                "optimizer_scalars": scalars,
                "scheduler": scheduler.state_dict(),
                "python_random": _jsonable(random.getstate()),
            }
        )
    )
    for f in [*tmp.iterdir(), tmp]:  # on disk before the swap, so a power cut cannot leave a renamed empty file
        _fsync(f)
    # a crash between these two renames leaves only `<state>.old`, a complete checkpoint: `latest_state` uses it
    old = dirpath.with_name(dirpath.name + ".old")
    if dirpath.exists():
        if old.exists():
            shutil.rmtree(old)
        dirpath.rename(old)
    tmp.rename(dirpath)
    _fsync(dirpath.parent)
    if old.exists():
        shutil.rmtree(old)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def latest_state(dirpath: Path) -> Path | None:
    """The training state to resume from: `dirpath`, or `<dirpath>.old` if a crash came mid-swap."""
    old = dirpath.with_name(dirpath.name + ".old")
    return dirpath if dirpath.exists() else old if (old / "state.json").exists() else None


def _jsonable(obj):
    return [_jsonable(x) for x in obj] if isinstance(obj, (tuple, list)) else obj


def _tuplify(obj):
    return tuple(_tuplify(x) for x in obj) if isinstance(obj, list) else obj


def load_state(dirpath: Path, model: nn.Module, optimizer, scheduler) -> dict:
    """Restore model, optimizer, scheduler and RNG states from `dirpath`; returns the saved progress."""
    try:
        meta = json.loads((dirpath / "state.json").read_text())
        model.load_state_dict(load_file(dirpath / "model.safetensors"))
        tensors = load_file(dirpath / "optimizer.safetensors")
    except (OSError, ValueError, SafetensorError) as e:
        raise CheckpointError(f"cannot resume from {dirpath}: {e}") from e
    state: dict = {}
    for key, value in tensors.items():
        if key.startswith("rng."):
            continue
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    for key, value in meta["optimizer_scalars"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    random.setstate(_tuplify(meta["python_random"]))
    return meta["progress"]
