"""Model-size presets for speed and memory measurements (`workbench scale`, and `workbench bench` presets):
architectures built from configs with RANDOM weights, so every figure they give is about time and memory,
never accuracy ("untrained weights" is written next to each).

`vilt-b32` is the shape of dandelin/vilt-b32-finetuned-vqa: 768 wide, 12 layers, 12 heads, 32-pixel patches at
384 px (144 patches), 40 text positions, BERT's 30,522-word vocabulary, 3,129 VQA answers; its student is a dual
encoder of the same width and depth (DiDE's). `toy` is the shipped models' size (the tests use it)."""

from __future__ import annotations

PRESETS: dict[str, dict] = {
    "vilt-b32": dict(
        size=dict(hidden_size=768, num_layers=12, num_heads=12, patch_size=32, image_size=384, max_text_len=40),
        vocab_size=30522,
        num_labels=3129,
    ),
    "toy": dict(
        size=dict(hidden_size=128, num_layers=4, num_heads=4, patch_size=16, image_size=64, max_text_len=64),
        vocab_size=1000,
        num_labels=32,
    ),
}
