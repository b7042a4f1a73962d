"""The app in a real browser: Playwright driving Debian's Chromium (/usr/bin/chromium) against the app
on the shipped checkpoints. Asks a question, sees both answers, the attention maps and the speed plot,
then searches the Retrieval tab's gallery (with tiny random retrieval models while none is shipped);
screenshots go to test-artifacts/. Without Chromium this test fails (it does not skip): `make test`
installs it when run as root (`apt-get install chromium`)."""

import socket
from pathlib import Path

import pytest

import workbench.app as app_module
from workbench.data.samples import load_samples
from workbench.data.shapes import ITM_LABELS, VQA_ANSWERS
from workbench.models import create_model
from workbench.models.io import save_checkpoint

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _retrieval_models(root: Path, tokenizer) -> "app_module.RetrievalModels":
    """The shipped retrieval models; while none is shipped, a tiny random dual student and matching teacher."""
    shipped = app_module.load_retrieval()
    if shipped.student is not None:
        return shipped
    size = dict(hidden_size=32, num_layers=2, num_heads=2)
    student = create_model("dual", len(tokenizer), 0, **size)
    save_checkpoint(student, tokenizer, root / "student", {"task": "retrieval", "labels": []})
    fusion = create_model("fusion", len(tokenizer), len(ITM_LABELS), **size)
    save_checkpoint(fusion, tokenizer, root / "fusion", {"task": "itm", "labels": list(ITM_LABELS)})
    return app_module.load_retrieval(root / "student", root / "fusion")


@pytest.fixture(scope="module")
def url(tmp_path_factory, tokenizer):
    pairs = app_module.load_pairs(app_module.shipped_pairs())
    retrieval = _retrieval_models(tmp_path_factory.mktemp("retrieval"), tokenizer)
    demo = app_module.build_app(pairs, load_samples(app_module.assets_dir() / "samples"), retrieval=retrieval)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app_module.serve(demo, port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def page(url):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium) to run this test")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        page.errors = []
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.goto(url)
        yield page
        browser.close()


def _answer(text: str) -> str:
    return text.split("·")[0].strip()


def test_ask_then_attention_then_speed(page):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#question textarea").fill("how many circles are there?")
    page.locator("#ask").click()
    for role in ("teacher", "student"):
        expect(page.locator(f"#{role}-answer")).to_contain_text(" ms")
        assert _answer(page.locator(f"#{role}-answer").inner_text()) in VQA_ANSWERS
        expect(page.locator(f"#{role}-top .js-plotly-plot")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "app-ask.png", full_page=True)

    page.get_by_role("tab", name="Attention").click()  # selecting the tab explains the current input
    plot = page.locator("#attention-plot .js-plotly-plot")
    expect(plot).to_be_visible()
    expect(plot).to_contain_text("teacher · real cross-attention")
    expect(plot).to_contain_text("student · virtual cross-attention")
    expect(plot.locator(".hm")).to_have_count(2)  # one heatmap per model
    expect(page.locator("#attention-info")).to_contain_text("Teacher vs student map")
    page.screenshot(path=ARTIFACTS / "app-attention.png", full_page=True)

    page.get_by_role("tab", name="Speed").click()
    page.locator("#settings").get_by_text("quick").click()
    page.locator("#run-speed").click()
    expect(page.locator("#speed-plot .js-plotly-plot")).to_be_visible(timeout=90_000)
    expect(page.locator("#speed-table")).to_contain_text("image features cached")
    page.screenshot(path=ARTIFACTS / "app-speed.png", full_page=True)
    assert not page.errors, page.errors


def test_retrieval_tab_searches_the_gallery(page):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page.get_by_role("tab", name="Retrieval").click()
    expect(page.locator("#retrieval-models")).to_contain_text("shapes test scenes")
    page.locator("#retrieval-query textarea").fill("a large red circle at top left.")
    page.locator("#retrieval-rerank input").check()  # the fusion teacher re-ranks the top k
    page.locator("#retrieve").click()  # the first query builds the index
    expect(page.locator("#retrieval-info")).to_contain_text("This query", timeout=60_000)
    expect(page.locator("#retrieval-info")).to_contain_text("fusion re-rank of the top 8")
    expect(page.locator("#retrieval-gallery img")).to_have_count(8)
    expect(page.locator("#retrieval-gallery")).to_contain_text("#1 · P(match)")
    expect(page.locator("#retrieval-timings .js-plotly-plot")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "app-retrieval.png", full_page=True)
    assert not page.errors, page.errors
