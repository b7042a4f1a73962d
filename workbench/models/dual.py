"""The dual-encoder student: a ViT image tower and a BERT text tower, each usable alone.

* `encode_image(pixels)` depends on the image only, so its output can be computed once and cached
  (the reason a dual encoder is fast); `encode_text(ids, mask)` depends on the text only.
* The DiDE shallow fusion head mixes the two [CLS] vectors:
  `Linear(2d, 2d) -> LayerNorm -> GELU -> Linear(2d, d)` on `[text_cls; image_cls]`, then the
  task classifier. For NLVR the text is encoded once, fused with each image, the fused vectors
  concatenated and classified.
* Retrieval: projections of each [CLS] into a shared space and a learnable temperature (CLIP).

The towers never attend to each other. DiDE's "virtual" cross-attention (text-tower queries
against image-tower keys) exists only inside the distillation loss; `qk_layers` exposes the
projections it needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import BertConfig, BertModel, ViTConfig, ViTModel

from workbench.models.fusion import capture_qk, centre_patch_projection, grid_positions
from workbench.models.heads import classifier
from workbench.models.stem import conv_stem, stem_channels, stem_projection, stem_width


def dual_configs(
    vocab_size: int,
    image_size: int = 64,
    patch_size: int = 16,
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    max_text_len: int = 64,
    image_layers: int | None = None,
    text_layers: int | None = None,
    conv_stem: tuple[int, ...] | list[int] = (),
) -> tuple[ViTConfig, BertConfig]:
    """Tower configs; `num_layers` sets both towers unless `image_layers` / `text_layers` say otherwise.
    `conv_stem`: an optional convolutional stem before the image tower's patch projection (as the teacher's)."""
    image_layers = image_layers or num_layers
    text_layers = text_layers or num_layers
    common = dict(
        hidden_size=hidden_size,
        num_attention_heads=num_heads,
        intermediate_size=4 * hidden_size,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        initializer_range=hidden_size**-0.5,
    )  # as the teacher (see fusion_config)
    stem = {"conv_stem": list(conv_stem), "num_channels": stem_width(conv_stem)} if conv_stem else {}
    vision = ViTConfig(
        image_size=image_size, patch_size=patch_size, num_hidden_layers=image_layers, qkv_bias=True, **common, **stem
    )
    text = BertConfig(
        vocab_size=vocab_size, num_hidden_layers=text_layers, max_position_embeddings=max_text_len, **common
    )
    return vision, text


@dataclass
class DualOutput:
    logits: torch.Tensor | None
    # {layer: (q, k)} each [B, H, N, head_dim]: text tower, and one dict per image for the image tower
    qk_text: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    qk_image: list[dict[int, tuple[torch.Tensor, torch.Tensor]]] = field(default_factory=list)
    text_states: torch.Tensor | None = None
    image_states: list[torch.Tensor] = field(default_factory=list)
    grid: tuple[int, int] = (0, 0)


def _qk_modules(tower: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
    """(query, key) projection modules per layer, for BERT and ViT alike."""
    if isinstance(tower, BertModel):
        return [(layer.attention.self.query, layer.attention.self.key) for layer in tower.encoder.layer]
    return [(layer.attention.q_proj, layer.attention.k_proj) for layer in tower.layers]


class DualStudent(nn.Module):
    kind = "dual"

    def __init__(
        self,
        vision_config: ViTConfig,
        text_config: BertConfig,
        num_labels: int,
        num_images: int = 1,
        embed_dim: int = 128,
    ):
        super().__init__()
        self.vision_config, self.text_config = vision_config, text_config
        self.num_images = num_images
        d = text_config.hidden_size
        if vision_config.hidden_size != d:
            raise ValueError("image and text towers must have the same width for the DiDE fusion head")
        self.image_tower = ViTModel(vision_config, add_pooling_layer=False)
        channels = stem_channels(vision_config)
        self.stem = conv_stem(channels)  # the tower then reads the stem's feature map (num_channels = its width)
        if self.stem is not None:
            patches = self.image_tower.embeddings.patch_embeddings
            patches.projection = stem_projection(channels, d, vision_config.patch_size)
            patches.num_channels = self.stem.out_channels
        self.text_tower = BertModel(text_config, add_pooling_layer=False)
        self.fusion = nn.Sequential(nn.Linear(2 * d, 2 * d), nn.LayerNorm(2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.classifier = classifier(d, num_images, max(num_labels, 1))
        self.image_proj = nn.Linear(d, embed_dim, bias=False)
        self.text_proj = nn.Linear(d, embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        with torch.no_grad():  # readable positions, as for the teacher (docs/design.md, "Models")
            grid = vision_config.image_size // vision_config.patch_size
            self.image_tower.embeddings.position_embeddings[0, 1:] = grid_positions(grid, d)

    @property
    def num_heads(self) -> int:
        return self.text_config.num_attention_heads

    @property
    def image_size(self) -> int:
        """Side of the square images the model reads, in pixels (the collator resizes to it)."""
        return self.vision_config.image_size

    @property
    def text_limit(self) -> int:
        """Longest token sequence the text positions allow (the collator truncates to it)."""
        return self.text_config.max_position_embeddings

    @property
    def attn_implementation(self) -> str:
        """The towers' attention: "sdpa" (HF's default, fused; the q/k hooks still fire) or "eager"."""
        return self.text_config._attn_implementation

    @attn_implementation.setter
    def attn_implementation(self, mode: str) -> None:
        if mode not in ("auto", "sdpa", "eager"):
            raise ValueError(f"attention mode must be 'auto', 'sdpa' or 'eager', got {mode!r}")
        for tower in (self.image_tower, self.text_tower):  # "auto": fused, as HF does by default
            tower.set_attn_implementation("eager" if mode == "eager" else "sdpa")

    def centre_patch_embedding(self, pixel_values: torch.Tensor) -> None:
        with torch.no_grad():
            inputs = pixel_values if self.stem is None else self.stem(pixel_values)
        centre_patch_projection(self.image_tower.embeddings.patch_embeddings.projection, inputs)

    def encode_image(
        self, pixel_values: torch.Tensor, qk_layers: tuple[int, ...] = (), qk_store: dict | None = None
    ) -> torch.Tensor:
        """[B, 3, H, W] -> [B, 1 + P, d] token states (CLS first). Depends on the image only."""
        with capture_qk(_qk_modules(self.image_tower), qk_layers, self.num_heads, {} if qk_store is None else qk_store):
            if self.stem is not None:
                # HF ViT reads a square input with as many patches as positions unchanged, so the stem's
                # smaller map (patch_size / 2**stages per token) keeps the configured grid's positions
                pixel_values = self.stem(pixel_values)
            return self.image_tower(pixel_values=pixel_values, interpolate_pos_encoding=True).last_hidden_state

    def encode_text(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        qk_layers: tuple[int, ...] = (),
        qk_store: dict | None = None,
    ) -> torch.Tensor:
        """[B, T] -> [B, T, d] token states. Depends on the text only."""
        with capture_qk(_qk_modules(self.text_tower), qk_layers, self.num_heads, {} if qk_store is None else qk_store):
            return self.text_tower(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def fuse(self, text_states: torch.Tensor, image_states: list[torch.Tensor]) -> torch.Tensor:
        """Task logits from the towers' outputs: DiDE head on [text_cls; image_cls] per image."""
        fused = [self.fusion(torch.cat([text_states[:, 0], img[:, 0]], dim=-1)) for img in image_states]
        return self.classifier(torch.cat(fused, dim=-1))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        image_states: list[torch.Tensor] | None = None,
        qk_layers: tuple[int, ...] = (),
    ) -> DualOutput:
        """pixel_values [B, images, 3, H, W]; or pass cached `image_states` (one [B, 1+P, d] per image)."""
        qk_text: dict = {}
        text_states = self.encode_text(input_ids, attention_mask, qk_layers, qk_text)
        qk_image: list[dict] = []
        grid = (0, 0)
        if image_states is None:
            if pixel_values is None:
                raise ValueError("pass pixel_values or cached image_states")
            if pixel_values.dim() == 4:
                pixel_values = pixel_values[:, None]
            if pixel_values.shape[1] != self.num_images:
                raise ValueError(
                    f"this model takes {self.num_images} image(s) per example, got {pixel_values.shape[1]}"
                )
            image_states = []
            for j in range(self.num_images):
                store: dict = {}
                image_states.append(self.encode_image(pixel_values[:, j], qk_layers, store))
                qk_image.append(store)
            p = self.vision_config.patch_size
            grid = (pixel_values.shape[-2] // p, pixel_values.shape[-1] // p)
        return DualOutput(
            logits=self.fuse(text_states, image_states),
            qk_text=qk_text,
            qk_image=qk_image,
            text_states=text_states,
            image_states=image_states,
            grid=grid,
        )

    def embed_for_retrieval(
        self, text_states: torch.Tensor | None = None, image_states: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """L2-normalised CLIP-style embeddings of [CLS] states (either side may be None)."""
        t = nn.functional.normalize(self.text_proj(text_states[:, 0]), dim=-1) if text_states is not None else None
        i = nn.functional.normalize(self.image_proj(image_states[:, 0]), dim=-1) if image_states is not None else None
        return t, i
