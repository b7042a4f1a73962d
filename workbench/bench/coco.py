"""Retrieval at COCO-5k scale (5,000 images x 25,000 captions, the Karpathy test split's size) with a preset's
student: synthetic inputs (random pixels and token ids: content does not change the cost, only the shapes do).

* Student, encoding: every image and caption once. Encoding 30,000 items with a 768-wide model takes many minutes
  on a small CPU, so it is timed on `sample_images` images and `sample_texts` captions (interleaved rounds) and
  scaled linearly to the full counts (encoding cost is linear in the count at a fixed batch), marked so.
* Student, index + search: measured at full size: 5,000 x D image embeddings into the index (a normalised matrix,
  or a faiss inner-product index), then the top-k of every one of the 25,000 captions.
* Teacher: 125 M joint passes, never run: its measured per-pair cost times the number of pairs, marked extrapolated.
"""

from __future__ import annotations

import time

import torch

from workbench.bench.measure import round_timing, time_rounds
from workbench.bench.retrieval_speed import choose_ranker, rank
from workbench.models.io import Checkpoint

N_IMAGES, N_TEXTS = 5_000, 25_000


def _encoders(student, batch: int, text_len: int):
    g = torch.Generator().manual_seed(0)
    side = student.image_size
    pixels = torch.randn(batch, 3, side, side, generator=g)
    ids = torch.randint(5, 1000, (batch, text_len), generator=g)
    mask = torch.ones(batch, text_len, dtype=torch.long)

    @torch.inference_mode()
    def images():
        return student.embed_for_retrieval(image_states=student.encode_image(pixels))[1]

    @torch.inference_mode()
    def texts():
        return student.embed_for_retrieval(student.encode_text(ids, mask))[0]

    return images, texts


def _search(image_emb: torch.Tensor, text_emb: torch.Tensor, k: int, ranker: str, chunk: int = 2_500):
    """Index the images and rank them for every caption, `chunk` captions at a time (a 25,000 x 5,000 score
    matrix at once would be 500 MB)."""
    started = time.perf_counter()
    index = torch.nn.functional.normalize(image_emb, dim=-1)
    if ranker == "faiss":
        import faiss

        flat = faiss.IndexFlatIP(index.shape[1])
        flat.add(index.numpy())
    indexed = time.perf_counter()
    for i in range(0, len(text_emb), chunk):
        q = torch.nn.functional.normalize(text_emb[i : i + chunk], dim=-1)
        flat.search(q.numpy(), k) if ranker == "faiss" else rank(q, index, k, "matmul")
    return indexed - started, time.perf_counter() - indexed


def coco_retrieval(
    student: Checkpoint,
    teacher_per_pair_s: float,
    threads: int = 2,
    sample_images: int = 32,
    sample_texts: int = 256,
    text_len: int = 14,
    rounds: int = 3,
    top_k: int = 10,
    ranker: str = "auto",
) -> dict:
    """The COCO-5k row: the student's encode (sample-timed, scaled), index and search (measured), and the
    teacher's N x M joint passes extrapolated from `teacher_per_pair_s` (see the module docstring)."""
    sm = student.model.eval()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        fns = {"images": _encoders(sm, sample_images, text_len)[0], "texts": _encoders(sm, sample_texts, text_len)[1]}
        fns_by_n = {"images": sample_images, "texts": sample_texts}
        # a budget of 0 s: each round times one call of each (a call is a whole sample batch)
        timed = {k: round_timing(v) for k, v in time_rounds(fns, threads, 0.0, rounds, "coco encode").items()}
        dim = fns["images"]().shape[-1]
        g = torch.Generator().manual_seed(1)
        ranker = choose_ranker(ranker)
        index_s, search_s = _search(torch.randn(N_IMAGES, dim, generator=g), torch.randn(N_TEXTS, dim, generator=g),
                                    top_k, ranker)  # fmt: skip
    finally:
        torch.set_num_threads(old_threads)
    per_item = {k: timed[k]["median_s"] / fns_by_n[k] for k in timed}
    encode_s = per_item["images"] * N_IMAGES + per_item["texts"] * N_TEXTS
    student_s = encode_s + index_s + search_s
    teacher_s = teacher_per_pair_s * N_IMAGES * N_TEXTS
    return {
        "n_images": N_IMAGES,
        "n_texts": N_TEXTS,
        "inputs": f"synthetic: random pixels, {text_len}-token random captions, random embeddings for the search",
        "ranker": ranker,
        "top_k": top_k,
        "student": {
            "encode_images_s": per_item["images"] * N_IMAGES,
            "encode_texts_s": per_item["texts"] * N_TEXTS,
            "encode_basis": {
                "sample_images": sample_images,
                "sample_texts": sample_texts,
                "rounds": rounds,
                "per_image_s": per_item["images"],
                "per_text_s": per_item["texts"],
                "rule": "scaled linearly from the timed sample batches",
            },  # fmt: skip
            "encode_extrapolated": True,
            "index_s": index_s,
            "search_s": search_s,
            "search_extrapolated": False,
            "total_s": student_s,
        },
        "teacher": {
            "passes": N_IMAGES * N_TEXTS,
            "per_pair_s": teacher_per_pair_s,
            "total_s": teacher_s,
            "extrapolated": True,
            "rule": "seconds = per_pair_s * images * captions",
        },  # fmt: skip
        "speedup": teacher_s / student_s,
    }
