"""Explaining predictions of the fusion teacher and the dual student, side by side (docs/design.md,
"Explaining predictions").

One call per method, for either model kind, on a one-example `Batch` (`encode(model, tokenizer,
image, question)`), returning plain numpy / dicts with patch maps already on the image grid
[rows, cols] (row 0 at the top; see `grid` for the one token -> cell mapping):

  cross_attention        raw text-to-image / image-to-text attention (student: its virtual one)
  attention_rollout      Abnar & Zuidema rollout (teacher: joint sequence; student: per tower)
  relevancy              Chefer et al. 2021 gradient-weighted relevancy
  integrated_gradients   Captum LayerIntegratedGradients on patch and word embeddings
  explain                all of them at once; `image_maps` batched, one map per example
  deletion_curve / insertion_curve / faithfulness_over_split   faithfulness of a map (10% steps by
                         default, `steps="patch"` per patch); perturbation_curves: many maps' curves batched
  map_agreement / agreement_over_split                         teacher-student agreement
"""

from workbench.explain.agreement import agreement_over_split, kl_divergence, map_agreement, spearman
from workbench.explain.attention import cross_attention, patch_words, question_map, word_map
from workbench.explain.attribution import integrated_gradients
from workbench.explain.faithfulness import (
    auc,
    deletion_curve,
    faithfulness_over_split,
    insertion_curve,
    mask_patches,
    perturbation_curve,
    perturbation_curves,
)
from workbench.explain.grid import cell_of, grid_of, patch_index, to_grid
from workbench.explain.inputs import encode
from workbench.explain.maps import METHODS, explain, image_maps
from workbench.explain.relevancy_maps import relevancy
from workbench.explain.rollout_maps import attention_rollout, rollout


def normalise_map(m, how: str = "sum"):
    """A map scaled for comparison across models: "sum" divides by the sum of absolute values (a
    share of the total), "max" by the largest absolute value."""
    import numpy as np

    m = np.asarray(m, dtype=np.float64)
    scale = np.abs(m).sum() if how == "sum" else np.abs(m).max()
    return m / scale if scale > 0 else m


__all__ = [
    "METHODS",
    "agreement_over_split",
    "attention_rollout",
    "auc",
    "cell_of",
    "cross_attention",
    "deletion_curve",
    "encode",
    "explain",
    "faithfulness_over_split",
    "grid_of",
    "image_maps",
    "insertion_curve",
    "integrated_gradients",
    "kl_divergence",
    "map_agreement",
    "mask_patches",
    "normalise_map",
    "patch_index",
    "patch_words",
    "perturbation_curve",
    "perturbation_curves",
    "question_map",
    "relevancy",
    "rollout",
    "spearman",
    "to_grid",
    "word_map",
]
