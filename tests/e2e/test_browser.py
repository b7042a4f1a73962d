"""The app in a real browser: Playwright driving Debian's Chromium (/usr/bin/chromium) at 1400 x 1000 against the
app on the shipped checkpoints. Asks a question, sees both answers, the attention maps and the speed plot; switches
the pair and asks again; recovers from an error; shows a plot drawn while its tab was hidden at its tab's width;
warns about a question the models cannot read and a 1 x 1 image; searches the Retrieval tab's gallery (with tiny
random retrieval models while none is shipped). Each test writes a screenshot of its tab after its main action to
test-artifacts/. Without Chromium this test fails (it does not skip): `make test` installs it when run as root
(`apt-get install chromium`)."""

import re
import socket
from pathlib import Path

import pytest
from PIL import Image

import workbench.app as app_module
from workbench.data.easy_vqa import EasyVQADataset
from workbench.data.samples import load_samples
from workbench.data.shapes import ITM_LABELS, NLVR_LABELS, VQA_ANSWERS
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
VQA_PAIR, EASY_PAIR, NLVR_PAIR = "shapes VQA", "easy-VQA", "shapes NLVR (two images)"


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(demo, attempts: int = 5) -> int:
    """Serve `demo` on a free port (Gradio refuses port 0): a port the OS just gave out, again with another if
    something took it between the probe and the launch."""
    for attempt in range(attempts):
        port = _free_port()
        try:
            app_module.serve(demo, port=port, prevent_thread_lock=True, quiet=True)
            return port
        except OSError:  # the port was taken in between
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def url(tmp_path_factory, tokenizer):
    pairs = app_module.load_pairs(app_module.shipped_pairs())
    retrieval = _retrieval_models(tmp_path_factory.mktemp("retrieval"), tokenizer)
    demo = app_module.build_app(pairs, load_samples(app_module.assets_dir() / "samples"), retrieval=retrieval)
    port = launch(demo)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium) to run this test")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, url):
    """A fresh page (a session of its own) on the app, at 1400 x 1000."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(30_000)
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(url)
    page.locator("#ask").wait_for()
    yield page
    assert not page.errors, page.errors
    page.close()


def _answer(text: str) -> str:
    return text.split("·")[0].strip()


def _ask(page, question: str | None = None) -> None:
    """Type `question` (if given), click Ask and wait for both answers."""
    from playwright.sync_api import expect

    if question is not None:
        page.locator("#question textarea").fill(question)
    page.locator("#ask").click()
    for role in ("teacher", "student"):  # the first query loads the pair: seconds on a loaded machine, not 5
        expect(page.locator(f"#{role}-answer")).to_contain_text(" ms", timeout=30_000)


def _choose_pair(page, name: str) -> None:
    page.locator("#pair input").click()
    page.get_by_role("option", name=name, exact=True).click()


def _no_error_badges(page) -> None:
    """No Gradio error status on any component (it would cover the control) and no error pop-up."""
    from playwright.sync_api import expect

    expect(page.locator(".toast-body")).to_have_count(0)
    expect(page.get_by_text("Error", exact=True)).to_have_count(0)


def test_ask_then_attention_then_speed(page):
    from playwright.sync_api import expect

    _ask(page, "how many circles are there?")
    for role in ("teacher", "student"):
        assert _answer(page.locator(f"#{role}-answer").inner_text()) in VQA_ANSWERS
        expect(page.locator(f"#{role}-top .js-plotly-plot")).to_be_visible()
    expect(page.locator("#ask-download")).to_contain_text(".json")
    page.screenshot(path=ARTIFACTS / "app-ask.png", full_page=True)

    page.get_by_role("tab", name="Attention").click()  # selecting the tab explains the current input
    plot = page.locator("#attention-plot .js-plotly-plot")
    expect(plot).to_be_visible()
    expect(plot).to_contain_text("teacher · real cross-attention")
    expect(plot).to_contain_text("student · virtual cross-attention")
    expect(plot.locator(".hm")).to_have_count(2)  # one heatmap per model
    expect(page.locator("#attention-info")).to_contain_text("Teacher vs student map")
    expect(page.locator("#attention-download")).to_contain_text(".npz")
    expect(page.locator("#attention-download")).to_contain_text(".json")
    page.screenshot(path=ARTIFACTS / "app-attention.png", full_page=True)

    page.get_by_role("tab", name="Speed").click()
    page.locator("#settings").get_by_text("quick").click()
    page.locator("#run-speed").click()
    expect(page.locator("#speed-plot .js-plotly-plot")).to_be_visible(timeout=90_000)
    expect(page.locator("#speed-table")).to_contain_text("image features cached")
    expect(page.locator("#speed-download")).to_contain_text(".csv")
    page.screenshot(path=ARTIFACTS / "app-speed.png", full_page=True)


def test_pair_switch_resets_the_input_then_ask(page):
    from playwright.sync_api import expect

    easy_labels = EasyVQADataset("test", 1).labels
    _choose_pair(page, EASY_PAIR)
    expect(page.locator("#source-info")).to_contain_text("easy-vqa-")  # the pair's own first sample and caption
    expect(page.locator("#image img")).to_have_attribute("src", re.compile(r"easy-vqa-\d+\.png"))
    expect(page.locator("#teacher-answer")).to_have_text("")  # the previous pair's answers are gone
    examples = page.locator("#examples button")
    expect(examples.first).to_contain_text(page.locator("#question textarea").input_value())
    _ask(page)
    for role in ("teacher", "student"):
        assert _answer(page.locator(f"#{role}-answer").inner_text()) in easy_labels
    page.screenshot(path=ARTIFACTS / "app-pair-easy-vqa.png", full_page=True)

    _choose_pair(page, NLVR_PAIR)  # two images: both reset to the pair's own samples
    expect(page.locator("#image img")).to_have_attribute("src", re.compile(r"shapes-0\.png"))
    expect(page.locator("#image2 img")).to_have_attribute("src", re.compile(r"shapes-1\.png"))
    _ask(page)
    for role in ("teacher", "student"):
        assert _answer(page.locator(f"#{role}-answer").inner_text()) in NLVR_LABELS
    expect(page.locator("#message")).to_have_text("")
    page.screenshot(path=ARTIFACTS / "app-pair-nlvr.png", full_page=True)

    page.get_by_role("tab", name="Attention").click()  # NLVR maps: one plot per image
    for plot in ("#attention-plot", "#attention-plot-right"):
        expect(page.locator(f"{plot} .js-plotly-plot .hm")).to_have_count(2)
    expect(page.locator("#attention-info")).to_contain_text("(right image)")
    _no_error_badges(page)
    page.screenshot(path=ARTIFACTS / "app-pair-nlvr-attention.png", full_page=True)


def test_an_error_then_a_good_query(page):
    from playwright.sync_api import expect

    _ask(page, "how many circles are there?")
    page.locator("#question textarea").fill("")
    page.locator("#ask").click()
    expect(page.locator("#message")).to_contain_text("the question is empty")
    expect(page.locator("#teacher-answer")).to_have_text("")  # no stale answer beside the error
    expect(page.locator("#teacher-top .js-plotly-plot")).to_have_count(0)
    page.get_by_role("tab", name="Attention").click()  # explains the (empty) input: the same message, once
    expect(page.locator("#message")).to_contain_text("the question is empty")
    expect(page.locator("#attention-plot .js-plotly-plot")).to_have_count(0)
    for control in ("#layer", "#head", "#word"):
        expect(page.locator(control)).to_be_visible()
    _no_error_badges(page)  # nothing covers the layer, head and word controls
    page.screenshot(path=ARTIFACTS / "app-error.png", full_page=True)

    page.get_by_role("tab", name="Ask").click()
    _ask(page, "is there a red circle?")
    expect(page.locator("#message")).to_have_text("")
    assert _answer(page.locator("#teacher-answer").inner_text()) in VQA_ANSWERS
    page.get_by_role("tab", name="Attention").click()
    expect(page.locator("#attention-plot .js-plotly-plot .hm")).to_have_count(2)
    expect(page.locator("#message")).to_have_text("")
    page.screenshot(path=ARTIFACTS / "app-error-then-good.png", full_page=True)


def _fits(page, selector: str) -> tuple[float, float]:
    """(the rendered plot's width, its container's width)."""
    box = page.locator(f"{selector} .js-plotly-plot .main-svg").first.bounding_box()
    container = page.locator(selector).bounding_box()
    return box["width"], container["width"]


def test_a_plot_drawn_in_a_hidden_tab_fits_when_shown(page):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Errors").click()
    page.locator("#open-index input").fill("5")
    page.locator("#open-target").get_by_text("Attention").click()
    page.locator("#open-example").click()  # opens test example 5 in Attention; Ask's plots are drawn hidden
    expect(page.locator("#attention-plot .js-plotly-plot .hm")).to_have_count(2, timeout=60_000)
    expect(page.locator("#source-info")).to_contain_text("test example #5")
    page.get_by_role("tab", name="Ask").click()
    plot = page.locator("#teacher-top .js-plotly-plot")
    expect(plot).to_be_visible()
    page.wait_for_timeout(600)  # the resize on tab select: 50 and 300 ms after the click
    for selector in ("#teacher-top", "#student-top"):
        width, container = _fits(page, selector)
        assert width <= container + 1, (selector, width, container)
        assert width > 0.8 * container - 40, (selector, width, container)  # it fills the box, not a sliver
    question = page.locator("#question textarea").input_value()
    expect(page.locator("#examples button").first).to_contain_text(question)  # the example's own questions
    page.screenshot(path=ARTIFACTS / "app-hidden-plot-shown.png", full_page=True)


def test_the_unknown_word_and_tiny_image_warnings(page, tmp_path):
    from playwright.sync_api import expect

    _ask(page, "qwerty zxcv?")
    notes = page.locator("#ask-notes")
    expect(notes).to_contain_text("Words never seen in training: qwerty, zxcv")
    expect(notes).to_contain_text("Most of this question is new to the model")
    assert _answer(page.locator("#teacher-answer").inner_text()) in VQA_ANSWERS  # it still answers
    page.screenshot(path=ARTIFACTS / "app-unknown-words.png", full_page=True)
    _ask(page, "🟥🟦🔺")
    expect(notes).to_contain_text("every token of it is [UNK]")
    page.get_by_role("tab", name="Attention").click()  # the same notes beside the maps
    expect(page.locator("#attention-notes")).to_contain_text("every token of it is [UNK]")
    page.screenshot(path=ARTIFACTS / "app-unknown-words-attention.png", full_page=True)

    page.get_by_role("tab", name="Ask").click()
    one = tmp_path / "one-pixel.png"
    Image.new("RGB", (1, 1), (200, 30, 30)).save(one)
    page.locator("#image input[type=file]").set_input_files(str(one))
    expect(page.locator("#source-info")).to_have_text("image: your upload")  # not the sample's caption any more
    expect(page.locator("#teacher-answer")).to_have_text("")  # nor the answer about the previous image
    _ask(page, "how many circles are there?")
    expect(notes).to_contain_text("The image is 1×1 pixels, smaller than the model's 4×4 patch grid")
    page.screenshot(path=ARTIFACTS / "app-one-pixel.png", full_page=True)


def test_retrieval_tab_searches_the_gallery(page):
    from playwright.sync_api import expect

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


def test_the_glossary_is_there_before_anything_runs(page):
    from playwright.sync_api import expect

    glossary = page.locator("#glossary-text")
    for term in ("KL", "Spearman ρ", "Virtual cross-attention", "Relevancy", "P(match)", "dide", "hard"):
        expect(glossary).to_contain_text(term)
