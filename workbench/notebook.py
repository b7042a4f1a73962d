"""Small helpers the teaching notebooks share, so no notebook cell re-implements library code, and the
executed HTML copies of the notebooks (`make notebooks-html`).

In a notebook: the quick-mode flag (`quick_mode`: one flag at the top of every notebook, set by the tests
through `WORKBENCH_NOTEBOOK_QUICK=1`), the records of a run folder (`read_metrics`), several runs' training
curves in one figure (`compare_curves`), test accuracy overall and per question type (`accuracy_table`), and
whether a question's answer depends on the image at all (`blank_image_probability`, `find_example`: a
deletion curve can only rank explanation maps when blanking the image changes the answer).

Executed copies: `execute` runs a notebook top to bottom (nbclient, the kernel started in `notebooks/`);
`to_html` writes it as one HTML file whose plotly figures render offline (each figure as a `text/html`
output that draws into a div, plotly.js loaded from `plotly.min.js` beside the HTML, written once by
`write_plotlyjs`; the JupyterLab template's CSS, the same for every notebook, linked from `notebook.css`
beside the HTML); solution cells sit in collapsed `<details>` blocks. `python -m workbench.notebook` does
both for a list of notebooks. nbclient and nbconvert come with the `test` / `lab` extras.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import plotly.graph_objects as go

from workbench.viz import compare_training_curves

QUICK_ENV = "WORKBENCH_NOTEBOOK_QUICK"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
PLOTLY_JS = "plotly.min.js"  # written beside the HTML copies, loaded by each of them
NOTEBOOK_CSS = "notebook.css"  # the lab template's CSS, written beside the HTML copies, linked by each
SOLUTION_TAG = "solution"  # code cells holding an exercise's solution (collapsed in JupyterLab and in HTML)
TRY_TAG = "try-it"  # the "try it yourself" cell of a notebook


def quick_mode() -> bool:
    """The notebooks' QUICK flag: True when `WORKBENCH_NOTEBOOK_QUICK=1` (the notebook tests set it, and
    `make notebooks-html QUICK=1`): every live run shrinks to seconds. A reader on a shared machine can also
    set `QUICK = True` by hand in the first cell."""
    return os.environ.get(QUICK_ENV, "0").strip() == "1"


def read_metrics(run: str | Path, key: str | None = None) -> list[dict]:
    """The records of a run folder's `metrics.jsonl`, in order; with `key`, only those that log it (e.g.
    "t2i": the training-loss records of a DiDE run carry each loss term)."""
    lines = (Path(run) / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return records if key is None else [r for r in records if key in r]


def compare_curves(runs: dict[str, str | Path], baseline: str | None = None, title: str = "") -> go.Figure:
    """`viz.compare_training_curves` of the runs' folders (their metrics.jsonl)."""
    return compare_training_curves({name: read_metrics(folder) for name, folder in runs.items()}, baseline, title)


def accuracy_table(results: dict[str, dict], split: str = "test") -> str:
    """Plain text: accuracy (%) of each run overall and per question type, a column per run, with the
    number of examples. `results` maps a column name to what a run returned ({"test": {"accuracy",
    "n", "per_type": {qtype: {"accuracy", "n"}}}}, as `methods.distill`, `train.train` and
    `evaluate.evaluate` give); the question types are the first column's."""
    names = list(results)
    first = results[names[0]][split]
    lines = [f"{'':<12}" + "".join(f"{name:>10}" for name in names) + f"{'n':>7}"]
    lines.append(
        f"{'overall':<12}" + "".join(f"{100 * results[c][split]['accuracy']:9.1f}%" for c in names) + f"{first['n']:7d}"
    )
    for qtype, m in first["per_type"].items():
        accs = [results[c][split]["per_type"][qtype]["accuracy"] for c in names]
        lines.append(f"{qtype:<12}" + "".join(f"{100 * a:9.1f}%" for a in accs) + f"{m['n']:7d}")
    return "\n".join(lines)


def blank_image_probability(model, batch, baseline: str = "mean") -> dict:
    """How much the answer of a one-example `batch` depends on its image: {"answer" (label index predicted on
    the intact image), "intact", "blank"} with the probability of that answer on the intact image and on the
    image whose every patch is replaced by the `baseline` (the two ends of a deletion curve,
    `explain.deletion_curve` with one step). A "blank" probability close to "intact" means the model gives
    the same answer without looking: no deletion curve can then tell a good explanation from a bad one."""
    import numpy as np

    from workbench.explain import deletion_curve, grid_of

    curve = deletion_curve(model, batch, np.zeros(grid_of(model, batch.pixel_values)), baseline=baseline, steps=1)
    return {"answer": curve["target"], "intact": float(curve["scores"][0]), "blank": float(curve["scores"][-1])}


def find_example(model, tokenizer, dataset, prefix: str, depends_on_image: bool, threshold: float = 0.5) -> int:
    """The index of the first example of `dataset` whose question starts with `prefix` and whose predicted
    answer survives a blanked image (`depends_on_image=False`: blank probability at least `threshold`) or
    does not (`True`: below it). Raises LookupError when there is none."""
    from workbench.explain import encode

    for i, example in enumerate(dataset):
        if not example.text.startswith(prefix):
            continue
        p = blank_image_probability(model, encode(model, tokenizer, example.images[0], example.text))
        if (p["blank"] < threshold) == depends_on_image:
            return i
    need = "needs" if depends_on_image else "does not need"
    raise LookupError(f"no {prefix!r} question in the dataset whose answer {need} the image")


# ----------------------------------------------------------------------------------------------
# executed HTML copies (make notebooks-html)


def sources_digest(nb) -> str:
    """A short hash of a notebook's cells (type and source): an HTML copy records the digest of the notebook it
    was made from, so a test can tell a stale copy."""
    cells = [[c["cell_type"], c["source"]] for c in nb["cells"]]
    return hashlib.sha256(json.dumps(cells).encode()).hexdigest()[:16]


def execute(path: str | Path, quick: bool = False, timeout: int = 1800):
    """(the executed notebook, seconds): `path` run top to bottom in a fresh kernel of the current Python
    ("python3", started in the notebook's folder), `WORKBENCH_NOTEBOOK_QUICK` set from `quick`. A cell that
    fails raises `nbclient.exceptions.CellExecutionError`."""
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    old = os.environ.get(QUICK_ENV)
    os.environ[QUICK_ENV] = "1" if quick else "0"
    try:
        started = time.perf_counter()
        resources = {"metadata": {"path": str(path.parent)}}
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources=resources, coalesce_streams=True)
        client.execute()
        seconds = time.perf_counter() - started
    finally:
        if old is None:
            os.environ.pop(QUICK_ENV, None)
        else:
            os.environ[QUICK_ENV] = old
    return nb, seconds


def _figure_html(fig: dict, div_id: str) -> str:
    """A plotly figure as a div and the script that draws it with the page's global `Plotly`."""
    import plotly.io as pio

    return pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div_id, validate=False)


def _link_for_html(target: str) -> str:
    """A link of a notebook in `notebooks/` as seen from its HTML copy in `docs/notebooks/`: a sibling
    notebook becomes its HTML copy, a path up the tree gains one more `../`."""
    if "://" in target or target.startswith(("#", "mailto:")):
        return target
    if re.fullmatch(r"[\w.-]+\.ipynb(#.*)?", target):
        return re.sub(r"\.ipynb", ".html", target, count=1)
    return "../" + target if target.startswith("../") else target


def html_ready(nb, note: str = ""):
    """A copy of an executed notebook prepared for `to_html`: plotly outputs gain a `text/html` form that
    renders without Jupyter, markdown links point to the HTML copies and the docs, and a first markdown cell
    says how it was run (`note`)."""
    import copy

    import nbformat

    nb = copy.deepcopy(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            cell.source = re.sub(r"\]\(([^)\s]+)\)", lambda m: f"]({_link_for_html(m.group(1))})", cell.source)
        for j, out in enumerate(cell.get("outputs", [])):
            if PLOTLY_MIME in out.get("data", {}):
                out["data"]["text/html"] = _figure_html(out["data"][PLOTLY_MIME], f"figure-{i}-{j}")
    if note:
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(note))
    return nb


TEMPLATE = (
    """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}
<meta name="workbench-notebook-sources" content="{{ resources.workbench_digest }}">
<script src="{{ resources.workbench_plotlyjs }}"></script>
{{ super() }}
{%- endblock html_head_js -%}
{%- block notebook_css -%}
<link rel="stylesheet" href="{{ resources.workbench_css }}">
{%- endblock notebook_css -%}
{% block codecell %}
{%- if '"""
    + SOLUTION_TAG
    + """' in cell.metadata.get('tags', []) -%}
<details class="workbench-solution"><summary><b>Solution (code)</b></summary>
{{ super() }}
</details>
{%- else -%}
{{ super() }}
{%- endif -%}
{% endblock codecell %}
"""
)


def to_html(nb, out: str | Path, digest: str, note: str = "") -> Path:
    """Write an executed notebook as `out` (HTML, JupyterLab's look): figures inline (plotly.js from
    `plotly.min.js` in the same folder, see `write_plotlyjs`), the lab template's CSS linked from
    `notebook.css` in the same folder (written here, see `template_css`), solution cells collapsed, `digest`
    (of the source notebook, `sources_digest`) in a meta tag."""
    import jinja2
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    exporter = HTMLExporter(
        template_name="lab",
        extra_loaders=[jinja2.DictLoader({"workbench.html.j2": TEMPLATE})],
        config=Config({"CSSHTMLHeaderPreprocessor": {"enabled": False}}),  # its CSS goes to notebook.css
    )
    exporter.template_file = "workbench.html.j2"
    resources = {
        "workbench_digest": digest,
        "workbench_plotlyjs": PLOTLY_JS,
        "workbench_css": NOTEBOOK_CSS,
        "metadata": {"name": Path(out).stem},
    }
    body, resources = exporter.from_notebook_node(html_ready(nb, note), resources=resources)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_if_changed(out.parent / NOTEBOOK_CSS, template_css(exporter, resources))
    out.write_text(body, encoding="utf-8")
    return out


def template_css(exporter, resources) -> str:
    """The CSS nbconvert's lab template would inline into every page, in its order: pygments' code colours
    (`CSSHTMLHeaderPreprocessor`), then the template's `notebook_css` block (JupyterLab's index.css, the
    theme, a few print and layout rules), without the `<style>` tags."""
    import copy

    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor

    _, resources = CSSHTMLHeaderPreprocessor().preprocess(None, copy.copy(resources))
    lab = exporter.environment.get_template("lab/index.html.j2")
    block = "".join(lab.blocks["notebook_css"](lab.new_context({"resources": resources})))
    parts = [*resources["inlining"]["css"], re.sub(r"</?style[^>]*>", "", block)]
    return "\n".join(part.strip() + "\n" for part in parts)


def _write_if_changed(path: Path, text: str) -> Path:
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path


def write_plotlyjs(folder: str | Path) -> Path:
    """plotly.js (the copy inside the installed plotly package: no download) as `folder/plotly.min.js`."""
    from plotly.offline import get_plotlyjs

    path = Path(folder) / PLOTLY_JS
    path.parent.mkdir(parents=True, exist_ok=True)
    return _write_if_changed(path, get_plotlyjs())


def _run_note(source: Path, quick: bool, seconds: float, load: dict | None) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    cpu = f"{os.cpu_count()} logical CPUs"
    busy = f", load average {load['1min']:.1f} at the start" if load else ""
    return (
        f"*Executed copy of `notebooks/{source.name}`, run top to bottom on {when} in "
        f"{'quick' if quick else 'full'} mode in {seconds:.0f} s ({cpu}{busy}); made by `make notebooks-html`. "
        "The figures are interactive; solutions are folded under **Solution**. To run it yourself: `make lab`.*"
    )


def export_html(paths: list[str | Path], out: str | Path, quick: bool = False, say=print) -> dict:
    """Execute each notebook and write its HTML copy into `out` (plus `plotly.min.js`, `notebook.css` and
    `runs.json`: the mode, seconds and load average of each). Returns the `runs.json` content."""
    import nbformat

    from workbench.bench.measure import load_average

    out = Path(out)
    write_plotlyjs(out)
    runs_file = out / "runs.json"
    runs = json.loads(runs_file.read_text()) if runs_file.exists() else {}
    for path in map(Path, paths):
        load = load_average()
        say(f"{path.name}: executing ({'quick' if quick else 'full'} mode) ...")
        nb, seconds = execute(path, quick=quick)
        source = nbformat.read(path, as_version=4)
        html = to_html(nb, out / f"{path.stem}.html", sources_digest(source), _run_note(path, quick, seconds, load))
        size = html.stat().st_size / 1e6
        say(f"{path.name}: {seconds:.0f} s -> {html} ({size:.2f} MB)")
        runs[path.stem] = {"mode": "quick" if quick else "full", "seconds": round(seconds, 1), "load_before": load}
        runs_file.write_text(json.dumps(runs, indent=1) + "\n")
    return runs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m workbench.notebook", description="Executed HTML copies of notebooks, figures inline."
    )
    parser.add_argument("notebooks", nargs="+", help="notebook files (.ipynb)")
    parser.add_argument("--out", default="docs/notebooks", help="folder of the HTML copies (default docs/notebooks)")
    parser.add_argument("--quick", action="store_true", help="run in quick mode (WORKBENCH_NOTEBOOK_QUICK=1)")
    args = parser.parse_args(argv)
    export_html(args.notebooks, args.out, quick=args.quick)


if __name__ == "__main__":
    main()
