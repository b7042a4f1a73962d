"""Retrieval over N images x N texts: the teacher must run one joint pass per pair (N^2); the
student encodes every image and every text once and ranks with one matrix product of its
retrieval embeddings. Teacher runs predicted to exceed `budget_s` are not run: their time is
extrapolated from the per-pair cost measured at the largest N that was run, and marked
``"extrapolated": true`` with the basis. The smallest N is always measured.
"""

from __future__ import annotations

import torch

from workbench.bench.measure import peak_memory, time_blocks, time_repeats, timing
from workbench.bench.pair import BenchInputs, Pair


def rank(text_emb: torch.Tensor, image_emb: torch.Tensor, k: int, ranker: str) -> torch.Tensor:
    """Top-`k` image indices per text: one matrix product (or a faiss inner-product index)."""
    k = min(k, image_emb.shape[0])
    if ranker == "faiss":
        import faiss

        index = faiss.IndexFlatIP(image_emb.shape[1])
        index.add(image_emb.float().cpu().numpy())
        return torch.from_numpy(index.search(text_emb.float().cpu().numpy(), k)[1])
    return (text_emb @ image_emb.T).topk(k, dim=-1).indices


def choose_ranker(ranker: str) -> str:
    """ "auto" -> "faiss" when faiss is installed, else "matmul"; any other value unchanged."""
    if ranker != "auto":
        return ranker
    try:
        import faiss  # noqa: F401

        return "faiss"
    except ImportError:
        return "matmul"


def _retrieval_fns(teacher, student, t_in: BenchInputs, s_in: BenchInputs, n: int, chunk: int, k: int, ranker: str):
    """Callables ranking n images for each of n texts: the teacher pair by pair, the student by embeddings."""
    t_chunks = [t_in.batch(i, min(chunk, n - i)) for i in range(0, n, chunk)]
    s_chunks = [s_in.batch(i, min(chunk, n - i)) for i in range(0, n, chunk)]
    t_text, t_images = [c[:2] for c in t_chunks], torch.cat([c[2] for c in t_chunks])
    s_text, s_images = [c[:2] for c in s_chunks], [c[2][:, 0] for c in s_chunks]

    @torch.inference_mode()
    def teacher_fn():
        columns = []
        for i in range(n):  # image i against every text, in text chunks: n * n joint passes
            image = t_images[i : i + 1]
            rows = [teacher(ids, mask, image.expand(len(ids), *image.shape[1:])).logits[:, -1] for ids, mask in t_text]
            columns.append(torch.cat(rows))
        return torch.stack(columns, dim=1).topk(min(k, n), dim=-1).indices  # [texts, images] scores

    @torch.inference_mode()
    def student_fn():
        images = torch.cat([student.embed_for_retrieval(image_states=student.encode_image(px))[1] for px in s_images])
        texts = torch.cat([student.embed_for_retrieval(student.encode_text(ids, m))[0] for ids, m in s_text])
        return rank(texts, images, k, ranker)

    return teacher_fn, student_fn, (t_images, t_text), (s_images, s_text)


def _measure_or_extrapolate(
    fn, model, inputs, predicted: float, budget_s: float, threads: int, min_run_time: float, label: str, force: bool
) -> dict | None:
    """Time `fn` if its predicted run time fits the budget (or `force`); None means extrapolate."""
    if not force and predicted > budget_s:
        return None
    if predicted * 10 < min_run_time:
        m = time_blocks(fn, threads, min_run_time, label)
    else:
        repeats = max(1, min(5, int(budget_s // max(predicted, 1e-9)) - 1))
        if predicted * 10 <= budget_s:
            fn()  # warm-up when it is cheap; at seconds per call, first-call costs are noise
        m = time_repeats(fn, threads, repeats, label)
    return {**timing(m), "extrapolated": False, "peak_memory_bytes": peak_memory(fn, model, inputs)}


def _extrapolated(seconds: float, basis: dict) -> dict:
    return {
        "median_s": seconds,
        "iqr_s": None,
        "runs": 0,
        "extrapolated": True,
        "basis": basis,
        "peak_memory_bytes": None,
    }


def _say(pair: Pair, who: str, n: int, entry: dict) -> None:
    pair.step(f"{who} retrieval {n}x{n}: {entry['median_s']:.3g} s{' (extrapolated)' if entry['extrapolated'] else ''}")


class _Costs:
    """What the next N's predictions and extrapolations start from: the teacher's cost per pair and the student's
    per item (first from the throughput cells at the chunk size, then from each retrieval run measured)."""

    def __init__(self, paths: dict[str, dict], chunk: int):
        self.per_pair = paths["teacher"]["batches"][str(chunk)]["median_s"] / chunk
        self.per_item = paths["student"]["batches"][str(chunk)]["median_s"] / chunk  # one image + one text
        self.basis: dict | None = None
        self.s_basis: dict | None = None


def _teacher_entry(pair: Pair, fn, inputs, n: int, first: bool, budget_s: float, costs: _Costs) -> dict:
    t = _measure_or_extrapolate(
        fn, pair.teacher, inputs, n * n * costs.per_pair, budget_s, pair.threads, pair.min_run_time,
        f"teacher retrieval {n}", first,
    )  # fmt: skip
    if t is None:
        return _extrapolated(costs.basis["per_pair_s"] * n * n, costs.basis)
    costs.per_pair = t["median_s"] / (n * n)
    costs.basis = {"from_n": n, "per_pair_s": costs.per_pair, "rule": "seconds = per_pair_s * n * n"}
    return t


def _student_entry(pair: Pair, fn, inputs, n: int, first: bool, budget_s: float, costs: _Costs) -> dict:
    s = _measure_or_extrapolate(
        fn, pair.student, inputs, n * costs.per_item, budget_s, pair.threads, pair.min_run_time,
        f"student retrieval {n}", first,
    )  # fmt: skip
    if s is None:
        basis = {**costs.s_basis, "rule": "seconds grow linearly with n (encoding dominates)"}
        return _extrapolated(costs.s_basis["seconds"] * n / costs.s_basis["from_n"], basis)
    costs.per_item = s["median_s"] / n
    costs.s_basis = {"from_n": n, "seconds": s["median_s"]}
    return s


def measure_retrieval(
    pair: Pair, sizes: list[int], paths: dict[str, dict], budget_s: float, chunk: int, k: int, ranker: str
) -> dict:
    """Retrieval entries for each N; the teacher extrapolated beyond the budget, from measured cost."""
    costs = _Costs(paths, chunk)
    entries = []
    for i, n in enumerate(sizes):
        teacher_fn, student_fn, t_inputs, s_inputs = _retrieval_fns(
            pair.teacher, pair.student, pair.t_in, pair.s_in, n, chunk, k, ranker
        )
        t = _teacher_entry(pair, teacher_fn, t_inputs, n, i == 0, budget_s, costs)
        _say(pair, "teacher", n, t)
        s = _student_entry(pair, student_fn, s_inputs, n, i == 0, budget_s, costs)
        _say(pair, "student", n, s)
        entries.append(
            {
                "n_images": n,
                "n_texts": n,
                "teacher_passes": n * n,
                "student_encodings": 2 * n,
                "teacher": t,
                "student": s,
                "speedup": t["median_s"] / s["median_s"],
                "extrapolated": t["extrapolated"] or s["extrapolated"],
            }
        )
    return {"ranker": ranker, "top_k": k, "text_chunk": chunk, "entries": entries}
