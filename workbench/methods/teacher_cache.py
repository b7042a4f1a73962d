"""The frozen teacher's outputs on disk, so that an epoch after the first (or another run over the same data:
seeds, ablations) does not run the teacher again.

What is kept, per training example (keyed by a hash of its text, its images and their pixel masks): the
teacher's logits and, for attention distillation, its cross-modal scores at the distilled layers (per image:
t2i [heads, text, image tokens] and i2t [heads, image tokens, text], sliced to the example's real tokens).
Scores, not q/k: they are what the loss reads, and for ViLT-B/32 (12 heads, 40 text and 145 image tokens,
head dim 64) they take 2 x 12 x 40 x 145 values against 2 x 185 x 768 for q and k. Stored in safetensors
shards (`shard-<n>.safetensors`, written atomically as they fill) under `<folder>/<teacher digest>/`, so a
cache is only ever read by the teacher that wrote it. Values are kept in `dtype` (float32: the cached run follows
the uncached one to float rounding: a teacher's outputs for one example differ in their last bits with the batch
it is padded in, measured 7e-6 on the weights after two tiny epochs; bfloat16: half the disk, scores rounded).

Sizes (per example, float32, real tokens only): logits 4 x labels bytes (12.5 KB for VQAv2's 3,129 answers);
one layer's scores 2 x heads x text tokens x image tokens x 4 bytes: for ViLT-B/32, a 10-token question and a
384 x 608 image (229 image tokens), 2 x 12 x 10 x 229 x 4 = 220 KB. VQAv2's 443,757 training questions: about
5.5 GB of logits and about 100 GB with one layer's scores (half in bfloat16).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from workbench.methods.mad_features import teacher_digest

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def example_keys(batch) -> list[str]:
    """One hex key per example: a hash of its token ids (real tokens only), its pixels and its pixel mask."""
    keys = []
    for i in range(batch.input_ids.shape[0]):
        h = hashlib.blake2b(digest_size=16)
        ids = batch.input_ids[i][batch.attention_mask[i].bool()]
        for part in (ids, batch.pixel_values[i], None if batch.pixel_mask is None else batch.pixel_mask[i]):
            if part is not None:
                h.update(part.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
                h.update(b"|")
        keys.append(h.hexdigest())
    return keys


class TeacherOutputCache:
    """`get(keys)` -> per key a {name: tensor} dict or None; `put(key, tensors)`; `flush()` writes what is new.

    Entries are read lazily from their shard (safetensors `safe_open`), so a cache larger than memory works."""

    def __init__(self, folder: str | Path, teacher, dtype: str = "float32", shard_size: int = 512):
        if dtype not in DTYPES:
            raise ValueError(f"teacher cache dtype {dtype!r}: expected one of {sorted(DTYPES)}")
        self.dir = Path(folder) / teacher_digest(teacher)
        self.dtype, self.shard_size = DTYPES[dtype], shard_size
        self.index: dict[str, Path] = {}  # key -> its shard
        self.pending: dict[str, torch.Tensor] = {}  # "<key>.<name>" -> tensor, not yet written
        self.pending_keys: set[str] = set()
        self.hits = self.misses = 0
        self._read_index()

    def _read_index(self) -> None:
        for shard in sorted(self.dir.glob("shard-*.safetensors")):
            try:
                with safe_open(shard, "pt") as f:
                    for name in f.keys():
                        self.index.setdefault(name.split(".", 1)[0], shard)
            except (SafetensorError, OSError) as e:  # a damaged shard: its entries are computed again
                warnings.warn(f"ignoring the unreadable teacher-output shard {shard} ({e})", stacklevel=2)

    def __contains__(self, key: str) -> bool:
        return key in self.index or key in self.pending_keys

    def get(self, keys: list[str]) -> list[dict | None]:
        out = []
        for key in keys:
            entry = self._entry(key)
            self.hits, self.misses = self.hits + (entry is not None), self.misses + (entry is None)
            out.append(entry)
        return out

    def _entry(self, key: str) -> dict | None:
        if key in self.pending_keys:
            prefix = f"{key}."
            return {n[len(prefix) :]: t for n, t in self.pending.items() if n.startswith(prefix)}
        shard = self.index.get(key)
        if shard is None:
            return None
        try:
            with safe_open(shard, "pt") as f:
                prefix = f"{key}."
                return {n[len(prefix) :]: f.get_tensor(n) for n in f.keys() if n.startswith(prefix)}
        except (SafetensorError, OSError):
            del self.index[key]
            return None

    def put(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        if key in self:
            return
        for name, t in tensors.items():
            self.pending[f"{key}.{name}"] = t.detach().to("cpu", self.dtype).contiguous()
        self.pending_keys.add(key)
        if len(self.pending_keys) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        """Write the pending entries as a new shard (atomically: a reader never sees half a shard)."""
        if not self.pending_keys:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        n = len(list(self.dir.glob("shard-*.safetensors")))
        path = self.dir / f"shard-{n:05d}-{os.getpid()}.safetensors"
        tmp = path.with_suffix(".tmp")
        save_file(self.pending, tmp)
        os.replace(tmp, path)
        self.index.update(dict.fromkeys(self.pending_keys, path))
        self.pending, self.pending_keys = {}, set()


# ----------------------------------------------------------------------------------------------
# a batch's teacher outputs <-> per-example cache entries


def teacher_outputs(teacher, batch, layers: tuple[int, ...] = ()) -> dict:
    """Run the teacher: {"logits": [B, L], "cross": per image, per distilled layer (sorted), (t2i, i2t) scores}."""
    from workbench import losses

    t = teacher(batch.input_ids, batch.attention_mask, batch.pixel_values, qk_layers=layers,
                pixel_mask=batch.pixel_mask)  # fmt: skip
    cross = [[losses.teacher_cross_scores(*qk[lt], text_len=t.text_len) for lt in sorted(qk)] for qk in t.qk]
    return {"logits": t.logits, "cross": cross}


def _real_image_tokens(image_masks, j: int, i: int, n_tokens: int) -> torch.Tensor:
    mask = image_masks[j] if image_masks else None
    if mask is None:
        return torch.arange(n_tokens)
    return mask[i].bool().nonzero().flatten().cpu()


def entry_of(out: dict, batch, i: int, image_masks) -> dict[str, torch.Tensor]:
    """Example `i` of a batch's teacher outputs, sliced to its real text tokens and real image tokens (its
    entries do not depend on what it was batched with)."""
    t = int(batch.attention_mask[i].sum())
    entry = {"logits": out["logits"][i]}
    for j, layers in enumerate(out["cross"]):
        for n, (t2i, i2t) in enumerate(layers):
            real = _real_image_tokens(image_masks, j, i, t2i.shape[-1]).to(t2i.device)
            entry[f"t2i.{j}.{n}"] = t2i[i][:, :t].index_select(-1, real)
            entry[f"i2t.{j}.{n}"] = i2t[i].index_select(-2, real)[:, :, :t]
    return entry


def assemble(entries: list[dict], batch, image_masks, n_images: int, n_layers: int) -> dict:
    """A batch's teacher outputs from cache entries, in this batch's padding: positions of padding tokens
    are 0, which the attention loss masks (padded text queries and keys, padded image tokens)."""
    device = batch.input_ids.device
    text_len = batch.input_ids.shape[1]
    out = {"logits": torch.stack([e["logits"] for e in entries]).to(device), "cross": []}
    for j in range(n_images):
        layers = []
        for n in range(n_layers):
            first = entries[0][f"t2i.{j}.{n}"]
            mask = image_masks[j] if image_masks else None
            p = mask.shape[1] if mask is not None else first.shape[-1]
            t2i = first.new_zeros(len(entries), first.shape[0], text_len, p)
            i2t = first.new_zeros(len(entries), first.shape[0], p, text_len)
            for i, e in enumerate(entries):
                t, real = int(batch.attention_mask[i].sum()), _real_image_tokens(image_masks, j, i, p)
                t2i[i, :, :t, real] = e[f"t2i.{j}.{n}"]
                i2t[i, :, real, :t] = e[f"i2t.{j}.{n}"]
            layers.append((t2i.to(device), i2t.to(device)))
        out["cross"].append(layers)
    return out


def cache_key_batch(batch):
    """`example_keys` on each example's own content: padded pixels cropped to the image's real region."""
    if batch.pixel_mask is None:
        return example_keys(batch)
    keys = []
    for i in range(batch.input_ids.shape[0]):
        h = hashlib.blake2b(digest_size=16)
        h.update(batch.input_ids[i][batch.attention_mask[i].bool()].cpu().numpy().tobytes())
        for j in range(batch.pixel_values.shape[1]):
            mask = batch.pixel_mask[i, j].bool()
            rows, cols = int(mask.any(1).sum()), int(mask.any(0).sum())
            pixels = batch.pixel_values[i, j, :, :rows, :cols].detach().cpu().contiguous()
            h.update(f"|{rows}x{cols}|".encode() + pixels.view(-1).view(torch.uint8).numpy().tobytes())
        keys.append(h.hexdigest())
    return keys
