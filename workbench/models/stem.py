"""An optional convolutional stem in front of the patch projection (teacher and student image tower).

Why: telling easy-VQA's circles, rectangles and triangles apart needs colour-invariant local edge
detectors pooled by a maximum. A three-layer CNN with ReLU and max-pooling learns it in 200 steps;
our ViLT with a linear projection of raw 8-px patches was at 51% on shape questions after 300 steps
of shape questions alone, and at 74% after 450 with this stem in front (README, "Open gap: easy-VQA").
Early convolutions are a known help for small vision transformers (Xiao et al., 2021, "Early
Convolutions Help Transformers See Better").

Shape: `conv 3x3 -> ReLU -> max-pool 2` per entry of `channels`; the patch projection then reads the
stem's feature map with kernel = stride = patch_size / 2**len(channels), so the token grid is the
same as without a stem (8-px patches on 64 px stay an 8x8 grid) and attention maps still land on
the image the same way. A model without `conv_stem` in its config (every real ViLT checkpoint) has
no stem and is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def conv_stem(channels: Sequence[int], in_channels: int = 3) -> nn.Sequential | None:
    """The stem for `channels` (e.g. [16, 32]); None for an empty list."""
    layers: list[nn.Module] = []
    for c in channels:
        layers += [nn.Conv2d(in_channels, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        in_channels = c
    return nn.Sequential(*layers) if layers else None


def stem_projection(channels: Sequence[int], hidden_size: int, patch_size: int) -> nn.Conv2d:
    """The patch projection that reads the stem's output and keeps the token grid of `patch_size`."""
    shrink = 2 ** len(channels)
    if patch_size % shrink:
        raise ValueError(f"a {len(channels)}-stage stem halves the image {len(channels)} times: "
                         f"patch_size {patch_size} must be a multiple of {shrink}")  # fmt: skip
    kernel = patch_size // shrink
    return nn.Conv2d(channels[-1], hidden_size, kernel_size=kernel, stride=kernel)


def stem_channels(config) -> list[int]:
    """The `conv_stem` channels a (ViLT or ViT) config asks for; [] when it has none."""
    return list(getattr(config, "conv_stem", None) or [])


__all__ = ["conv_stem", "stem_channels", "stem_projection"]
