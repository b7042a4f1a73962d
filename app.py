"""The workbench app's entry point: teacher and student side by side, live. The app itself is the package
`workbench/app/` (one module per tab: Ask, Attention, Speed, Errors, Retrieval); this file builds it on the
shipped checkpoints and serves it.

    python app.py [--port 7860] [--host 127.0.0.1] [--assets DIR] [--gallery-size 300] [--data-root [NAME=]DIR]
    gradio app.py                   # reload mode: serves the module-level `demo`, rebuilt on every change
    gradio app.py -- --assets DIR   # reload mode with arguments

`--assets` (or the environment variable WORKBENCH_ASSETS) is the directory of the shipped checkpoints and
sample images; the default is the repository's assets/. `--data-root` is where the real datasets are
(docs/real-data.md): the Errors tab compares a pair distilled on vqav2, snli-ve or nlvr2 on that dataset's test
split. One folder for every dataset, or NAME=DIR once per dataset.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from workbench.allocator import keep_freed_memory
from workbench.app import RETRIEVAL_GALLERY, assets_dir, serve, shipped_demo, shipped_pairs
from workbench.app.launch import start_preload


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve the workbench app on the shipped checkpoints.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument(
        "--assets",
        default=None,
        help="directory of the shipped checkpoints and samples (default: $WORKBENCH_ASSETS, else the repo's assets/)",
    )
    parser.add_argument(
        "--gallery-size", type=int, default=RETRIEVAL_GALLERY, help="shapes test scenes in the Retrieval tab's gallery"
    )
    parser.add_argument(
        "--data-root",
        action="append",
        default=[],
        metavar="[NAME=]DIR",
        help="the folder of a real dataset (vqav2, snli-ve, nlvr2) whose test split the Errors tab reads for a pair "
        "trained on it: DIR for every dataset, or NAME=DIR (repeat the option for several)",
    )
    return parser.parse_args(argv)


def data_roots(items: list[str]) -> dict[str, str]:
    """["vqav2=/data/vqa", "/data/any"] -> {"vqav2": "/data/vqa", "*": "/data/any"}."""
    from workbench.data import REAL_DATASETS

    out = {}
    for item in items:
        name, sep, folder = item.partition("=")
        named = sep and name in REAL_DATASETS  # else the whole item is a folder (which may hold "=")
        out[name if named else "*"] = folder if named else item
    return out


def create_demo(args: argparse.Namespace):
    """The app on the shipped checkpoints of `args.assets` (or the default assets directory)."""
    if args.assets:  # the library's own asset lookups (e.g. `workbench.api.load_model` by name) agree
        os.environ["WORKBENCH_ASSETS"] = str(Path(args.assets).resolve())
    keep_freed_memory()  # large forward passes reuse freed memory instead of faulting in fresh pages each time
    assets = assets_dir(args.assets)
    t0 = time.perf_counter()
    demo = shipped_demo(assets, gallery_size=args.gallery_size, data_roots=data_roots(args.data_root))
    n = len(shipped_pairs(assets))
    print(f"{n} task / model pairs loaded and the app built in {time.perf_counter() - t0:.1f} s")
    return demo


# Run as a script (`python app.py ARGS`, or `gradio app.py -- ARGS`, which runs this file too) the command line
# applies; imported as a module, the defaults. Either way `demo` is the app: reload mode serves it.
args = parse_args(sys.argv[1:] if __name__ == "__main__" else [])
demo = create_demo(args)

if __name__ == "__main__":
    start_preload()
    serve(demo, args.host, args.port)
