"""`build_app`: the page. A header, the task / model pair selector, the page's one message area (every tab's
errors), a short glossary, then the five tabs in order (Ask, Attention, Speed, Errors, Retrieval), each built by
its module; choosing another pair resets what every tab shows of the previous one (public endpoint /set_pair).
Selecting a tab redraws its plots to the tab's width (Plotly sizes a plot drawn in a hidden tab as 700 px wide)."""

from __future__ import annotations

import gradio as gr

from workbench.app import ask, attention, errors, speed
from workbench.app import retrieval as retrieval_tab
from workbench.app.glossary import glossary_markdown
from workbench.app.loading import RETRIEVAL_GALLERY, Pair, RetrievalModels, assets_dir, load_retrieval
from workbench.app.state import AppState, RetrievalState
from workbench.app.ui import PRIVATE, shown, user_errors
from workbench.errors import WorkbenchError

TITLE = "VL distillation workbench"
INTRO = (
    "# VL distillation workbench\n"
    "A slow **fusion teacher** (image patches and words in one transformer) beside the fast "
    "**dual-encoder student** distilled from it (separate towers, image features cacheable)."
)
# after a tab is shown, a window resize makes every Plotly plot in it take its container's width (Plotly's own
# resize handler skips hidden plots, so one drawn while its tab was hidden keeps the 700 px default)
RESIZE_PLOTS_JS = "() => { for (const ms of [50, 300]) setTimeout(() => dispatchEvent(new Event('resize')), ms); }"


def _wire_pair_change(state: AppState, tabs: tuple) -> None:
    """Choosing another pair resets the Ask, Attention and Errors tabs (Speed reads the pair when run;
    Retrieval does not depend on it) and clears the message area."""
    ask_tab, attention_tab, errors_tab = tabs

    @user_errors
    def set_pair(pair_name: str, question: str = ""):
        """Everything that depends on the chosen pair, reset; the question becomes one of the pair's
        examples unless the user typed their own."""
        teacher, student = state.pair(pair_name)
        return (
            *ask_tab.reset(teacher, student, question),
            *attention_tab.reset(pair_name),
            *errors_tab.reset(teacher),
        )

    outputs = [*ask_tab.reset_outputs, *attention_tab.reset_outputs, *errors_tab.reset_outputs]
    inputs = [ask_tab.pair, ask_tab.question]
    ask_tab.api.click(set_pair, inputs, outputs, api_name="set_pair")  # for API clients: errors raised
    page = shown(set_pair, tuple(gr.update() for _ in outputs))
    ask_tab.pair.change(page, inputs, [*outputs, ask_tab.message], api_name="set_pair_on_change", **PRIVATE)


def build_app(
    pairs: dict[str, Pair],
    samples: list[dict],
    errors_n: int = errors.ERRORS_N,
    bench_settings: dict | None = None,
    retrieval: RetrievalModels | None = None,
    gallery_size: int = RETRIEVAL_GALLERY,
    assets=None,
    data_roots: dict[str, str] | None = None,
) -> gr.Blocks:
    """The Blocks app over `pairs` (display name -> (teacher, student or None) checkpoints) and
    `samples` (`workbench.data.samples.load_samples`). `errors_n`: test examples the Errors tab
    compares; `bench_settings`: the Speed tab's settings by name (default `speed.BENCH_SETTINGS`);
    `retrieval`: the Retrieval tab's models (default: the shipped ones, `load_retrieval(assets=assets)`);
    `gallery_size`: the shapes test scenes its gallery holds; `assets`: the assets directory (default
    `loading.assets_dir()`); `data_roots`: the folders of the real datasets the Errors tab reads ({name: folder},
    "*" for any; `python app.py --data-root`)."""
    if not pairs:
        raise WorkbenchError(f"no shipped teacher checkpoints found in {assets_dir(assets)}; run `make rebuild`")
    if gallery_size < 1:
        raise ValueError(f"gallery_size must be at least 1, got {gallery_size}")
    retrieval = load_retrieval(assets=assets) if retrieval is None else retrieval
    retrieval_state = RetrievalState(retrieval, gallery_size)
    state = AppState(pairs, samples)
    recipes = [ck.meta.get("recipe") for p in pairs.values() for ck in p if ck is not None]
    with gr.Blocks(title=TITLE) as demo:
        with gr.Row():
            with gr.Column(scale=3):
                gr.Markdown(INTRO)
                pair = gr.Dropdown(state.names, value=state.names[0], label="task / model pair", elem_id="pair")
                message = gr.Markdown(elem_id="message")  # every tab's errors, in one place
            with gr.Column(scale=2), gr.Accordion("Glossary", open=True, elem_id="glossary"):
                gr.Markdown(glossary_markdown(recipes), max_height=230, elem_id="glossary-text")
        with gr.Tabs(selected="ask") as tabs:
            ask_tab = ask.build(state, pair, message)
            attention_tab = attention.build(state, ask_tab)
            speed.build(state, pair, bench_settings, message)
            errors_tab = errors.build(state, ask_tab, attention_tab, tabs, errors_n, data_roots)
            retrieval_tab.build(retrieval_state, message)
        tabs.select(None, None, None, js=RESIZE_PLOTS_JS, api_name="resize_plots", **PRIVATE)
        _wire_pair_change(state, (ask_tab, attention_tab, errors_tab))
    demo.queue(default_concurrency_limit=2, max_size=256)
    return demo
