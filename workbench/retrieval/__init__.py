"""Image-text retrieval with dual encoders: R@1/5/10 both ways, median rank, a search index, timings.

* A `Gallery` is images plus captions, `text_to_image[t]` naming caption t's image: the shapes
  `retrieval` task (one unique caption per scene) or COCO-Karpathy files from a local path
  (`KarpathyCaptions`, five captions per image) — `gallery_from(dataset)` takes either (`gallery`).
* `DualEncoder` pairs a dual encoder (our `DualStudent`, or a CLIP folder via
  `workbench.models.clip`) with its tokenizer and gives L2-normalised embeddings (`encoders`).
* The gallery's image embeddings are computed once into an `ImageIndex` (one matrix product per
  query batch; `faiss.IndexFlatIP` when faiss-cpu is installed and asked for, or for galleries of
  100k+ images on "auto"; `index`). Index-building time, per-query latency (one caption: tokenize, encode,
  search the top 10) and the model's retrieval parameters are reported next to R@K (`evaluation`).
* Ranks are 1-based. Image->text: the rank of the best-ranked of the image's captions (the usual
  COCO / Flickr protocol). Ties count against the model (a gallery item scoring exactly the gold's
  score ranks ahead of it), so a collapsed model that scores everything alike gets rank N, not 1 (`ranks`).
* `FusionMatcher` turns a fusion teacher trained on image-text matching (`shapes-itm-mixed`) into
  log P(match) scores for (image, caption) pairs: the single-stream signal MCAD injects, and a
  re-ranker of a dual encoder's top-k (`evaluate_retrieval(..., rerank=matcher)`).
"""

from workbench.retrieval.encoders import (
    DualEncoder,
    FusionMatcher,
    embed_gallery_images,
    embed_gallery_texts,
    retrieval_parameters,
    size_mb,
)
from workbench.retrieval.evaluation import evaluate_retrieval, format_retrieval, loop_metrics, rerank_ranks
from workbench.retrieval.gallery import Gallery, gallery_from
from workbench.retrieval.index import FAISS_AUTO_MIN, GalleryIndex, ImageIndex
from workbench.retrieval.ranks import (
    KS,
    compare_misses,
    i2t_ranks,
    r1_misses,
    ranks_from_embeddings,
    recall_summary,
    scores_from_ranks,
    t2i_ranks,
)

__all__ = [
    "FAISS_AUTO_MIN",
    "KS",
    "DualEncoder",
    "FusionMatcher",
    "Gallery",
    "GalleryIndex",
    "ImageIndex",
    "compare_misses",
    "embed_gallery_images",
    "embed_gallery_texts",
    "evaluate_retrieval",
    "format_retrieval",
    "gallery_from",
    "i2t_ranks",
    "loop_metrics",
    "r1_misses",
    "ranks_from_embeddings",
    "recall_summary",
    "rerank_ranks",
    "retrieval_parameters",
    "scores_from_ranks",
    "size_mb",
    "t2i_ranks",
]
