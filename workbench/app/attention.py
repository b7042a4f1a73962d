"""The Attention tab: teacher and student maps of one explanation method (`workbench.explain`) on the
input of the Ask tab, side by side on one colour scale (for NLVR a row per image), with how much the two maps
agree, what the models could not read (as in Ask) and the maps as files (NPZ and JSON; PNG with kaleido); in a
collapsed accordion, the measured agreement of every shipped student with the teacher (`agreement_table`).

Public endpoint: /explain (also run when the tab is selected or a control changes, privately; the page's events
show errors in the message area: `ui.endpoint`)."""

from __future__ import annotations

import html
import time

import gradio as gr

from workbench import viz
from workbench.api import ask
from workbench.app.agreement_table import agreement_section
from workbench.app.ask import AskTab
from workbench.app.exports import maps_files
from workbench.app.state import AppState
from workbench.app.ui import (
    ANALYSIS_QUEUE,
    PRIVATE,
    coverage_markdown,
    endpoint,
    num_images,
    read_inputs,
    shown,
    user_errors,
)
from workbench.explain.attribution import TAB_IG_STEPS
from workbench.inputs import check_question
from workbench.models.precision import inference_precision

# (label, `workbench.explain` method), in the order offered
METHOD_CHOICES = [
    ("raw attention", "attention"),
    ("rollout", "rollout"),
    ("relevancy", "relevancy"),
    ("integrated gradients", "ig"),
]
METHOD_LABELS = {method: label for label, method in METHOD_CHOICES}
METHOD_NOTES = {
    "attention": "Raw text-to-image attention of the chosen layer: the teacher's **real** cross-modal attention "
    "(its joint attention renormalised over the image keys); the student's **virtual** cross-attention "
    "(its text-tower queries against its image-tower keys: the quantity DiDE distils; the towers never "
    "attend to each other).",
    "rollout": "Attention rollout (Abnar & Zuidema): attention flow through every layer, heads averaged; "
    "the teacher's joint stream, the student's image tower. Class-agnostic. Shares of the image part.",
    "relevancy": "Gradient-weighted relevancy (Chefer et al. 2021) for the predicted answer, every layer; "
    "shares of the image part.",
    "ig": "Integrated Gradients (Captum) on the patch embeddings for the predicted answer; signed "
    "(red for, blue against), shares of the total |attribution|.",
}
ALL_WORDS = ("all question words", "all")
IMAGE_NAMES = ("left", "right")


def word_index(word, tokens: list[str]) -> int | None:
    """The token position a word choice ("<i>:<token>") names, if it is still that token; else None."""
    if not word or word == "all" or ":" not in str(word):
        return None
    i, _, tok = str(word).partition(":")
    try:
        i = int(i)
    except ValueError:
        return None
    return i if 0 <= i < len(tokens) and tokens[i] == tok else None


def _head_choices(heads: int) -> list[str]:
    return ["mean", *[str(h) for h in range(1, heads + 1)]]


def _image_result(ck, batch, method: str, layer_index: int, image_index: int) -> dict:
    """`workbench.explain`'s result of one method for image `image_index` of the input (1: NLVR's right image)."""
    from workbench.explain import attention_rollout, cross_attention, explain, relevancy

    if image_index == 0:
        # Integrated Gradients' 32 forward and backward passes in the model's fast precision (bf16 autocast for a
        # ViLT-sized model on a CPU with native bf16: about 3x faster); one-pass maps stay fp32
        with inference_precision(ck.model, "auto" if method == "ig" else "fp32"):
            return explain(ck.model, batch, ck.tokenizer, (method,), layer=layer_index, ig_steps=TAB_IG_STEPS)[method]
    if method == "attention":
        ca = cross_attention(ck.model, batch, ck.tokenizer, image_index=image_index)
        return {"tokens": ca["tokens"], "cross": ca}
    if method == "rollout":
        return attention_rollout(ck.model, batch, ck.tokenizer, image_index=image_index)
    return relevancy(ck.model, batch, None, ck.tokenizer, image_index=image_index)


def _model_maps(models: dict, images: list, question: str, method: str, layer_index: int, head_index, word):
    """Each model's (role -> checkpoint) map of one method over each input image: ([{label: map} per image], the
    teacher's tokens, the chosen word's position (None: all words), {role: seconds}, {role: `ask` result}). Maps
    other than raw attention are shares of the total."""
    from workbench.explain import encode, normalise_map, question_map, word_map

    per_image = [{} for _ in images]
    tokens, w, seconds, answers = None, None, {}, {}
    img2 = images[1] if len(images) > 1 else None
    for role, ck in models.items():
        started = time.perf_counter()
        batch = encode(ck.model, ck.tokenizer, images[0], question, second_image=img2, image_pipeline=ck.image_pipeline)
        answers[role] = ask(ck, images[0], question, second_image=img2)
        for k in range(len(images)):
            res = _image_result(ck, batch, method, layer_index, k)
            if tokens is None:  # the teacher's tokens name the words (the student shares its tokenizer)
                tokens = res["tokens"]
                w = word_index(word, tokens) if method == "attention" else None
            if method == "attention":
                cross, kind = res["cross"], "real" if role == "teacher" else "virtual"
                if w is not None and cross["tokens"] == tokens:
                    m = word_map(cross, w, layer_index, head_index)
                else:
                    m = question_map(cross, layer_index, head_index)
                label = f"{role} · {kind} cross-attention · {answers[role]['answer']}"
            else:
                m = normalise_map(res["image"], "sum")  # shares, comparable across the two models
                label = f"{role} · {answers[role]['answer']}"
            per_image[k][label] = m
        seconds[role] = time.perf_counter() - started
    return per_image, tokens, w, seconds, answers


def _notes(question: str, method: str, per_image: list[dict], started: float, seconds: dict) -> str:
    """The text under the maps: the input, what the method shows, the two maps' agreement (per image), the time
    (each model's maps, then the whole request)."""
    from workbench.explain import map_agreement

    lines = [f"*{html.escape(question)}*", METHOD_NOTES[method]]
    for k, maps in enumerate(per_image):
        if len(maps) == 2:
            agree = map_agreement(*maps.values())
            kl = "" if method == "ig" else f"KL {agree['kl']:.3f}, "  # KL would drop IG's negative part
            where = f" ({IMAGE_NAMES[k]} image)" if len(per_image) > 1 else ""
            lines.append(f"Teacher vs student map{where}: {kl}Spearman ρ {agree['spearman']:.2f}.")
    if len(per_image) > 1:
        lines.append("Two images: the upper plot shows the maps over the left image, the lower one over the right.")
    each = " · ".join(f"{role} {t:.1f} s" for role, t in seconds.items())
    lines.append(f"_{METHOD_LABELS[method]}: {each} · total {time.perf_counter() - started:.1f} s_")
    return "\n\n".join(lines)


def _named(title: str, name: str) -> str:
    """`title` with `name` added to its first line (before a `<br>` subtitle)."""
    head, br, rest = title.partition("<br>")
    return f"{head} · {name}{br}{rest}"


def _figures(per_image: list[dict], images: list, method: str, title: str) -> list:
    """One figure of side-by-side maps per input image, all on one colour scale."""
    arrays = [m for maps in per_image for m in maps.values()]
    lo, hi = min(float(m.min()) for m in arrays), max(float(m.max()) for m in arrays)
    figures = []
    for k, (maps, image) in enumerate(zip(per_image, images)):
        fig = viz.patch_maps_side_by_side(
            maps,
            title=title if len(images) == 1 else _named(title, f"{IMAGE_NAMES[k]} image"),
            image=image,
            colorscale="RdBu_r" if method == "ig" else "Viridis",
            symmetric=method == "ig",
            zlabel="attention" if method == "attention" else "share",
            zmin=lo,
            zmax=hi,
        )
        figures.append(fig)
    return figures


CLEARED = (None, None, "", "", None, gr.update(), gr.update(), gr.update())  # maps after an error; controls kept


class AttentionTab:
    """The Attention tab's components, callbacks and events; its input is the Ask tab's."""

    def __init__(self, state: AppState, ask_tab: AskTab):
        self.state, self.ask_tab = state, ask_tab

    def layout(self) -> None:
        layers, heads = self.state.attention_shape(self.state.names[0])
        teacher, _ = self.state.pairs[self.state.names[0]]
        gr.Markdown(
            "Teacher and student maps of the same input (the one in **Ask**), side by side on one "
            "colour scale. Layer, head and word apply to raw attention."
        )
        label, agreement = agreement_section()  # the shipped measurements (`agreement_table`), read, not run
        with gr.Accordion(label, open=False, elem_id="attention-agreement-box"):
            gr.Markdown(agreement, elem_id="attention-agreement")
        self.api = gr.Button(visible=False)  # the public endpoint's trigger (`ui.endpoint`): API clients only
        with gr.Row():
            self.method = gr.Radio(METHOD_CHOICES, value="attention", label="method", elem_id="method")
            self.layer = gr.Slider(1, layers, value=layers, step=1, label="layer", elem_id="layer")
            self.head = gr.Dropdown(_head_choices(heads), value="mean", label="head", elem_id="head")
            self.word = gr.Dropdown([ALL_WORDS], value="all", label="word", allow_custom_value=True, elem_id="word")
            self.explain_btn = gr.Button("Explain", variant="primary", elem_id="explain")
        self.notes = gr.Markdown(elem_id="attention-notes")  # what the models could not read
        self.plot = gr.Plot(label="maps", elem_id="attention-plot")
        self.plot2 = gr.Plot(label="maps over the right image", visible=num_images(teacher) == 2,
                             elem_id="attention-plot-right")  # fmt: skip
        self.text = gr.Markdown(elem_id="attention-info")
        self.download = gr.File(label="the maps (NPZ, JSON)", file_count="multiple", height=130,
                                elem_id="attention-download")  # fmt: skip

    @property
    def inputs(self) -> list:
        return [*self.ask_tab.inputs, self.method, self.layer, self.head, self.word]

    @property
    def outputs(self) -> list:
        return [self.plot, self.plot2, self.text, self.notes, self.download, self.word, self.layer, self.head]

    def explain_after(self, dep, name: str):
        """After event `dep`, draw the maps of the (new) input: a private page event `name`."""
        page = shown(self.explain, CLEARED, chained=True)
        outputs = [*self.outputs, self.ask_tab.message]
        return dep.then(page, self.inputs, outputs, api_name=name, **ANALYSIS_QUEUE, **PRIVATE)

    def wire(self, tab: gr.Tab) -> None:
        events = [(self.explain_btn.click, "explain_on_click"), (self.method.input, "explain_on_method"),
                  (self.layer.release, "explain_on_layer"), (self.head.input, "explain_on_head"),
                  (self.word.input, "explain_on_word"), (tab.select, "explain_on_tab")]  # fmt: skip
        endpoint(self.explain, self.inputs, self.outputs, "explain", self.api, events, self.ask_tab.message, CLEARED,
                 **ANALYSIS_QUEUE)  # fmt: skip

    @property
    def reset_outputs(self) -> list:
        return [self.layer, self.head, self.word, self.plot, self.plot2, self.text, self.notes, self.download]

    def reset(self, pair_name: str) -> tuple:
        """Updates of `reset_outputs` for a new pair: its layers and heads, every word, no maps (a second plot for
        a two-image pair)."""
        layers, heads = self.state.attention_shape(pair_name)
        teacher, _ = self.state.pair(pair_name)
        return (
            gr.update(maximum=layers, value=layers),
            gr.update(choices=_head_choices(heads), value="mean"),
            gr.update(choices=[ALL_WORDS], value="all"),
            None,
            gr.update(value=None, visible=num_images(teacher) == 2),
            "",
            "",
            None,
        )

    @user_errors
    def explain(self, pair_name, image, image2, question, method, layer, head, word):
        """Teacher and student maps of one method on the current input (each image of it), one colour scale; what
        the models could not read; the maps as files."""
        started = time.perf_counter()
        teacher, student = self.state.pair(pair_name, analysis=True)
        img, img2 = read_inputs(teacher, image, image2)
        question = check_question(question)
        if method not in METHOD_LABELS:
            raise gr.Error(f"Unknown method {method!r}.")
        if method == "ig" and img2 is not None:
            raise gr.Error("Integrated Gradients supports one-image models only; pick another method for NLVR.")
        layers, heads = self.state.attention_shape(pair_name)
        layer = min(max(int(layer or layers), 1), layers)
        layer_index = layer - layers - 1  # counted from the end in both models
        head_index = None if head in (None, "", "mean") else int(head) - 1
        if head_index is not None and not 0 <= head_index < heads:
            raise gr.Error(f"No head {head}; the models have {heads}.")
        models = {role: ck for role, ck in (("teacher", teacher), ("student", student)) if ck is not None}
        images = [img] if img2 is None else [img, img2]
        per_image, tokens, w, seconds, answers = _model_maps(
            models, images, question, method, layer_index, head_index, word
        )
        if method == "attention":
            what = f"'{tokens[w]}'" if w is not None else "question words"
            heads_text = "heads averaged" if head_index is None else f"head {head_index + 1}"
            title = f"{what} → image<br><sup>layer {layer} of {layers} · {heads_text}</sup>"
        else:
            title = METHOD_LABELS[method]
        figures = _figures(per_image, images, method, title)
        text = _notes(question, method, per_image, started, seconds)
        info = {"pair": pair_name, "question": question, "method": method, "layer": layer, "layers": layers,
                "head": "mean" if head_index is None else head_index + 1, "word": tokens[w] if w is not None else "all",
                "tokens": tokens, "images": IMAGE_NAMES[: len(images)]}  # fmt: skip
        maps = {f"{label} · {IMAGE_NAMES[k]} image" if len(images) > 1 else label: m
                for k, image_maps in enumerate(per_image) for label, m in image_maps.items()}  # fmt: skip
        files, png_note = maps_files(self.state.exports, info, maps, figures)
        words = [ALL_WORDS] + [(f"{i}: {t}", f"{i}:{t}") for i, t in enumerate(tokens) if 0 < i < len(tokens) - 1]
        on = method == "attention"
        return (
            figures[0],
            figures[1] if len(figures) > 1 else None,
            text + (f"\n\n_{png_note}_" if png_note else ""),
            coverage_markdown(answers),
            files,
            gr.update(choices=words, value=f"{w}:{tokens[w]}" if w is not None else "all", interactive=on),
            gr.update(interactive=on),
            gr.update(interactive=on),
        )


def build(state: AppState, ask_tab: AskTab) -> AttentionTab:
    """The Attention tab (inside the app's `gr.Tabs`), its components and events."""
    tab = AttentionTab(state, ask_tab)
    with gr.Tab("Attention", id="attention") as page:
        tab.layout()
    tab.wire(page)
    return tab
