"""The page's short glossary, shown before anything is run: the two models and their colours, the recipes of the
loaded checkpoints (their one-line summaries from the method registry, `workbench.methods`), the map methods, the
agreement measures, P(match) and what "never seen in training" means."""

from __future__ import annotations

from workbench.app.ui import swatch
from workbench.coverage import MAX_ASPECT


def recipe_lines(recipes: list[str]) -> list[str]:
    """One line per recipe name: its registry summary (a name the registry does not know is shown as is)."""
    from workbench.methods import METHODS

    lines = []
    for name in dict.fromkeys(r for r in recipes if r):
        method = METHODS.get(name)
        lines.append(f"- `{name}`: {method.summary}" if method else f"- `{name}`")
    return lines


def glossary_markdown(recipes: list[str]) -> str:
    """The glossary for checkpoints trained with `recipes`."""
    return "\n".join(
        [
            f"- {swatch('teacher')} **teacher**: the fusion encoder (patches and words in one transformer). "
            f"{swatch('student')} **student**: the dual encoder distilled from it (an image and a text tower; "
            "image features cacheable). Same colours in every tab.",
            "- **Recipe**, how a checkpoint was trained:",
            *[f"  {line}" for line in recipe_lines(recipes)],
            "- **Real cross-attention**: the teacher's attention from words to image patches in its joint layers. "
            "**Virtual cross-attention**: the student's text-tower queries against its image-tower keys (its towers "
            "never attend to each other); DiDE distils the real one into it.",
            "- **Rollout**: attention flow through all layers. **Relevancy** (Chefer et al. 2021): attention weighted "
            "by its gradient for the predicted answer. **Integrated Gradients**: each patch's signed contribution.",
            "- **KL**: how far the student's map is from the teacher's, both as shares of 1 (0: the same map). "
            "**Spearman ρ**: rank correlation of the two maps' patch values (1: same order, 0: unrelated).",
            "- **P(match)**: the fusion teacher's probability that an image and a caption match (Retrieval).",
            "- **Never seen in training**: question words absent from the model's training texts; a warning when "
            "they are most of the question or every token is [UNK]. Notes on images smaller than the patch grid, "
            f"greyscale for a colour task, or beyond {MAX_ASPECT:g}:1.",
        ]
    )
