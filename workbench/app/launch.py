"""The app on the shipped checkpoints (`shipped_demo`), served (`serve`), with the heavier tabs' imports
done in the background shortly after start-up (`start_preload`). `app.py` at the repository root calls
these."""

from __future__ import annotations

import threading
from pathlib import Path

import gradio as gr

from workbench.app.blocks import build_app
from workbench.app.loading import RETRIEVAL_GALLERY, assets_dir, load_pairs, shipped_pairs, warm_up
from workbench.data.samples import load_samples


def shipped_demo(
    assets: str | Path | None = None, gallery_size: int = RETRIEVAL_GALLERY, data_roots: dict[str, str] | None = None
) -> gr.Blocks:
    """The app over every shipped pair and the shipped retrieval models of `assets` (default
    `assets_dir()`), each model warmed up with one query; `data_roots`: the real datasets' folders (the Errors
    tab compares a pair trained on one on its test split)."""
    assets = assets_dir(assets)
    pairs = load_pairs(shipped_pairs(assets))
    warm_up(pairs)
    samples = load_samples(assets / "samples")
    return build_app(pairs, samples, gallery_size=gallery_size, assets=assets, data_roots=data_roots)


def preload() -> None:
    """Import what the Attention, Speed and Errors tabs use (Captum, the benchmark), so that the first
    click on those tabs does not wait for it."""
    import workbench.bench  # noqa: F401
    import workbench.evaluate  # noqa: F401
    import workbench.explain  # noqa: F401


def start_preload(delay_s: float = 5.0) -> None:
    """`preload` in the background after `delay_s`: after start-up and the first requests, not during them."""
    timer = threading.Timer(delay_s, preload)
    timer.daemon = True
    timer.start()


def serve(demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, **kwargs):
    """Launch `demo` the way `python app.py` does (the tests use this too)."""
    kwargs.setdefault("max_file_size", "64mb")  # an upload bound: a 4000 x 4000 RGB PNG is at most ~48 MB
    return demo.launch(server_name=host, server_port=port, show_error=True, **kwargs)
