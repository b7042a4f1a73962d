"""Weights of a checkpoint folder, in one `model.safetensors` or sharded (`model.safetensors.index.json`).

`save_pretrained(folder, max_shard_size=...)` splits a large model into `model-00001-of-0000N.safetensors`
files and writes an index, `{"metadata": {...}, "weight_map": {tensor name: shard file}}`. `load_weights`
reads either layout into one state dict; only JSON and safetensors are parsed (never pickle). The index is
checked before any shard is read: shard names must be plain `.safetensors` file names in the folder (no
path elsewhere), every shard must exist, and each must hold exactly the tensors the index gives it.
Errors are `CheckpointError`s naming the file.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from workbench.errors import CheckpointError

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"


def read_index(folder: str | Path) -> dict[str, list[str]]:
    """{shard file name: [tensor names]} from a folder's index, validated; raises `CheckpointError`."""
    folder = Path(folder)
    path = folder / INDEX
    try:
        index = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise CheckpointError(f"{folder} has no {INDEX}") from e
    except ValueError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}); the checkpoint folder is damaged") from e
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{path} has no weight_map {{tensor name: shard file}}")
    shards: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or Path(shard).name != shard or not shard.endswith(".safetensors"):
            raise CheckpointError(
                f"{path}: tensor {name!r} is mapped to {shard!r}; shards must be .safetensors files in the folder"
            )
        shards.setdefault(shard, []).append(name)
    missing = [s for s in shards if not (folder / s).is_file()]
    if missing:
        raise CheckpointError(f"{path} lists shards that are not in {folder}: {', '.join(sorted(missing))}")
    return shards


def weight_files(folder: str | Path) -> list[Path]:
    """The weight files of a folder: [model.safetensors], or its shards in name order; [] when it has neither."""
    folder = Path(folder)
    if (folder / SINGLE).is_file():
        return [folder / SINGLE]
    if (folder / INDEX).is_file():
        return [folder / s for s in sorted(read_index(folder))]
    return []


def has_weights(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / SINGLE).is_file() or (folder / INDEX).is_file()


def _load_shard(path: Path, expected: list[str]) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as f:  # the header only: check the names before reading
            names = set(f.keys())
        state = load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is truncated or corrupted ({e})") from e
    if names != set(expected):
        absent, extra = sorted(set(expected) - names), sorted(names - set(expected))
        raise CheckpointError(
            f"{path} does not hold what {INDEX} says: missing {absent[:5]}, not in the index {extra[:5]}"
        )
    return state


def load_sharded_state_dict(folder: str | Path) -> dict[str, torch.Tensor]:
    """One state dict from a sharded folder (its index and every shard)."""
    folder = Path(folder)
    state: dict[str, torch.Tensor] = {}
    for shard, names in sorted(read_index(folder).items()):
        state.update(_load_shard(folder / shard, names))
    return state


def load_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a folder's `model.safetensors`, or of its shards; raises `CheckpointError`."""
    folder = Path(folder)
    if (folder / SINGLE).is_file():
        try:
            return load_file(folder / SINGLE)
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{folder / SINGLE} is truncated or corrupted ({e})") from e
    if (folder / INDEX).is_file():
        return load_sharded_state_dict(folder)
    raise CheckpointError(f"{folder} has neither {SINGLE} nor {INDEX}")


# digests already computed in this process, keyed by each weight file's path, inode, size and change times: a
# results collection or a resumed grid asks for the same teacher's digest once per run (~1 s a GB each time)
_DIGESTS: dict[tuple, str] = {}
# a file changed this recently is hashed every time: a rewrite within one timestamp tick (milliseconds on most
# file systems, more on some network ones) could keep size and times, and a cached digest would be stale
RACY_SECONDS = 2.0


def weights_digest(folder: str | Path) -> str | None:
    """A short hash of a folder's weight files (one file or every shard, in name order), or None without any.
    Remembered for files unchanged since (inode, size, modification and change time) and not changed within
    `RACY_SECONDS` of the first hashing."""
    files = weight_files(folder)
    if not files:
        return None
    stats = [path.stat() for path in files]
    key = tuple(
        (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) for path, st in zip(files, stats)
    )
    if key in _DIGESTS:
        return _DIGESTS[key]
    digest = hashlib.sha256()
    for path in files:
        with open(path, "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(block)
    short = digest.hexdigest()[:16]
    newest = max(max(st.st_mtime_ns, st.st_ctime_ns) for st in stats) / 1e9
    if time.time() - newest > RACY_SECONDS:
        _DIGESTS[key] = short
    return short
