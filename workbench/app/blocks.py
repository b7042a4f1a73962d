"""`build_app`: the page. A header, the task / model pair selector, then the five tabs in order (Ask,
Attention, Speed, Errors, Retrieval), each built by its module; choosing another pair resets what every
tab shows of the previous one (public endpoint /set_pair)."""

from __future__ import annotations

import gradio as gr

from workbench.app import ask, attention, errors, speed
from workbench.app import retrieval as retrieval_tab
from workbench.app.loading import RETRIEVAL_GALLERY, Pair, RetrievalModels, assets_dir, load_retrieval
from workbench.app.state import AppState, RetrievalState
from workbench.app.ui import user_errors
from workbench.errors import WorkbenchError

TITLE = "VL distillation workbench"
INTRO = (
    "# VL distillation workbench\n"
    "A slow **fusion teacher** (image patches and words in one transformer) beside the fast "
    "**dual-encoder student** distilled from it (separate towers, image features cacheable)."
)


def _wire_pair_change(state: AppState, tabs: tuple) -> None:
    """Choosing another pair resets the Ask, Attention and Errors tabs (Speed reads the pair when run;
    Retrieval does not depend on it)."""
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
    ask_tab.pair.change(set_pair, [ask_tab.pair, ask_tab.question], outputs, api_name="set_pair")


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
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(INTRO)
        pair = gr.Dropdown(state.names, value=state.names[0], label="task / model pair", elem_id="pair")
        with gr.Tabs(selected="ask") as tabs:
            ask_tab = ask.build(state, pair)
            attention_tab = attention.build(state, ask_tab)
            speed.build(state, pair, bench_settings)
            errors_tab = errors.build(state, ask_tab, attention_tab, tabs, errors_n, data_roots)
            retrieval_tab.build(retrieval_state)
        _wire_pair_change(state, (ask_tab, attention_tab, errors_tab))
    demo.queue(default_concurrency_limit=2, max_size=256)
    return demo
