"""ViLT image preprocessing exactly as Hugging Face's `ViltImageProcessor` does it, for real ViLT folders.

`ViltImageSpec.from_folder(folder)` reads the folder's `preprocessor_config.json`. An image is then

1. resized with PIL (bicubic by default), keeping its aspect ratio: the shorter side to `shortest_edge` (384),
   unless the longer side would exceed int(1333 / 800 * shortest_edge) (639 for 384), in which case the
   longer side gets that; both sides rounded, then floored to a multiple of `size_divisor` (32). A 640 x 480
   photo becomes 512 x 384; the longest side ViLT-B/32 ever sees is 608 (19 patches);
2. rescaled by 1/255 (computed in float64, stored as float32) and normalised with the folder's mean / std;
3. padded with zeros at the bottom and right to the largest height and width in the batch, with a
   `pixel_mask` (1 on image pixels, 0 on padding).

Every step follows `transformers.ViltImageProcessor` (its PIL backend, the one installed without
torchvision) operation for operation, so the pixels are identical (a test compares them). The original
ViLT code resizes the same way (its `MinMaxResize`).

The model side of the pixel mask is `masked_image_embeds`: HF's `ViltEmbeddings.visual_embed` for a padded
batch — each image's position embeddings interpolated to its own patch grid, padding patches masked —
with the patches kept in row-major order (HF samples their order at random; the encoder does not care).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

MAX_LONGER_EDGE, MAX_SHORTER_EDGE = 1333, 800  # HF's (and ViLT's) COCO aspect bound


@dataclass(frozen=True)
class ViltImageSpec:
    """The fields of a ViLT `preprocessor_config.json` that change pixels (HF's defaults)."""

    shortest_edge: int = 384
    size_divisor: int = 32
    resample: int = Image.BICUBIC
    do_resize: bool = True
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    image_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    image_std: tuple[float, ...] = (0.5, 0.5, 0.5)
    do_pad: bool = True

    @classmethod
    def from_dict(cls, config: dict) -> ViltImageSpec:
        """From a preprocessor config: `size` is {"shortest_edge": n} or, in older files, the int n."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in config.items() if k in known}
        size = config.get("size")
        if isinstance(size, dict):
            size = size.get("shortest_edge")
        if size is not None:
            values["shortest_edge"] = int(size)
        for key in ("image_mean", "image_std"):
            if key in values:
                v = values[key]
                values[key] = tuple(float(x) for x in (v if isinstance(v, (list, tuple)) else [v] * 3))
        return cls(**values)

    @classmethod
    def from_folder(cls, folder: str | Path) -> ViltImageSpec | None:
        """The spec of a HF folder's `preprocessor_config.json`, or None when the folder has none."""
        path = Path(folder) / "preprocessor_config.json"
        if not path.is_file():
            return None
        try:
            config = json.loads(path.read_text())
        except ValueError as e:
            raise ValueError(f"{path} is not valid JSON ({e})") from e
        if not isinstance(config, dict):
            raise ValueError(f"{path} holds a JSON {type(config).__name__}, not an object")
        return cls.from_dict(config)

    @property
    def longest_edge(self) -> int:
        return int(MAX_LONGER_EDGE / MAX_SHORTER_EDGE * self.shortest_edge)


def resized_shape(height: int, width: int, spec: ViltImageSpec = ViltImageSpec()) -> tuple[int, int]:
    """(height, width) an image of that size is resized to (HF's `get_resize_output_image_size`)."""
    shorter, longer = spec.shortest_edge, spec.longest_edge
    scale = shorter / min(height, width)
    if height < width:
        new_h, new_w = shorter, scale * width
    else:
        new_h, new_w = scale * height, shorter
    if max(new_h, new_w) > longer:
        scale = longer / max(new_h, new_w)
        new_h, new_w = scale * new_h, scale * new_w
    new_h, new_w = int(new_h + 0.5), int(new_w + 0.5)
    return new_h // spec.size_divisor * spec.size_divisor, new_w // spec.size_divisor * spec.size_divisor


def image_array(image: Image.Image, spec: ViltImageSpec = ViltImageSpec()) -> np.ndarray:
    """One RGB image -> float32 [3, h, w]: resized, rescaled and normalised as HF does (no padding)."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    if spec.do_resize:
        h, w = resized_shape(image.height, image.width, spec)
        image = image.resize((w, h), resample=spec.resample)
    array = np.asarray(image)
    if spec.do_rescale:  # HF: multiply in float64, then store float32
        array = (array.astype(np.float64) * spec.rescale_factor).astype(np.float32)
    if spec.do_normalize:
        array = array.astype(np.float32, copy=False)
        mean = np.asarray(spec.image_mean, dtype=array.dtype)
        std = np.asarray(spec.image_std, dtype=array.dtype)
        array = (array - mean) / std
    return np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32)


def pad_batch(arrays: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """[3, h_i, w_i] arrays -> (pixel_values [N, 3, H, W] zero-padded bottom / right, pixel_mask [N, H, W] int64)."""
    height = max(a.shape[1] for a in arrays)
    width = max(a.shape[2] for a in arrays)
    pixels = torch.zeros(len(arrays), 3, height, width, dtype=torch.float32)
    mask = torch.zeros(len(arrays), height, width, dtype=torch.int64)
    for i, a in enumerate(arrays):
        pixels[i, :, : a.shape[1], : a.shape[2]] = torch.from_numpy(a)
        mask[i, : a.shape[1], : a.shape[2]] = 1
    return pixels, mask


def preprocess(
    images: Sequence[Image.Image], spec: ViltImageSpec = ViltImageSpec()
) -> tuple[torch.Tensor, torch.Tensor]:
    """PIL images -> (pixel_values [N, 3, H, W], pixel_mask [N, H, W]), as `ViltImageProcessor(images)`."""
    arrays = [image_array(im, spec) for im in images]
    if not spec.do_pad and len({a.shape for a in arrays}) > 1:
        raise ValueError("images of different sizes need do_pad (the preprocessor config turns it off)")
    return pad_batch(arrays)


def collate_images(
    image_lists: Sequence[Sequence[Image.Image]], spec: ViltImageSpec = ViltImageSpec()
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example, its images (1, or 2 for NLVR2) -> (pixel_values [B, n, 3, H, W], pixel_mask [B, n, H, W]),
    every image of the batch padded to the batch's largest height and width (as HF pads a list of images)."""
    n = len(image_lists[0])
    if any(len(images) != n for images in image_lists):
        raise ValueError("every example of a batch needs the same number of images")
    pixels, mask = preprocess([im for images in image_lists for im in images], spec)
    return pixels.view(len(image_lists), n, *pixels.shape[1:]), mask.view(len(image_lists), n, *mask.shape[1:])


def patch_grid_mask(pixel_mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """[B, H, W] pixel mask -> [B, gh, gw] patch mask (nearest neighbour, as HF's `visual_embed`)."""
    return nn.functional.interpolate(pixel_mask[:, None].float(), size=grid).long()[:, 0]


def masked_image_embeds(teacher: nn.Module, pixel_values: torch.Tensor, pixel_mask: torch.Tensor):
    """(image_embeds [B, 1 + P, d], image_mask [B, 1 + P]) of a `FusionTeacher` for a padded batch
    ([B, 3, H, W] pixels, [B, H, W] mask): HF ViLT's visual embedding in row-major patch order."""
    emb, config = teacher.vilt.embeddings, teacher.config
    x = teacher.patch_features(pixel_values)  # [B, d, gh, gw]
    b, d, gh, gw = x.shape
    patches = patch_grid_mask(pixel_mask, (gh, gw))
    heights, widths = patches[:, :, 0].sum(1).tolist(), patches[:, 0, :].sum(1).tolist()
    side = config.image_size // config.patch_size
    spatial = emb.position_embeddings[:, 1:].transpose(1, 2).reshape(1, d, side, side)
    pos = torch.cat([
        nn.functional.pad(
            nn.functional.interpolate(spatial, size=(h, w), mode="bilinear", align_corners=True),
            (0, gw - w, 0, gh - h),
        )
        for h, w in zip(heights, widths)
    ])  # fmt: skip
    x = (x + pos).flatten(2).transpose(1, 2)
    cls = emb.cls_token.expand(b, -1, -1) + emb.position_embeddings[:, :1]
    mask = torch.cat([patches.new_ones(b, 1), patches.flatten(1)], dim=1)
    return emb.dropout(torch.cat([cls, x], dim=1)), mask
