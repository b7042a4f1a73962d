"""`workbench retrieval`: image-text retrieval metrics of a dual encoder (ours or a CLIP folder)."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "retrieval"
HELP = "image-text retrieval metrics of a dual encoder (ours or a CLIP folder): R@K, median rank, speed"


def add_parser(sub) -> argparse.ArgumentParser:
    from workbench.cli.common import retrieval_datasets
    from workbench.data import RETRIEVAL_DATASETS

    p = sub.add_parser(
        NAME,
        help=HELP,
        description="Evaluate a dual encoder on the shapes retrieval gallery or on COCO-Karpathy files from a local "
        "path: image->text and text->image R@1/5/10 and median rank, the time to embed the gallery once into the "
        "index, per-query latency (batch 1) and the model's parameters. --rerank adds a fusion teacher re-ranking "
        "each query's top-k. Writes JSON.",
    )
    p.add_argument("checkpoint", help="dual encoder folder: ours (kind dual) or a Hugging Face CLIP folder")
    p.add_argument("--split", default="test", help="shapes: train/val/test/compositional; Karpathy: train/val/test")
    p.add_argument("--size", type=int, default=None, help="gallery images (default: shapes 1000, Karpathy all)")
    p.add_argument(
        "--dataset",
        default=RETRIEVAL_DATASETS[0],
        choices=retrieval_datasets(),
        help="shapes gallery: in groups of a scene and three one-attribute variants (hard), or random scenes; "
        "coco-karpathy: read from --data-root",
    )
    p.add_argument(
        "--data-root",
        "--karpathy",
        dest="karpathy",
        default=None,
        metavar="PATH",
        help="folder with dataset_coco.json (COCO-Karpathy) instead of shapes",
    )
    p.add_argument("--images-root", default=None, help="Karpathy: where the image folders are (default: --karpathy)")
    p.add_argument("--rerank", default=None, help="fusion teacher (shapes-itm-mixed) re-ranking the top-k")
    p.add_argument("--rerank-k", type=int, default=10)
    p.add_argument(
        "--compare",
        default=None,
        help="a second dual encoder (e.g. the teacher): which R@1 misses the two share and which only one makes",
    )
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "faiss"], help="search index")
    p.add_argument("--out", default=None, help="JSON file (default: CHECKPOINT/retrieval-DATASET-SPLIT.json)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)
    return p


def _gallery(args: argparse.Namespace):
    """(the gallery, its dataset name): COCO-Karpathy files, or a shapes split."""
    from workbench.data import load_dataset
    from workbench.retrieval import gallery_from

    if args.dataset == "coco-karpathy" and not args.karpathy:
        from workbench.data import LAYOUTS
        from workbench.errors import WorkbenchError

        raise WorkbenchError(f"coco-karpathy is read from disk: pass --data-root, the folder holding "
                             f"{LAYOUTS['coco-karpathy']}")  # fmt: skip
    if args.karpathy:
        from workbench.data.formats import KarpathyCaptions

        data = KarpathyCaptions(args.karpathy, args.split, images_root=args.images_root)
        return gallery_from(data, args.size), "coco-karpathy"
    return gallery_from(load_dataset(args.dataset, args.split, args.size or 1000), None), args.dataset


def run(args: argparse.Namespace) -> None:
    from workbench.models.clip import load_dual_encoder
    from workbench.models.io import write_json_atomic
    from workbench.retrieval import DualEncoder, FusionMatcher, compare_misses, evaluate_retrieval, format_retrieval

    ck = load_dual_encoder(args.checkpoint, device=args.device)
    other = load_dual_encoder(args.compare, device=args.device) if args.compare else None  # fail before the work
    matcher = FusionMatcher.load(args.rerank, device=args.device) if args.rerank else None
    gallery, name = _gallery(args)
    metrics = evaluate_retrieval(
        DualEncoder(ck.model, ck.tokenizer), gallery, backend=args.backend, rerank=matcher, rerank_k=args.rerank_k,
        progress=not args.no_progress,
    )  # fmt: skip
    metrics.update({"checkpoint": str(args.checkpoint), "dataset": name, "split": args.split})
    if other is not None:
        theirs = evaluate_retrieval(DualEncoder(other.model, other.tokenizer), gallery, timing=False)
        metrics["compared"] = {
            "checkpoint": str(args.compare),
            "r1": theirs["r1"],
            "misses": compare_misses(metrics["misses"], theirs["misses"]),
        }
    print(format_retrieval(metrics))
    out = Path(args.out) if args.out else None
    if out is None:
        folder = Path(args.checkpoint)
        out = (folder if (folder / "workbench.json").exists() else Path(".")) / f"retrieval-{name}-{args.split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, metrics)
    print(f"wrote {out}")
