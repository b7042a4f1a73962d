"""An optional convolutional stem in front of the patch projection (teacher and student image tower).

Why: telling easy-VQA's circles, rectangles and triangles apart needs colour-invariant local edge
detectors pooled by a maximum. A three-layer CNN with ReLU and max-pooling learns it in 200 steps;
our ViLT with a linear projection of raw 8-px patches was at 51% on shape questions after 300 steps
of shape questions alone, and at 74% after 450 with this stem in front (docs/lab-notes.md, easy-VQA).
Early convolutions are a known help for small vision transformers (Xiao et al., 2021, "Early
Convolutions Help Transformers See Better").

Shape: `conv 3x3 -> ReLU -> max-pool 2` per entry of `channels`, and beside them the raw image
average-pooled to the same resolution (its 3 colour channels are concatenated to the conv features).
Why the raw path: after a shape-only curriculum phase the convolutions are colour-invariant and colour
questions recovered slowly in the mix; the pooled colours were added so the projection can read colour
linearly. Measured, they did not speed that recovery (colour at 15% / 42% after 400 / 800 mix steps with
them, 39% / 56% without); the short shape-and-colour curriculum phase is what fixed it (docs/lab-notes.md "easy-VQA:
what it took"). The shipped easy-VQA models have this path. The patch projection then
reads the stem's feature map with kernel = stride = patch_size / 2**len(channels), so the token grid is the
same as without a stem (8-px patches on 64 px stay an 8x8 grid) and attention maps still land on
the image the same way. A model without `conv_stem` in its config (every real ViLT checkpoint) has
no stem and is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ConvStem(nn.Module):
    """[B, C, H, W] -> [B, channels[-1] + C, H / 2**n, W / 2**n]: conv features, then the pooled image."""

    def __init__(self, channels: Sequence[int], in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_channels
        for c in channels:
            layers += [nn.Conv2d(width, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            width = c
        self.convs = nn.Sequential(*layers)
        self.shrink = 2 ** len(channels)
        self.out_channels = stem_width(channels, in_channels)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        raw = nn.functional.avg_pool2d(pixel_values, self.shrink)
        return torch.cat([self.convs(pixel_values), raw], dim=1)


def stem_width(channels: Sequence[int], in_channels: int = 3) -> int:
    """Channels of the stem's output: the last conv's, plus the pooled image's."""
    return channels[-1] + in_channels


def conv_stem(channels: Sequence[int], in_channels: int = 3) -> ConvStem | None:
    """The stem for `channels` (e.g. [16, 32]); None for an empty list."""
    return ConvStem(channels, in_channels) if channels else None


def stem_projection(channels: Sequence[int], hidden_size: int, patch_size: int) -> nn.Conv2d:
    """The patch projection that reads the stem's output and keeps the token grid of `patch_size`."""
    shrink = 2 ** len(channels)
    if patch_size % shrink:
        raise ValueError(f"a {len(channels)}-stage stem halves the image {len(channels)} times: "
                         f"patch_size {patch_size} must be a multiple of {shrink}")  # fmt: skip
    kernel = patch_size // shrink
    return nn.Conv2d(stem_width(channels), hidden_size, kernel_size=kernel, stride=kernel)


def stem_channels(config) -> list[int]:
    """The `conv_stem` channels a (ViLT or ViT) config asks for; [] when it has none."""
    return list(getattr(config, "conv_stem", None) or [])


__all__ = ["ConvStem", "conv_stem", "stem_channels", "stem_projection", "stem_width"]
