"""Raw cross-modal attention of both model kinds, and the self-attention tensors the other
explainers (rollout, relevancy) start from.

Text-to-image (t2i): for every text token, a distribution over the image's keys `[image CLS] +
patches`; image-to-text (i2t): for every image token, a distribution over the real text tokens.

* Teacher: DiDE's recomputation (`teacher_cross_scores`): the layer's q and k sliced at the
  text/image boundary, softmax over the other modality's keys only. This *is* the joint attention
  renormalised over those keys (a softmax restricted to a subset of keys equals the full softmax
  divided by the mass on that subset; image keys are never masked), so it is what the fusion
  model computes, with the share of attention that went to the query's own modality divided out.
  `image_share` reports that share (t2i: how much of a word's joint attention went to the image).
* Student: its "virtual" cross-attention (`student_cross_scores`): text-tower q against image-tower
  k and the reverse, softmax over the other tower's keys — the quantity DiDE distils. The towers
  never attend to each other; this map shows how close the student came to the teacher's.

Both put mass on the image [CLS] key too: maps over patches (`t2i`) therefore sum to
`1 - t2i_cls`, not 1 (they are not renormalised over the patches; `agreement` does that).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from transformers.models.vit.modeling_vit import ViTAttention

from workbench.data.collate import Batch
from workbench.explain.grid import _unwrap, grid_of, is_fusion, to_grid
from workbench.explain.inputs import masked, pixels_5d, text_length, to_device, tokens
from workbench.losses import student_cross_scores, teacher_cross_scores


@contextmanager
def eager_attention(model: nn.Module):
    """Within the block the dual student's towers use eager attention, which can return attention
    probabilities (SDPA cannot). The outputs are the same; the fusion teacher is always eager."""
    model = _unwrap(model)
    configs = [c for c in (getattr(model, "vision_config", None), getattr(model, "text_config", None)) if c is not None]
    old = [c._attn_implementation for c in configs]
    for c in configs:
        c._attn_implementation = "eager"
    try:
        yield
    finally:
        for c, o in zip(configs, old):
            c._attn_implementation = o


def self_attentions(model: nn.Module, batch: Batch, image_index: int = 0) -> dict:
    """One forward pass that also returns every layer's self-attention probabilities.

    Teacher: {"logits", "joint": [L x [B, H, N, N]] for image `image_index`, "text_len", "grid"}.
    Student: {"logits", "text": [L x [B, H, T, T]], "image": [L x [B, H, 1+P, 1+P]] for image
    `image_index`, "text_len", "grid"}. The tensors are part of the autograd graph when gradients
    are enabled (`relevancy` differentiates the logits with respect to them).
    """
    model = _unwrap(model)
    batch = to_device(batch, model)
    pixels = pixels_5d(batch.pixel_values)
    grid = grid_of(model, pixels)
    if is_fusion(model):
        out = model(batch.input_ids, batch.attention_mask, pixels, output_attentions=True, **masked(batch))
        return {
            "logits": out.logits,
            "joint": list(out.attentions[image_index]),
            "text_len": out.text_len,
            "grid": grid,
        }
    with eager_attention(model):
        text = model.text_tower(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_attentions=True)
        images = [_image_attentions(model, pixels, batch.pixel_mask, j) for j in range(pixels.shape[1])]
    logits = model.fuse(text.last_hidden_state, [states for states, _ in images])
    return {
        "logits": logits,
        "text": list(text.attentions),
        "image": list(images[image_index][1]),
        "text_len": batch.input_ids.shape[1],
        "grid": grid,
    }


def _image_attentions(model: nn.Module, pixels: torch.Tensor, pixel_mask: torch.Tensor | None, j: int):
    """(token states, per-layer attention probabilities) of the student's image tower on image `j`, under eager
    attention. Square images: HF's ViT with `output_attentions`. A padded batch (pixel mask): the student's own
    masked encoder (`encode_image`; padding patches are not keys), its probabilities read off each layer's
    attention module, which returns them under eager attention."""
    if pixel_mask is None:
        out = model.image_tower(pixel_values=pixels[:, j], interpolate_pos_encoding=True, output_attentions=True)
        return out.last_hidden_state, tuple(out.attentions)
    probs: list[torch.Tensor] = []
    modules = [m for m in model.image_tower.modules() if isinstance(m, ViTAttention)]
    hooks = [m.register_forward_hook(lambda _m, _inputs, out: probs.append(out[1])) for m in modules]
    try:
        states = model.encode_image(pixels[:, j], pixel_mask=pixel_mask[:, j])
    finally:
        for hook in hooks:
            hook.remove()
    return states, tuple(probs)


def num_layers(model: nn.Module) -> int:
    model = _unwrap(model)
    if is_fusion(model):
        return model.config.num_hidden_layers
    return min(model.vision_config.num_hidden_layers, model.text_config.num_hidden_layers)


def cross_probs(
    model: nn.Module, batch: Batch, layers: tuple[int, ...] | None = None, image_index: int = 0
) -> dict[str, torch.Tensor]:
    """Batched cross-modal attention probabilities, layers stacked on dim 1.

    {"t2i": [B, L, H, T, 1+P] (softmax over image keys), "i2t": [B, L, H, 1+P, T] (softmax over
    the real text keys), "image_share": [B, L, H, T] (teacher: the joint-attention mass a text query
    put on the image keys; student: NaN, it has no joint attention), "logits", "layers", "grid"}.
    """
    model = _unwrap(model)
    n = num_layers(model)
    layers = tuple(range(n)) if layers is None else tuple(layer % n for layer in layers)
    batch = to_device(batch, model)
    pixels = pixels_5d(batch.pixel_values)
    mask = batch.attention_mask
    # the student's towers may differ in depth: layer l pairs the towers' layers aligned at the end
    # (l - n counted from the last), as DiDE pairs the last layers; with equal depths it is layer l of both
    fusion = is_fusion(model)
    if not fusion:
        depth_t, depth_i = model.text_config.num_hidden_layers, model.vision_config.num_hidden_layers
    qk = layers if fusion else tuple(x - n for x in layers)
    with torch.no_grad():
        out = model(batch.input_ids, mask, pixels, qk_layers=qk, **masked(batch))
        # a padded batch: the padding patches are no keys of the text queries (the models masked them too)
        image_keys = out.image_masks[image_index] if out.image_masks else None
        hide = None if image_keys is None else ~image_keys[:, None, None, :].bool()
        t2i, i2t, share = [], [], []
        for layer in layers:
            if fusion:
                q, k = out.qk[image_index][layer]
                s_t2i, s_i2t = _hide(teacher_cross_scores(q, k, out.text_len), hide)
                # the text queries' joint scores over their own (real) text keys, for the image share
                s_tt = q[:, :, : out.text_len] @ k[:, :, : out.text_len].transpose(-1, -2) * q.shape[-1] ** -0.5
                s_tt = s_tt.float().masked_fill(~mask[:, None, None, :].bool(), float("-inf"))
                lse_image, lse_text = s_t2i.float().logsumexp(-1), s_tt.logsumexp(-1)
                share.append(torch.sigmoid(lse_image - lse_text))
            else:
                text_qk, image_qk = out.qk_text[(layer - n) % depth_t], out.qk_image[image_index][(layer - n) % depth_i]
                s_t2i, s_i2t = _hide(student_cross_scores(text_qk, image_qk), hide)
                share.append(torch.full(s_t2i.shape[:-1], float("nan")))
            t2i.append(s_t2i.float().softmax(-1))
            i2t.append(s_i2t.float().masked_fill(~mask[:, None, None, :].bool(), float("-inf")).softmax(-1))
    return {
        "t2i": torch.stack(t2i, 1).cpu(),
        "i2t": torch.stack(i2t, 1).cpu(),
        "image_share": torch.stack(share, 1).cpu(),
        "logits": out.logits.float().cpu(),
        "layers": list(layers),
        "grid": grid_of(model, pixels),
    }


def _hide(scores: tuple[torch.Tensor, torch.Tensor], hide: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(t2i, i2t) scores with the padding patches (`hide`, [B, 1, 1, 1 + P]) taken out of the t2i keys."""
    t2i, i2t = scores
    return (t2i, i2t) if hide is None else (t2i.float().masked_fill(hide, float("-inf")), i2t)


def cross_attention(
    model: nn.Module,
    batch: Batch,
    tokenizer=None,
    layers: tuple[int, ...] | None = None,
    image_index: int = 0,
    index: int = 0,
) -> dict:
    """Raw cross-modal attention of example `index`, every layer and head, on the patch grid.

    Returns plain numpy (T = the example's real tokens, L layers, H heads, grid rows x cols):
      "t2i": [L, H, T, rows, cols]   each word's attention over the patches
      "t2i_cls": [L, H, T]           ... and on the image [CLS] key (with the patches it sums to 1)
      "i2t": [L, H, rows, cols, T]   each patch's attention over the words (sums to 1 over T)
      "i2t_cls": [L, H, T]           the image [CLS] query's attention over the words
      "image_share": [L, H, T]       teacher only (NaN for the student), see `cross_probs`
      "tokens", "layers", "grid", "kind", "logits"
    Use `word_map`, `patch_words` and `question_map` to pick a layer / head / word.
    """
    probs = cross_probs(model, batch, layers, image_index)
    grid, t = probs["grid"], text_length(batch, index)
    t2i = probs["t2i"][index, :, :, :t]  # [L, H, T, 1+P]
    i2t = probs["i2t"][index, :, :, :, :t]  # [L, H, 1+P, T]
    i2t_grid = to_grid(i2t.transpose(-1, -2), grid, offset=1)  # [L, H, T, rows, cols]
    return {
        "t2i": to_grid(t2i, grid, offset=1).numpy(),
        "t2i_cls": t2i[..., 0].numpy(),
        "i2t": np.moveaxis(i2t_grid.numpy(), 2, -1),
        "i2t_cls": i2t[:, :, 0].numpy(),
        "image_share": probs["image_share"][index, :, :, :t].numpy(),
        "tokens": tokens(batch, tokenizer, index),
        "layers": probs["layers"],
        "grid": grid,
        "kind": "fusion" if is_fusion(model) else "dual",
        "logits": probs["logits"][index].numpy(),
    }


def _layer_pos(ca: dict, layer: int) -> int:
    layers = ca["layers"]
    if layer in layers:
        return layers.index(layer)
    if -len(layers) <= layer < 0:
        return layer % len(layers)
    raise ValueError(f"layer {layer} was not computed; have {layers}")


def _word_pos(ca: dict, word: int | str) -> int:
    if isinstance(word, str):
        if word not in ca["tokens"]:
            raise ValueError(f"{word!r} is not a token of the question; tokens: {ca['tokens']}")
        return ca["tokens"].index(word)
    return word


def _heads(x: np.ndarray, head: int | None) -> np.ndarray:
    return x.mean(0) if head is None else x[head]


def word_map(ca: dict, word: int | str, layer: int = -1, head: int | None = None) -> np.ndarray:
    """[rows, cols]: where token `word` (its position or its text) looks in the image; head mean
    when `head` is None."""
    return _heads(ca["t2i"][_layer_pos(ca, layer), :, _word_pos(ca, word)], head)


def patch_words(ca: dict, row: int, col: int, layer: int = -1, head: int | None = None) -> np.ndarray:
    """[T]: how the patch at (row, col) attends over the tokens (sums to 1)."""
    return _heads(ca["i2t"][_layer_pos(ca, layer), :, row, col], head)


def question_map(ca: dict, layer: int = -1, head: int | None = None) -> np.ndarray:
    """[rows, cols]: the question words' t2i maps averaged ([CLS] and [SEP] left out)."""
    t = len(ca["tokens"])
    words = list(range(1, t - 1)) if t > 2 else list(range(t))
    return _heads(ca["t2i"][_layer_pos(ca, layer)][:, words].mean(1), head)
