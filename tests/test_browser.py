"""The app in a real browser: Playwright driving Debian's Chromium (/usr/bin/chromium) against the app
on the shipped checkpoints. Asks a question, sees both answers, the attention maps and the speed plot;
screenshots go to test-artifacts/. Without Chromium this test fails (it does not skip): `make test`
installs it when run as root (`apt-get install chromium`)."""

import socket
from pathlib import Path

import pytest

import app as app_module
from workbench.api import ASSETS
from workbench.data.samples import load_samples
from workbench.data.shapes import VQA_ANSWERS

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="module")
def url():
    pairs = app_module.load_pairs(app_module.shipped_pairs())
    demo = app_module.build_app(pairs, load_samples(ASSETS / "samples"))
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
