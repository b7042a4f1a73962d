"""The Ask tab: a sample, an upload or a random scene; both models' answers (text, top-5 bars, latency)
and whether the student's image features came from its cache.

Public endpoints: /ask, /random_example, /load_sample, /pick_example."""

from __future__ import annotations

import html
import random

import gradio as gr

from workbench import viz
from workbench.api import ask, ask_cached
from workbench.app.state import AppState
from workbench.app.ui import (
    ASK_QUEUE,
    IMAGE_INPUT,
    PRIVATE,
    TEXT_LABELS,
    ImageInput,
    answer_text,
    dataset_of,
    num_images,
    random_label,
    read_inputs,
    student_head,
    task_of,
    teacher_head,
    user_errors,
)
from workbench.inputs import check_question
from workbench.models.io import Checkpoint

NO_STUDENT = "_no student shipped for this task yet_"


class AskTab:
    """The Ask tab's components, callbacks and events, over the shared `state` and the `pair` selector."""

    def __init__(self, state: AppState, pair: gr.Dropdown):
        self.state, self.pair = state, pair

    # ------------------------------------------------------------------ layout and events

    def layout(self) -> None:
        """The components, for the first pair."""
        teacher, student = self.state.pairs[self.state.names[0]]
        samples = self.state.samples_for(teacher)
        examples = self.state.examples_for(teacher, samples[0] if samples else None)
        two = num_images(teacher) == 2
        with gr.Row():
            with gr.Column(scale=2):
                self.gallery = gr.Dataset(
                    components=["image"],
                    samples=[[s["path"]] for s in samples],
                    type="index",
                    layout="gallery",
                    samples_per_page=12,
                    label="sample images (click one)",
                    elem_id="samples",
                )
                with gr.Row():
                    first = samples[0]["path"] if samples else None
                    label = "left image" if two else "image"
                    self.image = ImageInput(**IMAGE_INPUT, value=first, label=label, height=220, elem_id="image")
                    self.image2 = ImageInput(
                        **IMAGE_INPUT, label="right image", height=220, visible=two, elem_id="image2"
                    )
                self.random_btn = gr.Button(random_label(teacher), elem_id="random")
                self.source_info = gr.Markdown(elem_id="source-info")
                self.question = gr.Textbox(
                    value=examples[0] if examples else "",
                    label=TEXT_LABELS.get(task_of(teacher), "question"),
                    max_lines=3,
                    elem_id="question",
                )
                self.examples = gr.Dataset(
                    components=[self.question],
                    samples=[[q] for q in examples],
                    type="values",
                    label="examples (click to ask)",
                    elem_id="examples",
                )
                self.ask_btn = gr.Button("Ask", variant="primary", elem_id="ask")
            with gr.Column(scale=3):
                with gr.Row():
                    with gr.Column():
                        self.t_head = gr.Markdown(teacher_head(teacher))
                        self.t_text = gr.Markdown(elem_id="teacher-answer")
                        self.t_plot = gr.Plot(label="teacher: top 5", elem_id="teacher-top")
                    with gr.Column():
                        self.s_head = gr.Markdown(student_head(student))
                        self.s_text = gr.Markdown(elem_id="student-answer")
                        self.s_plot = gr.Plot(label="student: top 5", elem_id="student-top")

    @property
    def inputs(self) -> list:
        """What an answer (and a map) is of: the pair, the image(s), the question."""
        return [self.pair, self.image, self.image2, self.question]

    @property
    def answers(self) -> list:
        return [self.t_text, self.t_plot, self.s_text, self.s_plot]

    def then_ask(self, dep, name: str):
        """After event `dep`, answer the (new) input: a private endpoint `name`."""
        return dep.then(self.answer, self.inputs, self.answers, api_name=name, **ASK_QUEUE, **PRIVATE)

    def wire(self) -> None:
        inputs, answers = self.inputs, self.answers
        self.ask_btn.click(self.answer, inputs, answers, api_name="ask", **ASK_QUEUE)
        self.question.submit(self.answer, inputs, answers, api_name="ask_on_enter", **ASK_QUEUE, **PRIVATE)
        shown = [self.image, self.image2, self.question, self.source_info]
        random_scene = self.random_btn.click(self.random_example, self.pair, shown, api_name="random_example")
        self.then_ask(random_scene, "ask_after_random")
        sample = self.gallery.click(
            self.load_sample,
            [self.pair, self.gallery, self.question],
            [self.image, self.image2, self.question, self.examples, self.source_info],
            api_name="load_sample",
        )
        self.then_ask(sample, "ask_after_sample")
        example = self.examples.click(pick_example, self.examples, self.question, api_name="pick_example")
        self.then_ask(example, "ask_after_example")

    # ------------------------------------------------------------------ a new pair

    @property
    def reset_outputs(self) -> list:
        """What a new pair resets (`reset` gives their updates)."""
        controls = [self.gallery, self.examples, self.random_btn, self.image, self.image2, self.question]
        return [*controls, self.t_head, self.s_head, *self.answers]

    def reset(self, teacher: Checkpoint, student: Checkpoint | None, question: str) -> tuple:
        """Updates of `reset_outputs` for a new pair: its samples and examples (the question becomes one of
        the examples unless the user typed their own), its headers, no answers."""
        shown = self.state.samples_for(teacher)
        examples = self.state.examples_for(teacher, shown[0] if shown else None)
        if examples and self.state.is_suggested(question):
            question = examples[0]
        two = num_images(teacher) == 2
        return (
            gr.Dataset(samples=[[s["path"]] for s in shown]),
            gr.Dataset(samples=[[q] for q in examples]),
            gr.update(value=random_label(teacher)),
            gr.update(label="left image" if two else "image"),
            gr.update(visible=two),
            gr.update(value=question, label=TEXT_LABELS.get(task_of(teacher), "question")),
            teacher_head(teacher),
            student_head(student),
            "",
            None,
            "",
            None,
        )

    # ------------------------------------------------------------------ callbacks

    @user_errors
    def answer(self, pair_name: str, image, image2, question: str):
        """Both models' answers: text (answer, confidence, latency), top-5 bars."""
        teacher, student = self.state.pair(pair_name)
        img, img2 = read_inputs(teacher, image, image2)
        question = check_question(question)
        t = ask(teacher, img, question, second_image=img2)
        t_plot = viz.top_answers_bar(t["top"], title=f"teacher: {t['answer']}")
        if student is None:
            return answer_text(t), t_plot, NO_STUDENT, None
        s = ask_cached(student, img, question, second_image=img2)
        s_plot = viz.top_answers_bar(s["top"], title=f"student: {s['answer']}")
        return answer_text(t), t_plot, answer_text(s, s["cache_hit"]), s_plot

    @user_errors
    def random_example(self, pair_name: str):
        """A new random test scene (or easy-VQA test image) with a question of the pair's task."""
        teacher, _ = self.state.pair(pair_name)
        name = dataset_of(teacher)
        data = self.state.dataset(teacher, None if name == "easy-vqa" else 1_000_000)  # shapes: made on access
        i = random.randrange(len(data))
        ex = data[i]
        gold = data.labels[ex.label]
        what = "easy-VQA test image" if name == "easy-vqa" else "random test scene"
        info = f"{what} #{i} · {html.escape(ex.qtype)} · the generator's answer: **{html.escape(gold)}**"
        second = ex.images[1] if len(ex.images) > 1 else None
        return ex.images[0], second, self.state.suggest(ex.text), info

    @user_errors
    def load_sample(self, pair_name: str, index: int, question: str):
        """Sample `index` of the gallery shown for this pair: image, example questions, question."""
        teacher, _ = self.state.pair(pair_name)
        shown = self.state.samples_for(teacher)
        if index is None or not 0 <= int(index) < len(shown):
            raise gr.Error(f"No sample #{index}; there are {len(shown)}.")
        sample = shown[int(index)]
        examples = self.state.examples_for(teacher, sample)
        if examples and self.state.is_suggested(question):
            question = examples[0]
        second = gr.update()
        if num_images(teacher) == 2:
            second = shown[(int(index) + 1) % len(shown)]["path"]
        return (
            sample["path"],
            second,
            question,
            gr.Dataset(samples=[[q] for q in examples]),
            f"sample `{sample['file']}`",
        )


def pick_example(example):
    """The clicked example text (through the API: its index in this session's examples)."""
    return example[0] if isinstance(example, (list, tuple)) else example


def build(state: AppState, pair: gr.Dropdown) -> AskTab:
    """The Ask tab (inside the app's `gr.Tabs`), its components and events."""
    tab = AskTab(state, pair)
    with gr.Tab("Ask", id="ask"):
        tab.layout()
    tab.wire()
    return tab
