"""Ranks and recall: 1-based ranks both ways from a similarity matrix, R@K, and which queries each model misses.

Image->text: the rank of the best-ranked of the image's captions (the usual COCO / Flickr protocol).
Ties count against the model (a gallery item scoring exactly the gold's score ranks ahead of it), so a
collapsed model that scores everything alike gets rank N, not 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

KS = (1, 5, 10)


def t2i_ranks(sim: torch.Tensor, text_to_image: torch.Tensor) -> torch.Tensor:
    """sim [texts, images] -> [texts]: 1-based rank of each caption's image (ties count against)."""
    gold = sim.gather(1, text_to_image.long()[:, None])
    return (sim >= gold).sum(1)


def i2t_ranks(sim: torch.Tensor, text_to_image: torch.Tensor, image_ids: torch.Tensor | None = None) -> torch.Tensor:
    """sim [texts, images] -> [images with a caption]: 1-based rank of each image's best-ranked caption.

    `image_ids`: the gallery indices of sim's columns (default 0..I-1), so sim can be a column block.
    """
    t2i = text_to_image.long().to(sim.device)
    ids = torch.arange(sim.shape[1], device=sim.device) if image_ids is None else image_ids.to(sim.device)
    is_gold = t2i[:, None] == ids[None, :]
    has = is_gold.any(0)
    best = sim.masked_fill(~is_gold, float("-inf")).max(0).values
    return (sim >= best[None, :]).sum(0)[has]


def recall_summary(ranks: torch.Tensor, ks: Sequence[int] = KS) -> dict:
    """{"R@k": share of ranks <= k, "median_rank", "mean_rank", "n"}."""
    r = ranks.float()
    out = {f"R@{k}": float((r <= k).float().mean()) for k in ks}
    out.update(median_rank=float(r.median()) if len(r) else float("nan"), mean_rank=float(r.mean()), n=len(r))
    return out


def r1_misses(t_ranks: torch.Tensor, i_ranks: torch.Tensor, text_to_image: Sequence[int]) -> dict:
    """The queries whose gold is not first: {"t2i": caption indices, "i2t": image indices}, for error analysis
    (which captions and images does the student get wrong that its teacher gets right?)."""
    images = sorted({int(j) for j in text_to_image})  # i2t ranks follow the captioned images in order
    return {
        "t2i": torch.nonzero(t_ranks > 1).flatten().tolist(),
        "i2t": [images[j] for j in torch.nonzero(i_ranks > 1).flatten().tolist()],
    }


def compare_misses(this: dict, other: dict) -> dict:
    """Two models' `r1_misses` on one gallery, per direction: how many each misses, both, only one of them."""
    out = {}
    for d in ("t2i", "i2t"):
        a, b = set(this[d]), set(other[d])
        out[d] = {
            "this": len(a),
            "other": len(b),
            "both": len(a & b),
            "only_this": len(a - b),
            "only_other": len(b - a),
        }
    return out


def ranks_from_embeddings(
    text_emb: torch.Tensor, image_emb: torch.Tensor, text_to_image: Sequence[int], chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """(t2i ranks, i2t ranks) without holding the whole similarity matrix (blocks of `chunk`)."""
    t2i = torch.as_tensor(list(text_to_image), dtype=torch.long)
    text_emb, image_emb = text_emb.float(), image_emb.float()
    t_ranks = torch.cat(
        [t2i_ranks(text_emb[s : s + chunk] @ image_emb.T, t2i[s : s + chunk]) for s in range(0, len(t2i), chunk)]
    )
    i_ranks = [
        i2t_ranks(text_emb @ image_emb[s : s + chunk].T, t2i, torch.arange(s, min(s + chunk, len(image_emb))))
        for s in range(0, len(image_emb), chunk)
    ]
    return t_ranks, torch.cat(i_ranks)


def scores_from_ranks(t_ranks: torch.Tensor, i_ranks: torch.Tensor, ks: Sequence[int] = KS) -> dict:
    """{"i2t": summary, "t2i": summary, "r1": mean of the two R@1, "rsum": sum of every R@k}."""
    i2t, t2i = recall_summary(i_ranks, ks), recall_summary(t_ranks, ks)
    return {
        "i2t": i2t,
        "t2i": t2i,
        "r1": (i2t["R@1"] + t2i["R@1"]) / 2,
        "rsum": sum(d[f"R@{k}"] for d in (i2t, t2i) for k in ks),
    }
