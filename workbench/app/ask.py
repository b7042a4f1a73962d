"""The Ask tab: a sample, an upload or a random scene; both models' answers (text, top-5 bars in each model's
colour, latency), whether the student's image features came from its cache, what the models could not read (the
question's words they never saw in training, warnings about the input: `workbench.coverage`) and the answers as
JSON. Examples follow the input: a new random scene or an opened test example brings its own.

Public endpoints: /ask, /random_example, /load_sample, /pick_example (for API clients, raising errors; the page's
own events show them in the message area instead: `ui.endpoint`)."""

from __future__ import annotations

import html
import random

import gradio as gr

from workbench import viz
from workbench.api import ask, ask_cached
from workbench.app.exports import answers_json
from workbench.app.state import AppState
from workbench.app.ui import (
    ASK_QUEUE,
    IMAGE_INPUT,
    PRIVATE,
    TEXT_LABELS,
    ImageInput,
    answer_text,
    coverage_markdown,
    dataset_of,
    endpoint,
    num_images,
    random_label,
    read_inputs,
    shown,
    student_head,
    task_of,
    teacher_head,
    user_errors,
)
from workbench.inputs import check_question
from workbench.models.io import Checkpoint

NO_STUDENT = "_no student shipped for this task yet_"
CLEARED = ("", None, "", None, "", None)  # the answers after an error: nothing stale left on the page
UNCHANGED = (gr.update(),) * 5


def top_bars(result: dict, role: str):
    """A model's top answers as bars in its colour (`viz.MODEL_COLOURS`)."""
    fig = viz.top_answers_bar(result["top"], title=f"{role}: {result['answer']}")
    return fig.update_traces(marker_color=viz.MODEL_COLOURS[role])


class AskTab:
    """The Ask tab's components, callbacks and events, over the shared `state`, the `pair` selector and the page's
    `message` area."""

    def __init__(self, state: AppState, pair: gr.Dropdown, message: gr.Markdown):
        self.state, self.pair, self.message = state, pair, message

    # ------------------------------------------------------------------ layout and events

    def layout(self) -> None:
        """The components, for the first pair."""
        teacher, student = self.state.pairs[self.state.names[0]]
        samples = self.state.samples_for(teacher)
        first, second, sample = self.state.first_sample(teacher)
        examples = self.state.examples_for(teacher, sample)
        two = num_images(teacher) == 2
        self.api = gr.Button(visible=False)  # the public endpoints' trigger (`ui.endpoint`): API clients only
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
                    label = "left image" if two else "image"
                    self.image = ImageInput(**IMAGE_INPUT, value=first, label=label, height=220, elem_id="image")
                    self.image2 = ImageInput(
                        **IMAGE_INPUT, value=second, label="right image", height=220, visible=two, elem_id="image2"
                    )
                self.random_btn = gr.Button(random_label(teacher), elem_id="random")
                self.source_info = gr.Markdown(sample_caption(sample), elem_id="source-info")
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
                    with gr.Column():
                        self.s_head = gr.Markdown(student_head(student))
                        self.s_text = gr.Markdown(elem_id="student-answer")
                self.notes = gr.Markdown(elem_id="ask-notes")  # what the models could not read
                with gr.Row():
                    self.t_plot = gr.Plot(label="teacher: top 5", elem_id="teacher-top")
                    self.s_plot = gr.Plot(label="student: top 5", elem_id="student-top")
                self.download = gr.File(label="both answers (JSON)", elem_id="ask-download", height=80)

    @property
    def inputs(self) -> list:
        """What an answer (and a map) is of: the pair, the image(s), the question."""
        return [self.pair, self.image, self.image2, self.question]

    @property
    def answers(self) -> list:
        return [self.t_text, self.t_plot, self.s_text, self.s_plot, self.notes, self.download]

    def then_ask(self, dep, name: str):
        """After event `dep`, answer the (new) input: a private page event `name`."""
        page = shown(self.answer, CLEARED, chained=True)
        outputs = [*self.answers, self.message]
        return dep.then(page, self.inputs, outputs, api_name=name, **ASK_QUEUE, **PRIVATE)

    def wire(self) -> None:
        on_page = dict(api_trigger=self.api, message=self.message)
        events = [(self.ask_btn.click, "ask_on_click"), (self.question.submit, "ask_on_enter")]
        endpoint(self.answer, self.inputs, self.answers, "ask", page_events=events, cleared=CLEARED, **on_page,
                 **ASK_QUEUE)  # fmt: skip
        shown_input = [self.image, self.image2, self.question, self.source_info, self.examples]
        events = [(self.random_btn.click, "random_on_click")]
        [random_scene] = endpoint(self.random_example, [self.pair], shown_input, "random_example",
                                  page_events=events, cleared=UNCHANGED, **on_page)  # fmt: skip
        self.then_ask(random_scene, "ask_after_random")
        sample_input = [self.image, self.image2, self.question, self.examples, self.source_info]
        events = [(self.gallery.click, "sample_on_click")]
        [sample] = endpoint(self.load_sample, [self.pair, self.gallery, self.question], sample_input, "load_sample",
                            page_events=events, cleared=UNCHANGED, **on_page)  # fmt: skip
        self.then_ask(sample, "ask_after_sample")
        example = self.examples.click(pick_example, self.examples, self.question, api_name="pick_example")
        self.then_ask(example, "ask_after_example")
        new_input = [self.source_info, *self.answers]
        for image, which, name in ((self.image, "image", "image"), (self.image2, "right image", "image2")):
            # a new image: the caption no longer names a sample, the answers were about the old image
            image.upload(lambda w=which: (f"{w}: your upload", *CLEARED), None, new_input,
                         api_name=f"{name}_uploaded", queue=False, **PRIVATE)  # fmt: skip
            image.clear(lambda: ("", *CLEARED), None, new_input, api_name=f"{name}_cleared", queue=False, **PRIVATE)

    # ------------------------------------------------------------------ a new pair

    @property
    def reset_outputs(self) -> list:
        """What a new pair resets (`reset` gives their updates)."""
        controls = [self.gallery, self.examples, self.random_btn, self.image, self.image2, self.question]
        return [*controls, self.source_info, self.t_head, self.s_head, *self.answers]

    def reset(self, teacher: Checkpoint, student: Checkpoint | None, question: str) -> tuple:
        """Updates of `reset_outputs` for a new pair: its own samples, first sample image(s) and caption, examples
        (the question becomes one of them unless the user typed their own), its headers, no answers."""
        shown_samples = self.state.samples_for(teacher)
        first, second, sample = self.state.first_sample(teacher)
        examples = self.state.examples_for(teacher, sample)
        if examples and self.state.is_suggested(question):
            question = examples[0]
        two = num_images(teacher) == 2
        return (
            gr.Dataset(samples=[[s["path"]] for s in shown_samples]),
            gr.Dataset(samples=[[q] for q in examples]),
            gr.update(value=random_label(teacher)),
            gr.update(value=first, label="left image" if two else "image"),
            gr.update(value=second, visible=two),
            gr.update(value=question, label=TEXT_LABELS.get(task_of(teacher), "question")),
            sample_caption(sample),
            teacher_head(teacher),
            student_head(student),
            *CLEARED,
        )

    # ------------------------------------------------------------------ callbacks

    @user_errors
    def answer(self, pair_name: str, image, image2, question: str):
        """Both models' answers: text (answer, confidence, latency), top-5 bars, what they could not read, and
        the answers as a JSON file."""
        teacher, student = self.state.pair(pair_name)
        img, img2 = read_inputs(teacher, image, image2)
        question = check_question(question)
        t = ask(teacher, img, question, second_image=img2)
        results, checkpoints = {"teacher": t}, {"teacher": teacher.path.name}
        s_text, s_plot = NO_STUDENT, None
        if student is not None:
            s = ask_cached(student, img, question, second_image=img2)
            results["student"], checkpoints["student"] = s, student.path.name
            s_text, s_plot = answer_text(s, s["cache_hit"]), top_bars(s, "student")
        images = [img] if img2 is None else [img, img2]
        named = {role: (checkpoints[role], r) for role, r in results.items()}
        download = answers_json(self.state.exports, pair_name, question, images, named)
        return answer_text(t), top_bars(t, "teacher"), s_text, s_plot, coverage_markdown(results), download

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
        examples = self.state.scene_examples(teacher, data, i, ex)
        return ex.images[0], second, examples[0], info, gr.Dataset(samples=[[q] for q in examples])

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
            sample_caption(sample),
        )


def sample_caption(sample: dict | None) -> str:
    """The line under the input saying where the image comes from."""
    return f"sample `{sample['file']}`" if sample else ""


def pick_example(example):
    """The clicked example text (through the API: its index in this session's examples)."""
    return example[0] if isinstance(example, (list, tuple)) else example


def build(state: AppState, pair: gr.Dropdown, message: gr.Markdown) -> AskTab:
    """The Ask tab (inside the app's `gr.Tabs`), its components and events."""
    tab = AskTab(state, pair, message)
    with gr.Tab("Ask", id="ask"):
        tab.layout()
    tab.wire()
    return tab
