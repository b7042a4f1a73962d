"""The teaching notebooks as a course: every notebook runs top to bottom in quick mode (nbclient, a kernel started
in notebooks/, offline, on the shipped checkpoints), solution and try-it cells included, and its executed HTML copy
draws its figures in Chromium; each has the frame (goals, prerequisites, measured runtime, papers, summary,
previous/next links), two or more exercises with hidden solutions and one try-it-yourself cell; the demos show what
their text says; and `make lab`'s JupyterLab runs the first cell of every notebook with the project's kernel."""

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import nbformat
import numpy as np
import pytest

from workbench.notebook import PLOTLY_MIME, SOLUTION_TAG, TRY_TAG, execute, to_html, write_plotlyjs

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
NAMES = [p.stem for p in NOTEBOOKS]
# every paper a notebook or the glossary links, each id checked against its arXiv listing when it was added
VERIFIED_ARXIV = {
    "2112.08723": "DiDE (Wang et al. 2021)",
    "2204.10496": "MAD (Wang et al. 2022)",
    "2310.19654": "MCAD (Lei et al. 2023)",
    "2103.15679": "Chefer, Gur & Wolf 2021",
    "2005.00928": "Abnar & Zuidema 2020",
    "1703.01365": "Sundararajan, Taly & Yan 2017",
    "2102.03334": "ViLT (Kim, Son & Kim 2021)",
    "1503.02531": "Hinton, Vinyals & Dean 2015",
    "2111.06377": "MAE (He et al. 2021)",
    "2103.00020": "CLIP (Radford et al. 2021)",
}
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def _markdown_links(text: str) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_there_are_the_seven_notebooks_of_the_course():
    assert [n[:2] for n in NAMES] == ["01", "02", "03", "04", "05", "06", "07"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_the_course_frame(path):
    nb = _read(path)
    head, tail = nb.cells[0], nb.cells[-1]
    assert head.cell_type == "markdown" and tail.cell_type == "markdown"
    for part in ("**Learning goals.**", "**Prerequisites.**", "**Runtime**", "**Papers.**"):
        assert part in head.source, f"{path.name}: the first cell has no {part}"
    # a measured runtime: quick and full mode, in seconds, with the machine it was measured on
    runtime = head.source.split("**Runtime**", 1)[1].split("\n\n", 1)[0]
    assert re.search(r"quick mode \d+ s", runtime) and re.search(r"full mode \d+ s", runtime), runtime
    assert "arxiv.org/abs/" in head.source.split("**Papers.**", 1)[1]
    assert tail.source.startswith("## Summary")
    # previous / next: the neighbours in the course order, in the first and the last cell
    i = NAMES.index(path.stem)
    for cell in (head, tail):
        links = _markdown_links(cell.source)
        assert "../docs/glossary.md" in links and "../docs/notebooks.md" in links
        if i > 0:
            assert f"{NAMES[i - 1]}.ipynb" in links
        if i < len(NAMES) - 1:
            assert f"{NAMES[i + 1]}.ipynb" in links
    # the first code cell finds the project and sets the one QUICK flag
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert "QUICK = quick_mode()" in first_code.source
    assert not any("WORKBENCH_NOTEBOOK_" in c.source for c in nb.cells[1:] if c is not first_code)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "outputs must be stripped in git"
    # every Markdown file a notebook names is one the repository holds (nothing points outside it)
    named = {m for c in nb.cells for m in re.findall(r"[\w./-]+\.md\b", c.source)}
    assert all((path.parent / m).exists() or (ROOT / m).exists() or (ROOT / "docs" / Path(m).name).exists()
               for m in named), named  # fmt: skip


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_exercises_with_hidden_solutions_and_one_try_it_cell(path):
    cells = _read(path).cells
    starts = [k for k, c in enumerate(cells) if c.cell_type == "markdown" and c.source.startswith("### Exercise")]
    assert len(starts) >= 2, f"{path.name}: {len(starts)} exercise(s)"
    for k in starts:  # the cells up to the next heading hold the exercise's solution, hidden
        block = []
        for c in cells[k + 1 :]:
            if c.cell_type == "markdown" and c.source.startswith("#"):
                break
            block.append(c)
        code = [c for c in block if c.cell_type == "code"]
        text = [c for c in block if c.cell_type == "markdown" and "<details><summary><b>Solution" in c.source]
        assert code or text, f"{path.name}: {cells[k].source.splitlines()[0]!r} has no solution"
        for c in code:
            assert SOLUTION_TAG in c.metadata.get("tags", []), f"{path.name}: an untagged cell in an exercise"
            assert c.metadata.get("jupyter", {}).get("source_hidden") is True, f"{path.name}: a solution is shown"
        for c in text:
            assert c.source.rstrip().endswith("</details>")
    assert any(SOLUTION_TAG in c.metadata.get("tags", []) for c in cells), f"{path.name}: no solution code cell"
    tries = [k for k, c in enumerate(cells) if TRY_TAG in c.metadata.get("tags", [])]
    assert len(tries) == 1, f"{path.name}: {len(tries)} try-it cells"
    assert cells[tries[0] - 1].source.startswith("### Try it yourself")


def test_every_relative_link_of_the_notebooks_and_the_course_pages_resolves():
    pages = [(p, "\n".join(c.source for c in _read(p).cells if c.cell_type == "markdown")) for p in NOTEBOOKS]
    pages += [(p, p.read_text()) for p in (ROOT / "docs" / "glossary.md", ROOT / "docs" / "notebooks.md")]
    broken = []
    for page, text in pages:
        for link in _markdown_links(text):
            if "://" in link or link.startswith(("#", "mailto:")):
                continue
            if not (page.parent / link.split("#", 1)[0]).exists():
                broken.append(f"{page.name}: {link}")
    assert not broken


def test_every_paper_linked_is_a_verified_arxiv_id():
    texts = [c.source for p in NOTEBOOKS for c in _read(p).cells] + [(ROOT / "docs" / "glossary.md").read_text()]
    linked = {m for t in texts for m in re.findall(r"arxiv\.org/abs/(\d{4}\.\d{4,5})", t)}
    assert linked - set(VERIFIED_ARXIV) == set()
    for paper in ("2112.08723", "2204.10496", "2310.19654", "2103.15679", "2005.00928", "1703.01365"):
        assert paper in linked, f"{VERIFIED_ARXIV[paper]} is linked from no notebook"


def test_the_glossary_explains_every_registered_recipe():
    from workbench.methods import method_names

    glossary = (ROOT / "docs" / "glossary.md").read_text()
    missing = [name for name in method_names() if f"`{name}`" not in glossary]
    assert not missing
    for term in ("t2i", "Virtual cross-attention", "Rollout vs relevancy", "IG baseline", "Deletion AUC", "R@K"):
        assert term in glossary
    assert "Median rank" in glossary and "`low1`" in glossary


# ----------------------------------------------------------------------------------------------
# running them


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium) to run this test")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def rendered_figures(browser, html: Path) -> tuple[list[int], list[str]]:
    """(the number of plotly SVG layers drawn in each figure div, page errors) of an HTML file in Chromium."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(html.as_uri())
    page.wait_for_load_state("load")
    counts = page.evaluate(
        "() => Array.from(document.querySelectorAll('.plotly-graph-div'))"
        ".map(d => d.querySelectorAll('.main-svg').length)"
    )
    page.close()
    return counts, errors


# JupyterLab's light theme: a code cell's input area is --jp-cell-editor-background = --md-grey-100 = #f5f5f5;
# without the template's CSS the browser's default is a transparent background
CODE_INPUT_GREY = "rgb(245, 245, 245)"


def code_input_background(browser, html: Path) -> str:
    """The computed background colour of the first code cell's input area of an HTML file in Chromium."""
    page = browser.new_page()
    page.goto(html.as_uri())
    page.wait_for_load_state("load")
    colour = page.evaluate("() => getComputedStyle(document.querySelector('.jp-InputArea-editor')).backgroundColor")
    page.close()
    return colour


def inline_css(html_text: str) -> int:
    """Characters of CSS inside the `<style>` blocks of a page."""
    return sum(len(css) for css in re.findall(r"<style[^>]*>(.*?)</style>", html_text, re.S))


def test_html_copies_link_the_template_css_written_once_beside_them(tmp_path, browser):
    """Two pages in one folder share one notebook.css (the lab template's CSS, about 260 kB) instead of each
    inlining it; the page's code cells get their grey input from that file, and lose it when it is missing."""
    import plotly.graph_objects as go

    from workbench.notebook import NOTEBOOK_CSS

    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("print(1 + 1)", execution_count=1)
    figure = go.Figure(go.Bar(x=["a", "b"], y=[1, 2])).to_plotly_json()
    code.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="2\n"),
        nbformat.v4.new_output("display_data", data={PLOTLY_MIME: json.loads(json.dumps(figure, default=list))}),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell("# A page"), code]
    folder = tmp_path / "html"
    write_plotlyjs(folder)
    pages = [to_html(nb, folder / f"{name}.html", "test") for name in ("one", "two")]
    css = folder / NOTEBOOK_CSS
    assert sorted(p.name for p in folder.iterdir()) == ["notebook.css", "one.html", "plotly.min.js", "two.html"]
    assert len(css.read_text()) > 200_000
    assert ".jp-InputArea-editor" in css.read_text() and ".highlight" in css.read_text()  # lab + pygments rules
    for page in pages:
        text = page.read_text()
        assert '<link href="notebook.css" rel="stylesheet"/>' in text
        assert ".jp-InputArea-editor" not in text and "--jp-cell-editor-background" not in text
        assert inline_css(text) < 2_000, inline_css(text)  # only mermaid's few rules stay inline
        assert len(text) < 100_000, len(text)
    assert code_input_background(browser, pages[0]) == CODE_INPUT_GREY
    counts, errors = rendered_figures(browser, pages[0])
    assert not errors and counts == [3], counts
    css.unlink()
    assert code_input_background(browser, pages[1]) == "rgba(0, 0, 0, 0)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_in_quick_mode_with_its_solutions_and_its_html_copy_draws_its_figures(
    path, monkeypatch, tmp_path, browser
):
    # the kernel inherits the environment: run folders (tempfile.mkdtemp) land in pytest's tmp_path, and one
    # thread per kernel keeps a shared machine from thrashing
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb, seconds = execute(path, quick=True, timeout=600)  # raises CellExecutionError if any cell fails
    print(f"{path.name}: {seconds:.1f} s in quick mode")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "every cell ran, solutions and try-it included"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    first = "".join(o.get("text", "") for o in code[0].outputs if o.output_type == "stream")
    assert "quick mode: True" in first
    figures = sum(PLOTLY_MIME in o.get("data", {}) for c in code for o in c.outputs)
    assert figures >= 1
    write_plotlyjs(tmp_path / "html")
    html = to_html(nb, tmp_path / "html" / f"{path.stem}.html", "test")
    counts, errors = rendered_figures(browser, html)
    assert not errors
    assert len(counts) == figures and all(n >= 1 for n in counts), counts


def test_attention_demo_is_a_question_that_needs_the_image_and_relevancy_beats_random_deletion():
    """03's example (chosen by whether blanking the image changes the answer, not by any map) is one where the
    teacher's relevancy map deletes the evidence faster than random orders; its caveat example is flat."""
    from workbench import explain as ex
    from workbench.api import ASSETS
    from workbench.data import load_dataset
    from workbench.models.io import load_checkpoint
    from workbench.notebook import blank_image_probability, find_example

    ck = load_checkpoint(ASSETS / "shapes-vqa-teacher")
    teacher, tokenizer = ck.model.eval(), ck.tokenizer
    val = load_dataset("shapes-vqa", "val", 64)
    example = val[find_example(teacher, tokenizer, val, "what colour", depends_on_image=True)]
    batch = ex.encode(teacher, tokenizer, example.images[0], example.text)
    p = blank_image_probability(teacher, batch)
    assert p["intact"] > 0.9 and p["blank"] < 0.5
    relevancy = ex.image_maps(teacher, batch, "relevancy")[0]
    curve = ex.deletion_curve(teacher, batch, relevancy, random_orders=5)
    assert curve["auc"] < curve["random_auc"] - 0.2, (curve["auc"], curve["random_auc"])

    flat = val[find_example(teacher, tokenizer, val, "what size", depends_on_image=False, threshold=0.9)]
    flat_batch = ex.encode(teacher, tokenizer, flat.images[0], flat.text)
    flat_curve = ex.deletion_curve(
        teacher, flat_batch, ex.image_maps(teacher, flat_batch, "relevancy")[0], random_orders=5
    )
    assert min(flat_curve["scores"]) > 0.8 and flat_curve["random_auc"] > 0.9  # nothing to rank: flat at the top


def test_blank_image_probability_is_the_ends_of_a_deletion_curve(tokenizer):
    """Independent check of the helper: the intact and all-blank probabilities, computed by hand."""
    import torch

    from workbench import explain as ex
    from workbench.data import load_dataset
    from workbench.explain.inputs import baseline_image
    from workbench.models import create_model
    from workbench.notebook import blank_image_probability

    torch.manual_seed(0)
    model = create_model("fusion", len(tokenizer), 5, hidden_size=32, num_layers=2, num_heads=2).eval()
    e = load_dataset("shapes-vqa", "val", 1)[0]
    batch = ex.encode(model, tokenizer, e.images[0], e.text)
    with torch.no_grad():
        intact = model(batch.input_ids, batch.attention_mask, batch.pixel_values).logits.softmax(-1)[0]
        pixels = batch.pixel_values.clone()
        pixels[:, 0] = baseline_image(pixels[0, 0], "mean")
        blank = model(batch.input_ids, batch.attention_mask, pixels).logits.softmax(-1)[0]
    p = blank_image_probability(model, batch)
    answer = int(intact.argmax())
    assert p["answer"] == answer
    assert np.isclose(p["intact"], float(intact[answer]), atol=1e-5)
    assert np.isclose(p["blank"], float(blank[answer]), atol=1e-5)


# ----------------------------------------------------------------------------------------------
# make lab


def _execute_over_websocket(port: int, token: str, kernel: str, code: str, timeout: float = 120) -> tuple[str, str]:
    """(status, stdout) of `code` run by a kernel of a Jupyter server, through its websocket (the JSON protocol)."""
    import websocket

    ws = websocket.create_connection(
        f"ws://127.0.0.1:{port}/api/kernels/{kernel}/channels?token={token}", timeout=timeout
    )
    msg_id = uuid.uuid4().hex
    header = dict(msg_id=msg_id, username="test", session=uuid.uuid4().hex, msg_type="execute_request", version="5.3")
    content = dict(code=code, silent=False, store_history=False, user_expressions={}, allow_stdin=False)
    ws.send(json.dumps(dict(header=header, parent_header={}, metadata={}, content=content, channel="shell")))
    out, status, deadline = [], None, time.time() + timeout
    while status is None and time.time() < deadline:
        msg = json.loads(ws.recv())
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))
        elif msg["msg_type"] == "execute_reply":
            status = msg["content"]["status"]
    ws.close()
    return status or "timeout", "".join(out)


def test_make_lab_runs_the_first_cell_of_every_notebook_with_the_project_kernel(tmp_path):
    """`make lab`'s command (JupyterLab from the venv, rooted at notebooks/): a session per notebook gets the
    default kernel, started in notebooks/, and the notebook's first cell runs there with the venv's Python."""
    import requests

    make = (ROOT / "Makefile").read_text()
    assert "$(BIN)/jupyter lab notebooks/ --no-browser --port $(LAB_PORT)" in make
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_NOTEBOOK_")}
    env.update(JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), OMP_NUM_THREADS="1")
    cmd = [str(Path(sys.executable).parent / "jupyter"), "lab", "notebooks/", "--no-browser", "--port", str(port)]
    cmd += [f"--IdentityProvider.token={token}", "--ServerApp.port_retries=0"]
    cmd += ["--allow-root"] if os.getuid() == 0 else []
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api = f"http://127.0.0.1:{port}/api"
    auth = {"Authorization": f"token {token}"}
    try:
        for _ in range(120):
            try:
                if requests.get(f"{api}/status", headers=auth, timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        specs = requests.get(f"{api}/kernelspecs", headers=auth, timeout=10).json()
        assert specs["default"] == "python3"
        for path in NOTEBOOKS:
            nb = _read(path)
            assert nb.metadata["kernelspec"]["name"] == specs["default"]
            session = dict(path=path.name, type="notebook", name=path.name, kernel={"name": "python3"})
            kernel = requests.post(f"{api}/sessions", json=session, headers=auth, timeout=60).json()["kernel"]["id"]
            first = next(c for c in nb.cells if c.cell_type == "code").source
            check = "\nimport os, workbench\nprint('cwd:', os.getcwd())\nprint('workbench:', workbench.__file__)"
            status, out = _execute_over_websocket(port, token, kernel, first + check)
            requests.delete(f"{api}/kernels/{kernel}", headers=auth, timeout=30)
            assert status == "ok", f"{path.name}: {out}"
            assert f"kernel: {Path(sys.executable).parent}" in out or f"kernel: {sys.executable}" in out, out
            assert "quick mode: False" in out
            assert f"cwd: {ROOT / 'notebooks'}" in out
            assert f"workbench: {ROOT / 'workbench'}" in out
    finally:
        server.terminate()
        server.wait(timeout=30)


# ----------------------------------------------------------------------------------------------
# the executed HTML copies in docs/notebooks/ (make notebooks-html), as a reader browses them

HTML = ROOT / "docs" / "notebooks"
STALE = "stale or missing: run `make notebooks-html` (it re-executes the notebooks in full mode, about 10 minutes)"


def test_there_is_one_html_copy_per_notebook_and_plotly_js_beside_them():
    from workbench.notebook import PLOTLY_JS

    assert sorted(p.stem for p in HTML.glob("*.html")) == NAMES, STALE
    js = (HTML / PLOTLY_JS).read_text()
    assert "plotly.js" in js[:2000].lower() and len(js) > 1_000_000
    css = (HTML / "notebook.css").read_text()  # the lab template's CSS, shared by the copies
    assert ".jp-InputArea-editor" in css and len(css) > 200_000, STALE


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_html_copy_is_of_the_current_notebook_in_full_mode_small_and_draws_every_figure(path, browser):
    from workbench.notebook import sources_digest

    html = HTML / f"{path.stem}.html"
    assert html.exists(), STALE
    text = html.read_text()
    digest = re.search(r'<meta content="([0-9a-f]+)" name="workbench-notebook-sources"', text)
    assert digest and digest.group(1) == sources_digest(_read(path)), STALE
    assert json.loads((HTML / "runs.json").read_text())[path.stem]["mode"] == "full"
    assert re.search(r"in full mode in \d+ s", text)  # the run note at the top says how it was made
    assert html.stat().st_size < 5_000_000
    expected = text.count('class="plotly-graph-div"')
    counts, errors = rendered_figures(browser, html)
    assert not errors
    assert expected >= 1 and len(counts) == expected
    assert all(n >= 1 for n in counts), counts  # each figure div holds the SVG plotly drew
    # the template's CSS is linked (notebook.css beside the copy), not inlined again
    assert '<link href="notebook.css" rel="stylesheet"/>' in text, STALE
    assert inline_css(text) < 2_000 and "--jp-cell-editor-background" not in text, STALE
    assert code_input_background(browser, html) == CODE_INPUT_GREY
    # links point to the other copies and to the docs, from where the copy is
    links = re.findall(r'href="([^"#:]+)(?:#[^"]*)?"', text)
    assert all((html.parent / link).exists() for link in links), links
