"""Task heads shared by the fusion teacher and the dual student.

The classifier layout is ViLT's (`ViltForQuestionAnswering.classifier`: d -> 2d -> labels, and
`ViltForImagesAndTextClassification.classifier`: 2d -> 2d -> labels for two images), so real ViLT
checkpoints load into it by parameter name.
"""

from __future__ import annotations

from torch import nn

TASKS = ("vqa", "ve", "nlvr", "itm")


def classifier(hidden_size: int, num_images: int, num_labels: int) -> nn.Sequential:
    """`Linear(n*d, 2d) -> LayerNorm -> GELU -> Linear(2d, labels)` over n pooled vectors."""
    width = 2 * hidden_size
    return nn.Sequential(
        nn.Linear(hidden_size * num_images, width),
        nn.LayerNorm(width),
        nn.GELU(),
        nn.Linear(width, num_labels),
    )
