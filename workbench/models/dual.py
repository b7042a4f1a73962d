"""The dual-encoder student: a ViT image tower and a text tower, each usable alone.

The text tower is BERT (`text_arch="bert"`, the default: post-LayerNorm blocks) or, with `text_arch="vilt"`,
ViLT's: BERT-style embeddings (word, position, token type, LayerNorm) then the same pre-LayerNorm blocks as
the image tower and a final LayerNorm (`PreNormTextTower`). The "vilt" tower is what the official DiDE code
uses (both towers are ViLT transformers), so both towers can start from one pretrained ViLT checkpoint
(`workbench.models.init_from`, docs/student-init.md). The variant is part of the text config
(`text_arch`), so checkpoints save and load it.

* `encode_image(pixels)` depends on the image only, so its output can be computed once and cached
  (the reason a dual encoder is fast); `encode_text(ids, mask)` depends on the text only.
* The DiDE shallow fusion head mixes the two [CLS] vectors:
  `Linear(2d, 2d) -> LayerNorm -> GELU -> Linear(2d, d)` on `[text_cls; image_cls]`, then the
  task classifier. For NLVR the text is encoded once, fused with each image, the fused vectors
  concatenated and classified.
* Retrieval: projections of each [CLS] into a shared space and a learnable temperature (CLIP).

Images of any size (the aspect-ratio pipeline of real ViLT folders): the image tower interpolates its position
embeddings to each image's patch grid (bicubic, as HF's ViT `interpolate_pos_encoding`), and with a
`pixel_mask` (a padded batch) each image gets positions for its own grid and its padding patches are masked
out of attention, so an image's features do not depend on what it was batched with. Square images at the
configured size (our own checkpoints) take HF's ViT code path unchanged.

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
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.vilt.modeling_vilt import TextEmbeddings
from transformers.models.vit.modeling_vit import ViTLayer

from workbench.models.fusion import capture_qk, centre_patch_projection, grid_positions
from workbench.models.heads import classifier
from workbench.models.preprocess import patch_grid_mask
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
    text_arch: str = "bert",
) -> tuple[ViTConfig, BertConfig]:
    """Tower configs; `num_layers` sets both towers unless `image_layers` / `text_layers` say otherwise.
    `conv_stem`: an optional convolutional stem before the image tower's patch projection (as the teacher's).
    `text_arch`: "bert" or "vilt" (see the module docstring); absent from the config when "bert", as before."""
    if text_arch not in TEXT_ARCHS:
        raise ValueError(f"text_arch must be one of {TEXT_ARCHS}, got {text_arch!r}")
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
    # ViLT's blocks have biased q/k/v (`qkv_bias`, read by ViT's layer); BERT's always do
    arch = {"text_arch": text_arch, "qkv_bias": True} if text_arch != "bert" else {}
    text = BertConfig(
        vocab_size=vocab_size, num_hidden_layers=text_layers, max_position_embeddings=max_text_len, **common, **arch
    )
    return vision, text


TEXT_ARCHS = ("bert", "vilt")


def text_arch_of(text_config: BertConfig) -> str:
    """The text tower variant a text config asks for: "bert" unless it says "vilt"."""
    return getattr(text_config, "text_arch", "bert")


class PreNormTextTower(nn.Module):
    """ViLT's transformer on text alone (`text_arch="vilt"`): ViLT's text embeddings (word + position + token
    type, LayerNorm), the image tower's pre-LayerNorm blocks (HF's `ViTLayer`, ViLT's block layout), a final
    LayerNorm. Called as a `BertModel` is: `(input_ids, attention_mask, output_attentions)` -> an output with
    `last_hidden_state` [B, T, d] (CLS first) and, when asked, `attentions`. Attention follows
    `config._attn_implementation` ("sdpa" by default, as HF's towers; "eager" returns the probabilities)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        if not hasattr(config, "qkv_bias"):
            config.qkv_bias = True
        config._attn_implementation = config._attn_implementation or "sdpa"
        self.config = config
        self.embeddings = TextEmbeddings(config)
        self.layers = nn.ModuleList([ViTLayer(config) for _ in range(config.num_hidden_layers)])
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """As HF's BERT and ViT: normal(0, initializer_range) weights, zero biases, unit LayerNorms."""
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, 0.0, std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
            if getattr(module, "padding_idx", None) is not None:
                module.weight.data[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def set_attn_implementation(self, mode: str) -> None:
        self.config._attn_implementation = mode

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, output_attentions: bool = False
    ) -> BaseModelOutput:
        hidden = self.embeddings(input_ids=input_ids)
        mask = create_bidirectional_mask(config=self.config, inputs_embeds=hidden, attention_mask=attention_mask)
        probs: list[torch.Tensor] = []
        hooks = [  # HF's layers drop the probabilities; their attention module returns them (eager only)
            layer.attention.register_forward_hook(lambda _m, _i, out: probs.append(out[1]))
            for layer in self.layers
            if output_attentions
        ]
        try:
            for layer in self.layers:
                hidden = layer(hidden, mask)
        finally:
            for h in hooks:
                h.remove()
        return BaseModelOutput(last_hidden_state=self.layernorm(hidden), attentions=tuple(probs) or None)


@dataclass
class DualOutput:
    logits: torch.Tensor | None
    # {layer: (q, k)} each [B, H, N, head_dim]: text tower, and one dict per image for the image tower
    qk_text: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    qk_image: list[dict[int, tuple[torch.Tensor, torch.Tensor]]] = field(default_factory=list)
    text_states: torch.Tensor | None = None
    image_states: list[torch.Tensor] = field(default_factory=list)
    grid: tuple[int, int] = (0, 0)
    # per image: [B, 1 + P] with 1 on real image tokens and 0 on padding patches; None when every token is real
    image_masks: list[torch.Tensor | None] = field(default_factory=list)


def _qk_modules(tower: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
    """(query, key) projection modules per layer, for BERT, ViT and the pre-LayerNorm text tower alike."""
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
        arch = text_arch_of(text_config)
        if arch not in TEXT_ARCHS:
            raise ValueError(f"text_arch must be one of {TEXT_ARCHS}, got {arch!r}")
        if arch == "bert":
            self.text_tower = BertModel(text_config, add_pooling_layer=False)
        else:
            self.text_tower = PreNormTextTower(text_config)
        # set by a pretrained transplant (`workbench.models.init_from`): the patch projection then keeps its bias
        self.pretrained_patches = False
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
    def text_arch(self) -> str:
        """The text tower variant: "bert" (post-LayerNorm) or "vilt" (ViLT's pre-LayerNorm blocks)."""
        return text_arch_of(self.text_config)

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
        """Data-dependent init of a fresh patch projection (`centre_patch_projection`); a pretrained one is kept."""
        if self.pretrained_patches:
            return
        with torch.no_grad():
            inputs = pixel_values if self.stem is None else self.stem(pixel_values)
        centre_patch_projection(self.image_tower.embeddings.patch_embeddings.projection, inputs)

    def encode_image(
        self,
        pixel_values: torch.Tensor,
        qk_layers: tuple[int, ...] = (),
        qk_store: dict | None = None,
        pixel_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """[B, 3, H, W] -> [B, 1 + P, d] token states (CLS first). Depends on the image only (with a [B, H, W]
        `pixel_mask`, on each image's own pixels only: padding patches are masked)."""
        with capture_qk(_qk_modules(self.image_tower), qk_layers, self.num_heads, {} if qk_store is None else qk_store):
            if pixel_mask is None and self._vit_reads(pixel_values):
                if self.stem is not None:
                    # HF ViT reads a square input with as many patches as positions unchanged, so the stem's
                    # smaller map (patch_size / 2**stages per token) keeps the configured grid's positions
                    pixel_values = self.stem(pixel_values)
                return self.image_tower(pixel_values=pixel_values, interpolate_pos_encoding=True).last_hidden_state
            embeds, token_mask = self.embed_image(pixel_values, pixel_mask)
            return self._image_encoder(embeds, token_mask)

    def _vit_reads(self, pixel_values: torch.Tensor) -> bool:
        """Whether HF's ViT embeds these pixels itself: any size without a stem (it interpolates its positions to
        the grid), only the configured square with one (it would size the grid from the stem's smaller map)."""
        size = self.vision_config.image_size
        return self.stem is None or tuple(pixel_values.shape[-2:]) == (size, size)

    def image_token_mask(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None) -> torch.Tensor | None:
        """[B, 1 + P] image token mask (CLS first, 1 on real patches) of a padded batch, or None without a mask."""
        if pixel_mask is None:
            return None
        p = self.vision_config.patch_size
        patches = patch_grid_mask(pixel_mask, (pixel_values.shape[-2] // p, pixel_values.shape[-1] // p))
        return torch.cat([patches.new_ones(patches.shape[0], 1), patches.flatten(1)], dim=1)

    def embed_image(
        self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(embeddings [B, 1 + P, d], token mask [B, 1 + P] or None): ViT's embedding (patches + positions, CLS
        first, row-major) with each image's positions interpolated to its own patch grid (the valid part of a
        padded image; bicubic as HF's `interpolate_pos_encoding`), zero on padding patches."""
        emb = self.image_tower.embeddings
        projection = emb.patch_embeddings.projection
        x = pixel_values.to(projection.weight.dtype)
        x = projection(x if self.stem is None else self.stem(x))  # [B, d, gh, gw]
        b, d, gh, gw = x.shape
        token_mask = self.image_token_mask(pixel_values, pixel_mask)
        if token_mask is None:
            grids = [(gh, gw)] * b
        else:
            patches = token_mask[:, 1:].view(b, gh, gw)
            grids = list(zip(patches[:, :, 0].sum(1).tolist(), patches[:, 0, :].sum(1).tolist()))
        side = self.vision_config.image_size // self.vision_config.patch_size
        spatial = emb.position_embeddings[:, 1:].transpose(1, 2).reshape(1, d, side, side)
        by_grid: dict[tuple[int, int], torch.Tensor] = {}
        for h, w in set(grids):
            grid = spatial
            if (h, w) != (side, side):
                grid = nn.functional.interpolate(spatial, size=(h, w), mode="bicubic", align_corners=False)
            by_grid[h, w] = nn.functional.pad(grid, (0, gw - w, 0, gh - h))
        pos = torch.cat([by_grid[g] for g in grids]) if len(by_grid) > 1 else by_grid[grids[0]]
        x = (x + pos).flatten(2).transpose(1, 2)
        cls = (emb.cls_token + emb.position_embeddings[:, :1]).expand(b, -1, -1)
        return emb.dropout(torch.cat([cls, x], dim=1)), token_mask

    def _image_encoder(self, embeds: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
        """HF ViTModel's encoder on given embeddings: its layers (padding keys masked) and final LayerNorm."""
        tower = self.image_tower
        mask = create_bidirectional_mask(config=tower.config, inputs_embeds=embeds, attention_mask=token_mask)
        hidden = embeds
        for layer in tower.layers:
            hidden = layer(hidden, mask)
        return tower.layernorm(hidden)

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
        pixel_mask: torch.Tensor | None = None,
    ) -> DualOutput:
        """pixel_values [B, images, 3, H, W] (with, for a padded batch, pixel_mask [B, images, H, W]); or pass
        cached `image_states` (one [B, 1+P, d] per image)."""
        qk_text: dict = {}
        text_states = self.encode_text(input_ids, attention_mask, qk_layers, qk_text)
        qk_image: list[dict] = []
        masks: list[torch.Tensor | None] = []
        grid = (0, 0)
        if image_states is None:
            if pixel_values is None:
                raise ValueError("pass pixel_values or cached image_states")
            if pixel_values.dim() == 4:
                pixel_values = pixel_values[:, None]
            if pixel_mask is not None and pixel_mask.dim() == 3:
                pixel_mask = pixel_mask[:, None]
            if pixel_values.shape[1] != self.num_images:
                raise ValueError(
                    f"this model takes {self.num_images} image(s) per example, got {pixel_values.shape[1]}"
                )
            image_states = []
            for j in range(self.num_images):
                store: dict = {}
                mask_j = None if pixel_mask is None else pixel_mask[:, j]
                image_states.append(self.encode_image(pixel_values[:, j], qk_layers, store, mask_j))
                qk_image.append(store)
                masks.append(self.image_token_mask(pixel_values[:, j], mask_j))
            p = self.vision_config.patch_size
            grid = (pixel_values.shape[-2] // p, pixel_values.shape[-1] // p)
        return DualOutput(
            logits=self.fuse(text_states, image_states),
            qk_text=qk_text,
            qk_image=qk_image,
            text_states=text_states,
            image_states=image_states,
            grid=grid,
            image_masks=masks,
        )

    def embed_for_retrieval(
        self, text_states: torch.Tensor | None = None, image_states: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """L2-normalised CLIP-style embeddings of [CLS] states (either side may be None)."""
        t = nn.functional.normalize(self.text_proj(text_states[:, 0]), dim=-1) if text_states is not None else None
        i = nn.functional.normalize(self.image_proj(image_states[:, 0]), dim=-1) if image_states is not None else None
        return t, i
