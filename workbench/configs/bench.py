"""Model-size presets for speed and memory measurements (`workbench scale`, and `workbench bench --preset`):
architectures built from configs with RANDOM weights, so every figure they give is about time and memory,
never accuracy ("speed only: untrained weights" is written next to each).

`vilt-b32` is the shape of dandelin/vilt-b32-finetuned-vqa: 768 wide, 12 layers, 12 heads, 32-pixel patches at
384 px (144 patches), 40 text positions, BERT's 30,522-word vocabulary, 3,129 VQA answers. Its students are dual
encoders of the same width: `student` of the same depth in both towers (DiDE's), `student-fast` with a two-layer
text tower (the cached path runs only the text tower and the head, so its depth sets the per-query cost). `toy`
is the shipped models' size (the tests use it), with the shipped fast student's one-layer text tower.

`students` maps a student's name to its size overrides (keyword arguments of the dual model, on top of `size`).
"""

from __future__ import annotations

PRESETS: dict[str, dict] = {
    "vilt-b32": dict(
        size=dict(hidden_size=768, num_layers=12, num_heads=12, patch_size=32, image_size=384, max_text_len=40),
        vocab_size=30522,
        num_labels=3129,
        students={"student": {}, "student-fast": dict(text_layers=2)},
    ),
    "toy": dict(
        size=dict(hidden_size=128, num_layers=4, num_heads=4, patch_size=16, image_size=64, max_text_len=64),
        vocab_size=1000,
        num_labels=32,
        students={"student": {}, "student-fast": dict(text_layers=1)},
    ),
}
