"""The Retrieval tab: text -> the top k images of a gallery of shapes test scenes from a dual student's
index (`workbench.retrieval.GalleryIndex`, built once on first use); optionally re-ranked by a fusion
image-text matching teacher; the timing of every stage and the models' sizes. Independent of the task /
model pair of the other tabs.

Public endpoint: /retrieve."""

from __future__ import annotations

import html

import gradio as gr
from PIL import Image

from workbench import viz
from workbench.app.ask import pick_example
from workbench.app.loading import RETRIEVAL_BUILD, RETRIEVAL_FUSION
from workbench.app.state import RetrievalState
from workbench.app.ui import EXAMPLE_COUNT, PRIVATE, endpoint, shown, user_errors
from workbench.inputs import check_question

RETRIEVAL_MAX_K = 24
NO_STUDENT = f"No retrieval student is loaded. Build one with {RETRIEVAL_BUILD}, then restart the app."
NO_FUSION = f"No fusion teacher is loaded, so there is nothing to re-rank with (assets/{RETRIEVAL_FUSION})."
QUEUE = dict(concurrency_id="retrieve")
CLEARED = ([], "", None, None)  # the results after an error


def display(image: Image.Image) -> Image.Image:
    """A gallery render scaled up with crisp pixels for the page (at least 128 pixels a side)."""
    factor = max(1, -(-128 // max(image.size)))
    return image.resize((image.width * factor, image.height * factor), Image.NEAREST)


def header(models: RetrievalState) -> str:
    """What the tab searches and with which models; how to build them when none is loaded."""
    if models.encoder is None:
        lines = [
            "**No retrieval student is loaded, so this tab cannot search yet.**",
            f"Build one with {RETRIEVAL_BUILD}, then restart the app.",
        ]
    else:
        lines = [
            f"Text → images over a gallery of **{models.gallery.n_images} shapes test scenes**, in groups of four: "
            "a scene and three copies with one object's colour, shape or place changed. The dual student "
            f"{models.size_text('student')} embeds every gallery image once into an index (on the first query); a "
            "query then costs one text encoding and one matrix product. Independent of the task / model pair "
            "above."
        ]
        if models.matcher is not None:
            lines.append(
                f"The fusion teacher {models.size_text('fusion')} can re-rank the top k by its image-text matching "
                "score: k joint passes per query, where scoring the whole gallery would take one per image."
            )
        else:
            lines.append(f"No fusion teacher is loaded, so re-ranking is off (it is `assets/{RETRIEVAL_FUSION}`).")
    if models.note:
        lines.append(f"⚠ {html.escape(models.note)}")
    return "\n\n".join(lines)


def _label(r: dict, reranked: bool, gold: dict | None) -> str:
    """A result's caption under its image: rank and score (and the image the query describes)."""
    label = f"#{r['rank']} · cos {r['similarity']:.3f}"
    if reranked:
        label = f"#{r['rank']} · P(match) {r['match_prob']:.2f} · was #{r['dual_rank']}"
    if gold is not None and r["image"] == gold["image"]:
        label = f"✓ {label}"
    return label


def _info(query: str, index, out: dict, built_now: bool, models: RetrievalState) -> str:
    """The text beside the results: the index, this query's timings, where the described image ranks,
    the models."""
    when = "on this query" if built_now else "once, on the first query"
    lines = [
        f"*{html.escape(query)}*" + (" (⚠ cut to the student's token limit)" if out["truncated"] else ""),
        f"**Index**: {len(index)} images embedded by the student {when} in {index.seconds:.2f} s "
        f"(`{index.index.backend}` backend).",
    ]
    q = out["timings_ms"]
    line = f"**This query**: encode {q['encode']:.1f} ms · search {q['search']:.2f} ms"
    if out["reranked"]:
        whole = q["rerank"] / out["k"] * len(index) / 1e3
        line += (
            f" · fusion re-rank of the top {out['k']} {q['rerank']:.1f} ms ({out['k']} joint passes; scoring "
            f"all {len(index)} images that way would take about {whole:.2g} s)"
        )
    lines.append(line + ".")
    gold = out["gold"]
    if gold is not None:
        where = "" if gold["rank"] <= out["k"] else f", outside the top {out['k']}"
        lines.append(f"The query is the caption of gallery image #{gold['image']}: it ranks **{gold['rank']}**{where}.")
    described = f"**Models**: student {models.size_text('student')}"
    if out["reranked"]:
        described += f"; fusion teacher {models.size_text('fusion')}"
    lines.append(described + ".")
    return "\n\n".join(lines)


class RetrievalTab:
    """The Retrieval tab's components, callback and events over `models` (its own state)."""

    def __init__(self, models: RetrievalState, message=None):
        self.models, self.message = models, message

    def layout(self) -> None:
        models = self.models
        gallery = models.gallery
        gr.Markdown(header(models), elem_id="retrieval-models")
        self.api = gr.Button(visible=False)  # the public endpoint's trigger (`ui.endpoint`): API clients only
        with gr.Row():
            first = gallery.texts[0] if gallery else ""
            self.query = gr.Textbox(value=first, label="text query", max_lines=2, scale=4, elem_id="retrieval-query")
            self.k = gr.Slider(1, RETRIEVAL_MAX_K, value=8, step=1, label="top k", elem_id="retrieval-k")
            self.rerank = gr.Checkbox(
                False,
                label="re-rank the top k with the fusion teacher",
                interactive=models.matcher is not None,
                elem_id="retrieval-rerank",
            )
            on = models.encoder is not None
            self.search_btn = gr.Button("Search", variant="primary", interactive=on, elem_id="retrieve")
        self.examples = gr.Dataset(
            components=[self.query],
            samples=[[t] for t in (gallery.texts[:EXAMPLE_COUNT] if gallery else [])],
            type="values",
            label="captions of gallery images (click to search)",
            elem_id="retrieval-examples",
            visible=gallery is not None,
        )
        self.results = gr.Gallery(
            label="top k, best first",
            columns=6,
            height=470,
            object_fit="contain",
            format="png",
            elem_id="retrieval-gallery",
        )
        with gr.Row():
            self.info = gr.Markdown(elem_id="retrieval-info")
            self.plot = gr.Plot(label="timings", elem_id="retrieval-timings")
        with gr.Accordion("the ranking as data", open=False):
            self.data = gr.JSON(elem_id="retrieval-data")

    def wire(self) -> None:
        inputs, outputs = [self.query, self.k, self.rerank], [self.results, self.info, self.plot, self.data]
        events = [(self.search_btn.click, "retrieve_on_click"), (self.query.submit, "retrieve_on_enter")]
        endpoint(self.retrieve, inputs, outputs, "retrieve", self.api, events, self.message, CLEARED, **QUEUE)
        self.examples.click(pick_example, self.examples, self.query, api_name="pick_query", **PRIVATE).then(
            shown(self.retrieve, CLEARED),
            inputs,
            [*outputs, self.message],
            api_name="retrieve_after_example",
            **QUEUE,
            **PRIVATE,
        )

    def _checked(self, query: str, k, rerank: bool) -> tuple[str, int]:
        """The query and k, checked (messages for the user)."""
        if self.models.encoder is None:
            raise gr.Error(NO_STUDENT)
        query = check_question(query, "query")
        try:
            k = int(k)
        except (TypeError, ValueError):
            raise gr.Error(f"k must be a whole number from 1 to {RETRIEVAL_MAX_K}, got {k!r}.") from None
        if not 1 <= k <= RETRIEVAL_MAX_K:
            raise gr.Error(f"k must be from 1 to {RETRIEVAL_MAX_K}, got {k}.")
        if rerank and self.models.matcher is None:
            raise gr.Error(NO_FUSION)
        return query, k

    @user_errors
    def retrieve(self, query: str, k, rerank: bool, progress=gr.Progress(track_tqdm=True)):
        """The top-k gallery images for a text query from the dual student's index (built on first use),
        optionally re-ranked by the fusion teacher; the timing of every stage and the models' sizes."""
        models = self.models
        query, k = self._checked(query, k, rerank)
        index, built_now = models.index(progress)
        out = index.search(query, k, models.matcher if rerank else None)
        timings = {"index": 1e3 * index.seconds, **out["timings_ms"]}
        items = [
            (display(models.gallery.load_image(r["image"])), _label(r, out["reranked"], out["gold"]))
            for r in out["results"]
        ]
        data = {
            "query": query,
            "k": out["k"],
            "reranked": out["reranked"],
            "results": [{**r, "caption": index.caption(r["image"])} for r in out["results"]],
            "gold": out["gold"],
            "timings_ms": {name: round(v, 4) for name, v in timings.items()},
            "index": {"n_images": len(index), "backend": index.index.backend, "built_now": built_now},
            "models": {role: m for role, m in models.sizes.items() if role == "student" or out["reranked"]},
        }
        title = f"timings · {len(index)} images, top {out['k']}" + (" re-ranked" if out["reranked"] else "")
        info = _info(query, index, out, built_now, models)
        return items, info, viz.retrieval_timings(timings, title), data


def build(models: RetrievalState, message=None) -> RetrievalTab:
    """The Retrieval tab (inside the app's `gr.Tabs`), its components and events."""
    tab = RetrievalTab(models, message)
    with gr.Tab("Retrieval", id="retrieval"):
        tab.layout()
    tab.wire()
    return tab
