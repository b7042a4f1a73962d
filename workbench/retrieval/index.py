"""Search indexes: a gallery's image embeddings built once, then searched by inner product per text query."""

from __future__ import annotations

import time

import torch

from workbench.data.collate import image_to_tensor
from workbench.retrieval.encoders import DualEncoder, FusionMatcher, embed_gallery_images
from workbench.retrieval.gallery import Gallery
from workbench.retrieval.ranks import t2i_ranks

FAISS_AUTO_MIN = 100_000  # "auto" uses faiss (when installed) from this many gallery images


class ImageIndex:
    """Gallery image embeddings, built once; `search` returns the top-k by inner product (= cosine
    on normalised embeddings). Backends: "torch" (one matrix product, exact), "faiss"
    (`IndexFlatIP`, exact; needs faiss-cpu), "auto" (faiss for 100k+ images when installed)."""

    def __init__(self, embeddings: torch.Tensor, backend: str = "auto"):
        if backend not in ("auto", "torch", "faiss"):
            raise ValueError(f"backend must be 'auto', 'torch' or 'faiss', got {backend!r}")
        if backend == "auto":
            backend = "faiss" if embeddings.shape[0] >= FAISS_AUTO_MIN and _has_faiss() else "torch"
        self.backend = backend
        self.embeddings = embeddings.float().contiguous()
        if backend == "faiss":
            try:
                import faiss
            except ImportError as e:
                raise ImportError("backend 'faiss' needs the faiss-cpu package (pip install faiss-cpu)") from e
            self.faiss = faiss.IndexFlatIP(self.embeddings.shape[1])
            self.faiss.add(self.embeddings.cpu().numpy())

    def __len__(self) -> int:
        return self.embeddings.shape[0]

    def search(self, queries: torch.Tensor, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores, indices), each [Q, k], best first."""
        k = min(k, len(self))
        if self.backend == "faiss":
            scores, idx = self.faiss.search(queries.float().cpu().numpy(), k)
            return torch.from_numpy(scores), torch.from_numpy(idx)
        return (queries.float() @ self.embeddings.T).topk(k, dim=-1)


def _has_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


class GalleryIndex:
    """A dual encoder's index over a gallery, built once: a text query -> the gallery's top-k images.

    `build` embeds every gallery image (the cost paid once, `seconds`); `search` then costs one text
    encoding and one matrix product (or faiss search), and optionally the fusion teacher's matching
    score on the top k only (k joint passes, where scoring the whole gallery would take N).
    """

    def __init__(self, encoder: DualEncoder, gallery: Gallery, index: ImageIndex, seconds: float):
        self.encoder, self.gallery, self.index, self.seconds = encoder, gallery, index, seconds
        self._caption_of: dict[int, str] = {}
        for text, j in zip(gallery.texts, gallery.text_to_image):
            self._caption_of.setdefault(j, text)
        self._gold = {text: j for text, j in zip(gallery.texts, gallery.text_to_image)}

    @classmethod
    @torch.no_grad()
    def build(
        cls,
        encoder: DualEncoder,
        gallery: Gallery,
        batch_size: int = 256,
        backend: str = "auto",
        progress: bool = False,
    ) -> GalleryIndex:
        """Embed the gallery's images (timed) into an `ImageIndex`, with the model in eval mode."""
        model = encoder.model
        was_training = model.training
        model.eval()
        try:
            t0 = time.perf_counter()
            index = ImageIndex(embed_gallery_images(encoder, gallery, batch_size, progress), backend)
            return cls(encoder, gallery, index, time.perf_counter() - t0)
        finally:
            model.train(was_training)

    def __len__(self) -> int:
        return len(self.index)

    def caption(self, image: int) -> str | None:
        """The gallery's (first) caption of an image, if it has one."""
        return self._caption_of.get(image)

    @torch.no_grad()
    def search(self, query: str, k: int = 10, rerank: FusionMatcher | None = None) -> dict:
        """The top-k gallery images for a text query, best first, with the time of each stage.

        Returns {"results": [{"rank", "image", "score", "similarity", "dual_rank", "match_prob"}], "reranked",
        "timings_ms": {"encode", "search"[, "rerank"]}, "truncated", "gold"}. "similarity" is the dual
        encoder's cosine; "score" is what the list is sorted by: the cosine, or with `rerank` the fusion
        teacher's log P(match) (the top k re-ordered among themselves; "dual_rank" keeps the index's
        order). "gold": when the query is one of the gallery's captions, its image and that image's rank.
        """
        enc = self.encoder
        k = max(1, min(int(k), len(self)))
        t0 = time.perf_counter()
        ids, mask = enc.tokenize([query])
        q = enc.text_embeddings(ids, mask).float()
        t1 = time.perf_counter()
        sims, idx = self.index.search(q, k)
        sims, idx = sims[0].float().cpu(), idx[0].long().cpu()
        t2 = time.perf_counter()
        timings = {"encode": 1e3 * (t1 - t0), "search": 1e3 * (t2 - t1)}
        scores, logp = sims, None
        order = torch.arange(len(idx))
        if rerank is not None:
            logp, order = self._rerank(rerank, query, idx)
            scores = logp
            timings["rerank"] = 1e3 * (time.perf_counter() - t2)
        results = [
            {
                "rank": rank,
                "image": int(idx[o]),
                "score": float(scores[o]),
                "similarity": float(sims[o]),
                "dual_rank": int(o) + 1,
                "match_prob": None if logp is None else float(logp[o].exp()),
            }
            for rank, o in enumerate(order.tolist(), start=1)
        ]
        n_tokens = len(enc.tokenizer(query, truncation=False)["input_ids"])
        return {
            "query": query,
            "k": k,
            "results": results,
            "reranked": rerank is not None,
            "timings_ms": timings,
            "truncated": n_tokens > enc.max_length,
            "gold": self._gold_rank(query, q, results),
        }

    def _rerank(self, matcher: FusionMatcher, query: str, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log P(match) of each of the top k, the order that sorts them best first)."""
        pixels = torch.stack([image_to_tensor(self.gallery.load_image(j), matcher.image_size) for j in idx.tolist()])
        logp = matcher.log_match(pixels, [query] * len(idx)).cpu()
        return logp, logp.argsort(descending=True, stable=True)  # ties keep the index's order

    def _gold_rank(self, query: str, q: torch.Tensor, results: list[dict]) -> dict | None:
        """When the query is one of the gallery's captions: its image, and that image's rank (as shown, or in
        the whole gallery when it is not among the results)."""
        if query not in self._gold:
            return None
        j = self._gold[query]
        shown = [r["rank"] for r in results if r["image"] == j]
        full = t2i_ranks(q @ self.index.embeddings.T.to(q.device), torch.tensor([j], device=q.device))
        return {"image": j, "rank": shown[0] if shown else int(full[0])}
