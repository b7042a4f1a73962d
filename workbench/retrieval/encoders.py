"""The models retrieval runs: a dual encoder giving normalised embeddings, and a fusion teacher scoring pairs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from workbench.data.collate import image_to_tensor
from workbench.retrieval.gallery import Gallery


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


class DualEncoder:
    """A dual encoder (`DualStudent` or `ClipDualEncoder`) and its tokenizer: normalised embeddings."""

    def __init__(self, model: nn.Module, tokenizer):
        from workbench.models import image_size, text_limit

        self.model, self.tokenizer = getattr(model, "module", model), tokenizer
        self.image_size, self.max_length = image_size(self.model), text_limit(self.model)

    @property
    def embed_dim(self) -> int:
        m = self.model
        return m.embed_dim if hasattr(m, "embed_dim") else m.image_proj.out_features

    def logit_scale(self) -> torch.Tensor:
        """exp(learned log-scale), capped at 100 as CLIP does."""
        return self.model.logit_scale.exp().clamp(max=100)

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        device = model_device(self.model)
        return enc["input_ids"].to(device), enc["attention_mask"].to(device)

    def image_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> [B, D] (a tower reads other sizes: our ViT interpolates its
        positions, the CLIP wrapper resizes)."""
        return self.model.embed_for_retrieval(image_states=self.model.encode_image(pixel_values))[1]

    def text_embeddings(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.embed_for_retrieval(self.model.encode_text(input_ids, attention_mask))[0]

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        return self.text_embeddings(*self.tokenize(texts))

    def pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return torch.stack([image_to_tensor(im, self.image_size) for im in images]).to(model_device(self.model))


def retrieval_parameters(model: nn.Module) -> int:
    """Parameters a retrieval query touches: both towers, the projections and the scale (our dual
    model's DiDE fusion head and classifier are not used for retrieval); a CLIP model: all of it."""
    from workbench.models.dual import DualStudent

    model = getattr(model, "module", model)
    if isinstance(model, DualStudent):
        parts = (model.image_tower, model.text_tower, model.image_proj, model.text_proj)
        return sum(p.numel() for m in parts for p in m.parameters()) + model.logit_scale.numel()
    return sum(p.numel() for p in model.parameters())


def size_mb(params: int) -> float:
    """Megabytes of `params` fp32 weights."""
    return round(params * 4 / 2**20, 2)


@torch.no_grad()
def embed_gallery_images(
    encoder: DualEncoder, gallery: Gallery, batch_size: int = 256, progress: bool = False
) -> torch.Tensor:
    out = []
    for s in tqdm(range(0, gallery.n_images, batch_size), desc="images", disable=not progress, leave=False):
        images = [gallery.load_image(j) for j in range(s, min(s + batch_size, gallery.n_images))]
        out.append(encoder.image_embeddings(encoder.pixels(images)).float())
    return torch.cat(out) if out else torch.zeros(0, encoder.embed_dim)


@torch.no_grad()
def embed_gallery_texts(
    encoder: DualEncoder, texts: Sequence[str], batch_size: int = 256, progress: bool = False
) -> torch.Tensor:
    out = []
    for s in tqdm(range(0, len(texts), batch_size), desc="texts", disable=not progress, leave=False):
        out.append(encoder.embed_texts(texts[s : s + batch_size]).float())
    return torch.cat(out) if out else torch.zeros(0, encoder.embed_dim)


class FusionMatcher:
    """A fusion (single-stream) teacher with an image-text matching head, as a pair scorer.

    `log_match(pixels, texts)` gives log P(match) for aligned (image, caption) pairs, each pair one
    joint pass (the model's own tokenizer reads the captions). The checkpoint's labels must include
    "match" (`workbench train --dataset shapes-itm`). Fused attention is used: scores only.
    """

    def __init__(self, model: nn.Module, tokenizer, labels: Sequence[str], chunk: int = 256):
        from workbench.models import image_size, text_limit

        if "match" not in labels:
            raise ValueError(
                f"the fusion teacher's labels {list(labels)[:5]} have no 'match': it must be an image-text "
                "matching model (train one with `workbench train --dataset shapes-itm-mixed`)"
            )
        self.model = model.eval().requires_grad_(False)
        if hasattr(model, "attn_implementation"):
            model.attn_implementation = "sdpa"
        self.tokenizer, self.match = tokenizer, list(labels).index("match")
        self.image_size, self.max_length, self.chunk = image_size(model), text_limit(model), chunk

    @classmethod
    def load(cls, path, device: str | torch.device = "cpu", **kw) -> FusionMatcher:
        from workbench.models.io import load_checkpoint

        ck = load_checkpoint(path, device=device, kind="fusion")
        return cls(ck.model, ck.tokenizer, ck.labels, **kw)

    def to(self, device) -> FusionMatcher:
        self.model.to(device)
        return self

    @torch.no_grad()
    def log_match(self, pixel_values: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """pixel_values [N, 3, H, W] in [-1, 1], N captions -> [N] log P(match)."""
        device = model_device(self.model)
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        pixel_values = pixel_values.to(device)
        out = []
        for s in range(0, len(ids), self.chunk):
            logits = self.model(ids[s : s + self.chunk], mask[s : s + self.chunk], pixel_values[s : s + self.chunk])
            # float64: a confident matcher gives log P(match) within 1e-7 of 0 for several candidates, and
            # float32 would round them to the same value (a tie, which the ranking counts against the gold)
            out.append(logits.logits.double().log_softmax(-1)[:, self.match])
        return torch.cat(out) if out else torch.zeros(0, device=device, dtype=torch.float64)

    @torch.no_grad()
    def pooled(self, pixel_values: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """pixel_values [N, 3, H, W] in [-1, 1], N captions -> [N, hidden] the joint (pooled) state of each
        aligned pair: the fused single-stream features MCAD mixes into the dual teacher's."""
        device = model_device(self.model)
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        pixel_values = pixel_values.to(device)
        out = [
            self.model(ids[s : s + self.chunk], mask[s : s + self.chunk], pixel_values[s : s + self.chunk]).pooled
            for s in range(0, len(ids), self.chunk)
        ]
        return torch.cat(out).float()

    @torch.no_grad()
    def pair_log_match(self, pixel_values: torch.Tensor, texts: Sequence[str], pairs: torch.Tensor) -> torch.Tensor:
        """[B, B] log P(match | image i, caption j) where `pairs` [B, B] is True, NaN elsewhere."""
        i, j = pairs.nonzero(as_tuple=True)
        out = torch.full(pairs.shape, float("nan"), device=pixel_values.device)
        if len(i):
            scores = self.log_match(pixel_values[i], [texts[t] for t in j.tolist()])
            out[i, j] = scores.to(out.device, out.dtype)  # float32: it is added to the dual logits
        return out
