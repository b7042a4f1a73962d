"""Sample images for the app and the notebooks, written into assets/samples/ by `workbench rebuild`.

Shapes test scenes are rendered by our generator; easy-VQA test images come from the `easy-vqa`
package (MIT). Each sample is a PNG plus an entry in `samples.json` with example questions.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from workbench.data.shapes import VQA_TYPES, ShapesConfig, make_scene, render, ve_hypothesis, vqa_question


def write_samples(dest: str | Path, n_shapes: int = 8, n_easy: int = 4) -> list[dict]:
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    entries = []
    cfg = ShapesConfig()
    for i in range(n_shapes):
        scene = make_scene("test", 10_000 + i, cfg, occluder=i % 2 == 1)
        rng = random.Random(i)
        name = f"shapes-{i}.png"
        render(scene, cfg.image_size).save(dest / name)
        questions = [vqa_question(scene, t, rng)[0] for t in VQA_TYPES]
        hypotheses = []
        for want in ("entailment", "neutral", "contradiction"):
            for _ in range(50):  # a scene without the cloth has no neutral hypothesis
                if (h := ve_hypothesis(scene, rng, want)) is not None:
                    hypotheses.append(h[0])
                    break
        entries.append({"file": name, "source": "shapes", "questions": questions, "hypotheses": hypotheses})
    try:
        import easy_vqa

        qs, _, ids = easy_vqa.get_test_questions()
        paths = easy_vqa.get_test_image_paths()
        for image_id in sorted(set(ids))[:n_easy]:
            name = f"easy-vqa-{image_id}.png"
            shutil.copy(paths[image_id], dest / name)
            entries.append(
                {
                    "file": name,
                    "source": "easy-vqa",
                    "questions": [q for q, j in zip(qs, ids) if j == image_id][:4],
                    "hypotheses": [],
                }
            )
    except ImportError:  # pragma: no cover
        pass
    (dest / "samples.json").write_text(json.dumps(entries, indent=2))
    return entries


def load_samples(folder: str | Path) -> list[dict]:
    folder = Path(folder)
    entries = json.loads((folder / "samples.json").read_text())
    for e in entries:
        e["path"] = str(folder / e["file"])
    return entries
