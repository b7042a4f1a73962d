"""A Hugging Face `CLIPModel` folder as a dual-encoder teacher, behind our dual encoder's interface.

`ClipDualEncoder` exposes what retrieval code calls on our `DualStudent`: `encode_image(pixels)`,
`encode_text(ids, mask)` (each returning [B, 1, width] states whose position 0 is CLIP's pooled
vector), `embed_for_retrieval(text_states, image_states)` (CLIP's projections, L2-normalised) and
`logit_scale`, plus `vision_config` / `text_config` so `image_size` and `text_limit` work.

Pixels come in as the workbench makes them ([-1, 1], any size); the wrapper resizes them to CLIP's
resolution and applies CLIP's mean / std (from `preprocessor_config.json` when the folder has one,
else OpenAI's). Text: a CLIP folder brings its own tokenizer (`tokenizer.json`, or `vocab.json` +
`merges.txt`), loaded from the folder only; a folder without one is refused, since CLIP's text tower
reads nothing else. Weights load from safetensors only (`use_safetensors=True`), never a pickle.

`load_dual_encoder(path)` takes either kind of folder: ours (`workbench.json`, kind `dual`) or CLIP.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from workbench.errors import CheckpointError
from workbench.models.io import PICKLE_SUFFIXES, Checkpoint, image_normalisation, load_checkpoint

# OpenAI CLIP's normalisation (transformers.utils.constants.OPENAI_CLIP_MEAN / STD)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json")


class ClipDualEncoder(nn.Module):
    """A `transformers.CLIPModel` with the dual encoder's retrieval interface (see module docstring)."""

    kind = "clip"
    num_images = 1

    def __init__(self, clip: nn.Module, image_mean=CLIP_MEAN, image_std=CLIP_STD):
        super().__init__()
        self.clip = clip
        self.vision_config = clip.config.vision_config
        self.text_config = clip.config.text_config
        self.register_buffer("mean", torch.tensor(image_mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(image_std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    @property
    def logit_scale(self) -> nn.Parameter:
        return self.clip.logit_scale

    @property
    def embed_dim(self) -> int:
        return self.clip.config.projection_dim

    @property
    def image_size(self) -> int:
        """CLIP's input resolution (`preprocess` resizes any other size to it)."""
        return self.vision_config.image_size

    @property
    def text_limit(self) -> int:
        """Longest token sequence the text positions allow (the collator truncates to it)."""
        return self.text_config.max_position_embeddings

    def preprocess(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> CLIP's resolution and normalisation."""
        size = self.vision_config.image_size
        x = (pixel_values.float() + 1) / 2
        if x.shape[-2:] != (size, size):
            x = nn.functional.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
        return (x - self.mean) / self.std

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, 1, vision width]: CLIP's pooled (post-layernorm [CLS]) state."""
        return self.clip.vision_model(pixel_values=self.preprocess(pixel_values)).pooler_output[:, None]

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, T] -> [B, 1, text width]: CLIP's pooled state (the end-of-text token's)."""
        return self.clip.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output[:, None]

    def embed_for_retrieval(
        self, text_states: torch.Tensor | None = None, image_states: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """L2-normalised projections, as `DualStudent.embed_for_retrieval`."""
        t = i = None
        if text_states is not None:
            t = nn.functional.normalize(self.clip.text_projection(text_states[:, 0]), dim=-1)
        if image_states is not None:
            i = nn.functional.normalize(self.clip.visual_projection(image_states[:, 0]), dim=-1)
        return t, i


def is_clip_folder(path: str | Path) -> bool:
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == "clip"
    except json.JSONDecodeError:
        return False


def load_clip(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """A `CLIPModel.save_pretrained` folder (safetensors + its tokenizer) as a `Checkpoint` of a
    `ClipDualEncoder`. Nothing is downloaded; pickle weights are refused."""
    from transformers import AutoTokenizer, CLIPModel

    path = Path(path)
    if not is_clip_folder(path):
        raise CheckpointError(f"{path} is not a CLIP folder (config.json with model_type: clip)")
    if not any(path.glob("model*.safetensors")):
        pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
        hint = (
            f" (it holds only pickle weights: {', '.join(pickles)}; the workbench never unpickles)" if pickles else ""
        )
        raise CheckpointError(f"{path} has no model.safetensors{hint}; re-save with save_pretrained(folder)")
    if not any((path / f).exists() for f in _TOKENIZER_FILES):
        raise CheckpointError(
            f"{path} has no CLIP tokenizer (tokenizer.json, or vocab.json + merges.txt): save the tokenizer "
            "(or the CLIPProcessor) into the folder too; CLIP's text tower cannot read another tokenizer's ids"
        )
    try:
        clip = CLIPModel.from_pretrained(str(path), local_files_only=True, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"could not load the CLIP folder {path}: {e}") from e
    mean, std = image_normalisation(path, CLIP_MEAN, CLIP_STD)
    model = ClipDualEncoder(clip, mean, std).to(device).eval()
    meta = {"kind": "clip", "task": "retrieval", "labels": [], "source": "huggingface-clip"}
    meta["image_size"] = clip.config.vision_config.image_size
    return Checkpoint(model, tokenizer, meta, path)


def load_dual_encoder(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """A dual-encoder teacher or student folder: ours (kind `dual`) or a Hugging Face CLIP one."""
    if is_clip_folder(path):
        return load_clip(path, device)
    return load_checkpoint(path, device=device, kind="dual")


__all__ = ["ClipDualEncoder", "is_clip_folder", "load_clip", "load_dual_encoder"]
