"""The Attention tab: teacher and student maps of one explanation method (`workbench.explain`) on the
input of the Ask tab, side by side on one colour scale, with how much the two maps agree.

Public endpoint: /explain (also run when the tab is selected or a control changes, privately)."""

from __future__ import annotations

import html
import time

import gradio as gr

from workbench import viz
from workbench.api import ask
from workbench.app.ask import AskTab
from workbench.app.state import AppState
from workbench.app.ui import ANALYSIS_QUEUE, PRIVATE, read_inputs, user_errors
from workbench.inputs import check_question

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


def _model_maps(models: dict, img, img2, question: str, method: str, layer_index: int, head_index, word):
    """{label: map} of each model (role -> checkpoint) for one method, the teacher's tokens, the chosen word's
    position (None: all words) and {role: seconds}. Maps other than raw attention are shares of the total."""
    from workbench.explain import encode, explain, normalise_map, question_map, word_map

    maps, tokens, w, seconds = {}, None, None, {}
    for role, ck in models.items():
        started = time.perf_counter()
        batch = encode(ck.model, ck.tokenizer, img, question, second_image=img2, image_pipeline=ck.image_pipeline)
        res = explain(ck.model, batch, ck.tokenizer, (method,), layer=layer_index)[method]
        answer_text = ask(ck, img, question, second_image=img2)["answer"]
        if tokens is None:  # the teacher's tokens name the words (the student shares its tokenizer)
            tokens = res["tokens"]
            w = word_index(word, tokens) if method == "attention" else None
        if method == "attention":
            cross, kind = res["cross"], "real" if role == "teacher" else "virtual"
            if w is not None and cross["tokens"] == tokens:
                m = word_map(cross, w, layer_index, head_index)
            else:
                m = question_map(cross, layer_index, head_index)
            label = f"{role} · {kind} cross-attention · {answer_text}"
        else:
            m = normalise_map(res["image"], "sum")  # shares, comparable across the two models
            label = f"{role} · {answer_text}"
        maps[label] = m
        seconds[role] = time.perf_counter() - started
    return maps, tokens, w, seconds


def _notes(question: str, method: str, maps: dict, two_images: bool, started: float, seconds: dict) -> str:
    """The text under the maps: the input, what the method shows, the two maps' agreement, the time (each
    model's map, then the whole request)."""
    from workbench.explain import map_agreement

    lines = [f"*{html.escape(question)}*", METHOD_NOTES[method]]
    if len(maps) == 2:
        agree = map_agreement(*maps.values())
        kl = "" if method == "ig" else f"KL {agree['kl']:.3f}, "  # KL would drop IG's negative part
        lines.append(f"Teacher vs student map: {kl}Spearman ρ {agree['spearman']:.2f}.")
    if two_images:
        lines.append("Maps are over the left image.")
    each = " · ".join(f"{role} {t:.1f} s" for role, t in seconds.items())
    lines.append(f"_{METHOD_LABELS[method]}: {each} · total {time.perf_counter() - started:.1f} s_")
    return "\n\n".join(lines)


class AttentionTab:
    """The Attention tab's components, callbacks and events; its input is the Ask tab's."""

    def __init__(self, state: AppState, ask_tab: AskTab):
        self.state, self.ask_tab = state, ask_tab

    def layout(self) -> None:
        layers, heads = self.state.attention_shape(self.state.names[0])
        gr.Markdown(
            "Teacher and student maps of the same input (the one in **Ask**), side by side on one "
            "colour scale. Layer, head and word apply to raw attention."
        )
        with gr.Row():
            self.method = gr.Radio(METHOD_CHOICES, value="attention", label="method", elem_id="method")
            self.layer = gr.Slider(1, layers, value=layers, step=1, label="layer", elem_id="layer")
            self.head = gr.Dropdown(_head_choices(heads), value="mean", label="head", elem_id="head")
            self.word = gr.Dropdown([ALL_WORDS], value="all", label="word", allow_custom_value=True)
            self.explain_btn = gr.Button("Explain", variant="primary", elem_id="explain")
        self.plot = gr.Plot(label="maps", elem_id="attention-plot")
        self.text = gr.Markdown(elem_id="attention-info")

    @property
    def inputs(self) -> list:
        return [*self.ask_tab.inputs, self.method, self.layer, self.head, self.word]

    @property
    def outputs(self) -> list:
        return [self.plot, self.text, self.word, self.layer, self.head]

    def explain_after(self, dep, name: str):
        """After event `dep`, draw the maps of the (new) input: a private endpoint `name`."""
        return dep.then(self.explain, self.inputs, self.outputs, api_name=name, **ANALYSIS_QUEUE, **PRIVATE)

    def wire(self, tab: gr.Tab) -> None:
        inputs, outputs = self.inputs, self.outputs
        self.explain_btn.click(self.explain, inputs, outputs, api_name="explain", **ANALYSIS_QUEUE)
        events = (("method", self.method.input), ("layer", self.layer.release), ("head", self.head.input))
        for name, event in (*events, ("word", self.word.input)):
            event(self.explain, inputs, outputs, api_name=f"explain_on_{name}", **ANALYSIS_QUEUE, **PRIVATE)
        tab.select(self.explain, inputs, outputs, api_name="explain_on_tab", **ANALYSIS_QUEUE, **PRIVATE)

    @property
    def reset_outputs(self) -> list:
        return [self.layer, self.head, self.word, self.plot, self.text]

    def reset(self, pair_name: str) -> tuple:
        """Updates of `reset_outputs` for a new pair: its layers and heads, every word, no maps."""
        layers, heads = self.state.attention_shape(pair_name)
        return (
            gr.update(maximum=layers, value=layers),
            gr.update(choices=_head_choices(heads), value="mean"),
            gr.update(choices=[ALL_WORDS], value="all"),
            None,
            "",
        )

    @user_errors
    def explain(self, pair_name, image, image2, question, method, layer, head, word):
        """Teacher and student maps of one method on the current input, one colour scale."""
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
        maps, tokens, w, seconds = _model_maps(models, img, img2, question, method, layer_index, head_index, word)
        if method == "attention":
            what = f"'{tokens[w]}'" if w is not None else "question words"
            heads_text = "heads averaged" if head_index is None else f"head {head_index + 1}"
            title = f"{what} → image<br><sup>layer {layer} of {layers} · {heads_text}</sup>"
        else:
            title = METHOD_LABELS[method]
        fig = viz.patch_maps_side_by_side(
            maps,
            title=title,
            image=img,
            colorscale="RdBu_r" if method == "ig" else "Viridis",
            symmetric=method == "ig",
            zlabel="attention" if method == "attention" else "share",
        )
        words = [ALL_WORDS] + [(f"{i}: {t}", f"{i}:{t}") for i, t in enumerate(tokens) if 0 < i < len(tokens) - 1]
        on = method == "attention"
        return (
            fig,
            _notes(question, method, maps, img2 is not None, started, seconds),
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
