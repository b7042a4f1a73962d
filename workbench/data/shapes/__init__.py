"""The `shapes` scene generator and its tasks (vqa, ve, nlvr, retrieval, itm).

Scenes are deterministic functions of (split, index, seed). Objects sit on a G x G grid whose
cells coincide with the model's image patches (64 px image, 4 x 4 grid, 16 px patches by
default): one object per patch makes training fast and attention maps crisp.

Within a scene every object has its own colour, so "the red circle" always names at most one
object, found by one attribute. Every answer is computed from the scene graph (`Scene.objects`), and
the tests recompute them independently.

Splits are disjoint by construction: a layout belongs to the split its hash falls in (`in_split`),
and so does every changed scene a split shows or names (retrieval variants, hard negatives), so no
image or caption of one split is one of another. The `compositional` split holds out some
(colour, shape) combinations: no train / val / test image or text contains or names them, every
compositional scene contains at least one and its questions mention it (the domain shift of MAD's
protocol).

Modules: `scenes` (the world, scene generation, rendering), `questions` (VQA, VE and NLVR texts and
answers), `captions` (captions and the changed scenes of hard negatives), `dataset` (`ShapesDataset`).
"""

from workbench.data.example import Example
from workbench.data.shapes.captions import (
    ITM_LABELS,
    ITM_MIXED_TYPES,
    ITM_TYPES,
    RETRIEVAL_VARIANTS,
    caption,
    partial_scene,
    perturb,
    perturb_in_split,
    perturbations,
)
from workbench.data.shapes.dataset import ShapesDataset
from workbench.data.shapes.questions import (
    NLVR_LABELS,
    VE_LABELS,
    VQA_ANSWERS,
    VQA_TYPES,
    nlvr_statement,
    ve_hypothesis,
    vqa_question,
)
from workbench.data.shapes.scenes import (
    COLOURS,
    HELD_OUT,
    NUMBER_WORDS,
    OCCLUDER_RGB,
    SHAPES,
    SIZES,
    SPLITS,
    Obj,
    Scene,
    ShapesConfig,
    in_split,
    make_scene,
    render,
    scene_key,
    scene_rng,
)

__all__ = [
    "COLOURS",
    "HELD_OUT",
    "ITM_LABELS",
    "ITM_MIXED_TYPES",
    "ITM_TYPES",
    "NLVR_LABELS",
    "NUMBER_WORDS",
    "OCCLUDER_RGB",
    "RETRIEVAL_VARIANTS",
    "SHAPES",
    "SIZES",
    "SPLITS",
    "VE_LABELS",
    "VQA_ANSWERS",
    "VQA_TYPES",
    "Example",
    "Obj",
    "Scene",
    "ShapesConfig",
    "ShapesDataset",
    "caption",
    "in_split",
    "make_scene",
    "nlvr_statement",
    "partial_scene",
    "perturb",
    "perturb_in_split",
    "perturbations",
    "render",
    "scene_key",
    "scene_rng",
    "ve_hypothesis",
    "vqa_question",
]
