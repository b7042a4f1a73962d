"""The fusion teacher: a ViLT single-stream encoder (`transformers.ViltModel`) plus a task head.

Two things differ from calling `ViltForQuestionAnswering` directly, both on purpose:

* Deterministic patches. HF ViLT's `visual_embed` draws patches with `torch.multinomial`, so
  their order changes on every call and attention cannot be mapped back onto the image.
  `embed_image` computes the same sum (patch projection + interpolated position embedding, image
  [CLS] first) in row-major order and hands it to `ViltModel` as `image_embeds`. The parameters
  and their names are ViLT's, so a real checkpoint loads unchanged; because the encoder is
  permutation-equivariant the logits equal HF's.
* Position embeddings that can be read. From a config, HF leaves the image position embeddings at
  zero; at small scale the model never learns where a patch is (docs/design.md, "Models"). We start them as
  a random row vector plus a random column vector at unit scale (`grid_positions`), trainable.
  Weights start at 1/sqrt(width) and the patch projection is centred on the training images
  (`centre_patch_embedding`): both shorten the plateau before the model starts to look at the image.

Attention: HF ViLT has only the eager implementation. `ViltSdpaSelfAttention` (swapped in for
every layer) runs PyTorch's fused `scaled_dot_product_attention` when the weights are not requested
and the model's `attn_implementation` allows it; `output_attentions=True` always takes ViLT's eager
code. The q/k/v Linear modules are the same, so `capture_qk` hooks fire either way.

Sequence layout: [text tokens (T, padded)] [image CLS] [P patches, row-major] per image.

Images: square ones at the configured size (our own checkpoints), or, with a `pixel_mask`, a padded batch of
images of any size as HF's `ViltImageProcessor` makes them (real ViLT folders): each image's position
embeddings are interpolated to its own patch grid and its padding patches are masked
(`workbench.models.preprocess.masked_image_embeds`), so the logits equal HF's on non-square images.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import ViltConfig, ViltModel
from transformers.models.vilt.modeling_vilt import ViltSelfAttention

from workbench.models.heads import classifier
from workbench.models.preprocess import masked_image_embeds
from workbench.models.stem import conv_stem, stem_channels, stem_projection


def fusion_config(
    vocab_size: int,
    image_size: int = 64,
    patch_size: int = 16,
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    max_text_len: int = 64,
    num_images: int = 1,
    conv_stem: tuple[int, ...] | list[int] = (),
) -> ViltConfig:
    """A small ViLT config; the defaults are the shipped teachers' size. `conv_stem`: channels of an
    optional convolutional stem before the patch projection (`workbench.models.stem`)."""
    stem = {"conv_stem": list(conv_stem)} if conv_stem else {}  # absent, as in real ViLT configs
    return ViltConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=4 * hidden_size,
        image_size=image_size,
        patch_size=patch_size,
        max_position_embeddings=max_text_len,
        max_image_length=-1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_images=num_images,
        # HF's 0.02 suits width 768; at width 128 it makes q.k start so small that attention sits on
        # a long plateau. 1/sqrt(width) is the usual fan-in scale.
        initializer_range=hidden_size**-0.5,
        modality_type_vocab_size=1 + num_images,  # text, then one type per image (as ViLT-NLVR2)
        **stem,
    )


def grid_positions(grid: int, dim: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """[grid*grid, dim] position embeddings: a random row vector plus a random column vector.

    Each is N(0, 1) per channel, so position is as loud as content and row and column are each
    linearly readable. Measured on position questions ("which row is the cyan triangle in?",
    batch 64): these reach 100% validation accuracy by step 400; a 2-D sine-cosine grid of the same
    scale stays at chance for 500+ steps (at 4 positions most sin-cos channels barely vary), and
    HF's zero init never learns (docs/design.md, "Models").
    """
    rows = torch.randn(grid, dim, generator=generator)
    cols = torch.randn(grid, dim, generator=generator)
    return (rows[:, None, :] + cols[None, :, :]).reshape(grid * grid, dim)


@torch.no_grad()
def centre_patch_projection(conv: nn.Conv2d, pixel_values: torch.Tensor) -> None:
    """Data-dependent init: set the bias so the average patch of `pixel_values` embeds to zero.

    Our scenes are mostly white background; uncentred, every patch embedding is dominated by that
    shared component and what distinguishes a red circle from a blank cell is a small residue.
    Centring makes content, not background, the signal from the first step.
    """
    without_bias = nn.functional.conv2d(pixel_values.to(conv.weight), conv.weight, stride=conv.stride)
    conv.bias.copy_(-without_bias.mean(dim=(0, 2, 3)))


@contextmanager
def capture_qk(qk_modules: list[tuple[nn.Module, nn.Module]], layers: tuple[int, ...], heads: int, store: dict):
    """Within the block, record each chosen layer's q and k projections ([B, H, N, head_dim]) into
    `store[layer]` as a (q, k) pair. `qk_modules` lists (query, key) modules per layer."""
    hooks = []
    n = len(qk_modules)
    for layer in layers:
        idx = layer % n
        for which, module in enumerate(qk_modules[idx]):

            def hook(_module, _inputs, out, idx=idx, which=which):
                b, t, _ = out.shape
                store.setdefault(idx, [None, None])[which] = out.view(b, t, heads, -1).transpose(1, 2)

            hooks.append(module.register_forward_hook(hook))
    try:
        yield store
    finally:
        for h in hooks:
            h.remove()
        for key in store:
            store[key] = tuple(store[key])


ATTENTION_MODES = ("auto", "sdpa", "eager")


class ViltSdpaSelfAttention(ViltSelfAttention):
    """ViLT self-attention with the fused kernel when allowed (`mode`, set by the teacher):

    * "eager": ViLT's own code, always;
    * "sdpa": fused unless `output_attentions` (the fused kernel returns no weights);
    * "auto" (default): fused only under `torch.inference_mode()` (the API, evaluation), so
      training and distillation keep the exact numerics they were tuned with.

    Fused and eager agree to float rounding (a test checks logits to 1e-5)."""

    mode = "auto"

    def forward(self, hidden_states, attention_mask=None, output_attentions=False):
        # (torch.compile cannot trace is_inference_mode_enabled: compiled "auto" stays eager; set "sdpa")
        auto = self.mode == "auto" and not torch.compiler.is_compiling() and torch.is_inference_mode_enabled()
        fused = self.mode == "sdpa" or auto
        if output_attentions or not fused:
            return super().forward(hidden_states, attention_mask, output_attentions)
        shape = (*hidden_states.shape[:-1], -1, self.attention_head_size)
        q = self.query(hidden_states).view(shape).transpose(1, 2)
        k = self.key(hidden_states).view(shape).transpose(1, 2)
        v = self.value(hidden_states).view(shape).transpose(1, 2)
        # ViLT's eager mask is additive (0 / dtype-min), which SDPA adds to the scores the same way
        context = nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=attention_mask, dropout_p=self.dropout.p if self.training else 0.0
        )
        return (context.transpose(1, 2).reshape(*hidden_states.shape[:-1], self.all_head_size),)


@dataclass
class FusionOutput:
    logits: torch.Tensor
    # per image: one [B, H, N, N] attention tensor per layer (only when requested)
    attentions: list[tuple[torch.Tensor, ...]] = field(default_factory=list)
    # per image: {layer: (q, k)} each [B, H, N, head_dim], projections before the softmax
    qk: list[dict[int, tuple[torch.Tensor, torch.Tensor]]] = field(default_factory=list)
    pooled: torch.Tensor | None = None
    text_len: int = 0
    grid: tuple[int, int] = (0, 0)
    # per image: [B, 1 + P] with 1 on real image tokens and 0 on padding patches; None when every token is real
    image_masks: list[torch.Tensor | None] = field(default_factory=list)


class FusionTeacher(nn.Module):
    """ViLT encoder + classifier. `vilt` and `classifier` keep ViLT's parameter names."""

    kind = "fusion"

    def __init__(self, config: ViltConfig, num_labels: int, num_images: int = 1, init_positions: bool = True):
        super().__init__()
        self.config = config
        self.num_images = num_images
        self.vilt = ViltModel(config)
        channels = stem_channels(config)
        self.stem = conv_stem(channels)  # None unless the config asks for one
        if self.stem is not None:
            projection = stem_projection(channels, config.hidden_size, config.patch_size)
            self.vilt.embeddings.patch_embeddings.projection = projection
        for layer in self.vilt.encoder.layer:  # same parameters, plus the fused path (see module docstring)
            layer.attention.attention.__class__ = ViltSdpaSelfAttention
        self.classifier = classifier(config.hidden_size, num_images, num_labels)
        if init_positions:
            self.reset_image_positions()

    @property
    def image_size(self) -> int:
        """Side of the square images the model reads, in pixels (the collator resizes to it)."""
        return self.config.image_size

    @property
    def text_limit(self) -> int:
        """Longest token sequence the text positions allow (the collator truncates to it)."""
        return self.config.max_position_embeddings

    @property
    def attn_implementation(self) -> str:
        """Attention mode: "auto" (fused under inference mode), "sdpa" (fused unless weights are requested), "eager"."""
        return self.vilt.encoder.layer[0].attention.attention.mode

    @attn_implementation.setter
    def attn_implementation(self, mode: str) -> None:
        if mode not in ATTENTION_MODES:
            raise ValueError(f"attention mode must be one of {ATTENTION_MODES}, got {mode!r}")
        for layer in self.vilt.encoder.layer:
            layer.attention.attention.mode = mode

    @torch.no_grad()
    def reset_image_positions(self) -> None:
        emb = self.vilt.embeddings
        grid = self.config.image_size // self.config.patch_size
        emb.position_embeddings[0, 1:] = grid_positions(grid, self.config.hidden_size)
        emb.position_embeddings[0, 0].normal_(0, 1.0)
        emb.cls_token.normal_(0, 0.02)

    @property
    def num_heads(self) -> int:
        return self.config.num_attention_heads

    def centre_patch_embedding(self, pixel_values: torch.Tensor) -> None:
        """See `centre_patch_projection`; pixel_values [N, 3, H, W] from the training data."""
        with torch.no_grad():
            inputs = pixel_values if self.stem is None else self.stem(pixel_values)
        centre_patch_projection(self.vilt.embeddings.patch_embeddings.projection, inputs)

    def patch_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, d, gh, gw]: the (stem and) patch projection, before positions."""
        emb = self.vilt.embeddings.patch_embeddings
        if self.stem is None:
            return emb(pixel_values)
        projection = emb.projection
        return projection(self.stem(pixel_values.to(projection.weight.dtype)))

    def embed_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, 1 + P, d]: image CLS then patches in row-major order."""
        emb = self.vilt.embeddings
        x = self.patch_features(pixel_values)  # [B, d, gh, gw]
        b, d, gh, gw = x.shape
        side = self.config.image_size // self.config.patch_size
        pos = emb.position_embeddings[:, 1:].transpose(1, 2).reshape(1, d, side, side)
        if (gh, gw) != (side, side):  # same interpolation as ViLT for other resolutions
            pos = nn.functional.interpolate(pos, size=(gh, gw), mode="bilinear", align_corners=True)
        x = (x + pos).flatten(2).transpose(1, 2)
        cls = emb.cls_token.expand(b, -1, -1) + emb.position_embeddings[:, :1]
        return emb.dropout(torch.cat([cls, x], dim=1))

    def grid_for(self, pixel_values: torch.Tensor) -> tuple[int, int]:
        p = self.config.patch_size
        return pixel_values.shape[-2] // p, pixel_values.shape[-1] // p

    def image_tokens(
        self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(image embeddings [B, 1 + P, d], token mask [B, 1 + P] or None) of one image per example:
        [B, 3, H, W] pixels and, for a padded batch, its [B, H, W] pixel mask."""
        if pixel_mask is None:
            return self.embed_image(pixel_values), None
        return masked_image_embeds(self, pixel_values, pixel_mask)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor,
        output_attentions: bool = False,
        qk_layers: tuple[int, ...] = (),
        pixel_mask: torch.Tensor | None = None,
    ) -> FusionOutput:
        """pixel_values: [B, images, 3, H, W] (or [B, 3, H, W] for one image); pixel_mask: None (square images,
        every pixel real) or [B, images, H, W] (or [B, H, W]), 1 on image pixels and 0 on padding."""
        if pixel_values.dim() == 4:
            pixel_values = pixel_values[:, None]
        if pixel_mask is not None and pixel_mask.dim() == 3:
            pixel_mask = pixel_mask[:, None]
        if pixel_values.shape[1] != self.num_images:
            raise ValueError(f"this model takes {self.num_images} image(s) per example, got {pixel_values.shape[1]}")
        pooled, attentions, qks, masks = [], [], [], []
        qk_modules = [(x.attention.attention.query, x.attention.attention.key) for x in self.vilt.encoder.layer]
        for j in range(self.num_images):
            mask_j = None if pixel_mask is None else pixel_mask[:, j]
            image_embeds, tokens = self.image_tokens(pixel_values[:, j], mask_j)
            masks.append(tokens)
            if tokens is None:  # every image token is real
                tokens = torch.ones(image_embeds.shape[:2], dtype=attention_mask.dtype, device=attention_mask.device)
            image_mask = tokens.to(attention_mask.dtype)
            store: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
            with capture_qk(qk_modules, tuple(qk_layers), self.config.num_attention_heads, store):
                out = self.vilt(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    image_embeds=image_embeds,
                    pixel_mask=image_mask,
                    image_token_type_idx=j + 1,
                    output_attentions=output_attentions,
                )
            pooled.append(out.pooler_output)
            if output_attentions:
                attentions.append(out.attentions)
            qks.append(store)
        pooled_all = torch.cat(pooled, dim=-1)
        return FusionOutput(
            logits=self.classifier(pooled_all),
            attentions=attentions,
            qk=qks,
            pooled=pooled_all,
            text_len=input_ids.shape[1],
            grid=self.grid_for(pixel_values[:, 0]),
            image_masks=masks,
        )
