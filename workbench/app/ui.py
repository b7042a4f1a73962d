"""UI pieces every tab uses: the image input, labels read off a checkpoint's metadata, the answer line and what
the models could not read, the decorator that turns the library's errors about bad input into messages for the
user, and the wiring of an endpoint twice: raising for API clients, showing its errors in the page's one message
area for the page (`endpoint`)."""

from __future__ import annotations

import contextlib
import functools
import html

import gradio as gr
import gradio.component_meta
from PIL import Image, UnidentifiedImageError

from workbench.errors import WorkbenchError
from workbench.inputs import read_image
from workbench.models.io import Checkpoint
from workbench.viz import MODEL_COLOURS

TEXT_LABELS = {"vqa": "question", "ve": "hypothesis", "nlvr": "statement about the two images"}
# the input images: file paths (`read_image` handles every mode, so Gradio converts nothing); PNG for
# images the app sends out (the default WebP is lossy)
IMAGE_INPUT = dict(type="filepath", image_mode=None, format="png", sources=["upload", "clipboard"])
EXAMPLE_COUNT = 6  # example texts offered under a text box
# event options: events that only repeat a public endpoint for the UI stay out of the API; Ask events share
# one queue; Attention and Errors use the analysis copies of the models, one event at a time
PRIVATE = dict(api_visibility="private")
ASK_QUEUE = dict(concurrency_id="ask")
ANALYSIS_QUEUE = dict(concurrency_id="analysis", concurrency_limit=1)


@contextlib.contextmanager
def _no_stub_files():
    """Gradio writes a `.pyi` stub beside the source file of every component subclass it sees defined
    (for custom-component packages); for `ImageInput` that would be a `ui.pyi` in the repository."""
    writer = getattr(gradio.component_meta, "create_or_modify_pyi", None)
    gradio.component_meta.create_or_modify_pyi = lambda *args, **kwargs: None
    try:
        yield
    finally:
        if writer is not None:
            gradio.component_meta.create_or_modify_pyi = writer


with _no_stub_files():

    class ImageInput(gr.Image):
        """`gr.Image` (same front end) whose upload errors read as a message for the user: Gradio's own
        pre-processing opens the file with PIL and would report a non-image as an internal error."""

        is_template = True  # drawn by the front end as a plain "image"; no __init__ of its own: Gradio
        # reads the component's properties off the signature of `gr.Image.__init__`

        def preprocess(self, payload):
            try:
                return super().preprocess(payload)
            except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
                # not raised here: a callback raises it (`read_inputs`), so the page shows it in its message area
                name = getattr(payload, "orig_name", None) or "the uploaded file"
                return Unreadable(f"{name} is not an image we can read ({e.__class__.__name__}); upload a PNG or JPEG")


class Unreadable(str):
    """An upload that is not an image: its message, for `read_inputs` to raise."""


def user_errors(fn):
    """Turn the library's errors about bad input into messages for the user (`gr.Error`)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except WorkbenchError as e:
            raise gr.Error(str(e)) from e

    return wrapper


# ------------------------------------------------------------------------------ errors in one message area


def error_text(e: Exception) -> str:
    """The message of a `gr.Error` (its `str` is quoted) or of a library error."""
    return getattr(e, "message", None) or str(e)


def message_markdown(text: str) -> str:
    """What the page's message area shows for an error (empty: no error)."""
    return f"⚠ **{html.escape(text)}**" if text else ""


def shown(fn, cleared: tuple, chained: bool = False):
    """`fn` for a page event: its outputs and an empty message; on an error, `cleared` (stale results emptied,
    controls left as they are) and the error for the page's message area. Gradio would instead pop up the error
    and badge every output of the failed event, controls included, and leave the previous answer in place.
    `chained`: the event follows another (`.then`), whose message it leaves in place when it succeeds."""

    @functools.wraps(fn)  # Gradio reads the signature (progress, event data) through `__wrapped__`
    def wrapper(*args, **kwargs):
        try:
            out = fn(*args, **kwargs)
        except (gr.Error, WorkbenchError) as e:
            return (*cleared, message_markdown(error_text(e)))
        return (*(out if isinstance(out, tuple) else (out,)), gr.update() if chained else "")

    return wrapper


def endpoint(fn, inputs: list, outputs: list, name: str, api_trigger, page_events, message, cleared: tuple, **opts):
    """`fn` twice: as the public endpoint `name` for API clients, on `api_trigger` (a hidden button no one
    clicks; errors are raised, as `gradio_client` expects), and on each (event, name) of `page_events` as a
    private page event (`shown`: errors in `message`, results `cleared`). Returns the page events' dependencies."""
    api_trigger.click(fn, inputs, outputs, api_name=name, **opts)
    page = shown(fn, cleared)
    outputs = [*outputs, message]
    return [event(page, inputs, outputs, api_name=private, **opts, **PRIVATE) for event, private in page_events]


# ------------------------------------------------------------------------------ a checkpoint's labels


def task_of(ck: Checkpoint) -> str:
    return ck.meta.get("task", "vqa")


def dataset_of(ck: Checkpoint) -> str:
    return ck.meta.get("dataset") or f"shapes-{task_of(ck)}"


def num_images(ck: Checkpoint) -> int:
    return int(ck.meta.get("num_images", 1))


def random_label(teacher: Checkpoint) -> str:
    return "Random easy-VQA test image" if dataset_of(teacher) == "easy-vqa" else "New random scene"


def kind_label(ck: Checkpoint) -> str:
    recipe = ck.meta.get("recipe")
    return f"{ck.path.name} · recipe {recipe}" if recipe else ck.path.name


def swatch(role: str) -> str:
    """A dot in the model's colour (`viz.MODEL_COLOURS`: the same in every plot of the app)."""
    return f'<span style="color:{MODEL_COLOURS[role]}">●</span>'


def teacher_head(teacher: Checkpoint) -> str:
    return f"#### {swatch('teacher')} Teacher · fusion encoder\n`{kind_label(teacher)}`"


def student_head(student: Checkpoint | None) -> str:
    if student is None:
        return "#### Student\n_none shipped_"
    return f"#### {swatch('student')} Student · dual encoder\n`{kind_label(student)}`"


# ------------------------------------------------------------------------------ inputs and answers


def read_inputs(teacher: Checkpoint, image, image2) -> tuple[Image.Image, Image.Image | None]:
    """The input image(s) the pair's task takes, read; a message for the user when one is missing."""
    for item in (image, image2):
        if isinstance(item, Unreadable):
            raise gr.Error(str(item))
    if image is None:
        raise gr.Error("Pick a sample image, upload one or make a random scene first.")
    if num_images(teacher) == 2:
        if image2 is None:
            raise gr.Error("This task compares two images: add the right-hand image too (or a random scene).")
        return read_image(image), read_image(image2)
    return read_image(image), None


def answer_text(result: dict, cached: bool | None = None) -> str:
    """A model's answer as one line: answer, confidence, latency (and the image-feature cache)."""
    text = f"**{html.escape(result['answer'])}** · {result['confidence']:.1%} · {result['latency_ms']:.1f} ms"
    if cached is not None:
        text += " (image features cached)" if cached else " (image features computed, now cached)"
    if result["truncated"]:
        text += "\n\n⚠ the text was cut to the model's token limit"
    return text


def _code(word: str) -> str:
    """A word as inline code (a code span shows its characters as they are; only a backtick would end it)."""
    return f"`{word.replace('`', chr(39))}`"


def coverage_markdown(results: dict[str, dict]) -> str:
    """What the models could not read ({role: `workbench.api.ask` result}): the question's words they never saw in
    training and the warnings (`workbench.coverage`), once when every model says the same, else per model."""
    lines = []
    unknown = {role: r.get("unknown_words") for role, r in results.items()}
    if len({tuple(w) if w is not None else None for w in unknown.values()}) == 1:
        words = next(iter(unknown.values()))
        if words:
            lines.append("Words never seen in training: " + ", ".join(map(_code, words)))
    else:
        for role, words in unknown.items():
            if words:
                lines.append(f"{role}: never saw " + ", ".join(map(_code, words)))
    warnings = {role: r.get("warnings") or [] for role, r in results.items()}
    common = [w for w in next(iter(warnings.values()), []) if all(w in ws for ws in warnings.values())]
    lines += [f"⚠ {html.escape(w, quote=False)}" for w in common]
    for role, ws in warnings.items():
        lines += [f"⚠ {role}: {html.escape(w, quote=False)}" for w in ws if w not in common]
    return "\n\n".join(lines)
