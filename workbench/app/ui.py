"""UI pieces every tab uses: the image input, labels read off a checkpoint's metadata, the answer line,
and the decorator that turns the library's errors about bad input into messages for the user."""

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
                name = getattr(payload, "orig_name", None) or "the uploaded file"
                raise gr.Error(
                    f"{name} is not an image we can read ({e.__class__.__name__}); upload a PNG or JPEG"
                ) from e


def user_errors(fn):
    """Turn the library's errors about bad input into messages for the user (`gr.Error`)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except WorkbenchError as e:
            raise gr.Error(str(e)) from e

    return wrapper


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


def teacher_head(teacher: Checkpoint) -> str:
    return f"#### Teacher · fusion encoder\n`{kind_label(teacher)}`"


def student_head(student: Checkpoint | None) -> str:
    if student is None:
        return "#### Student\n_none shipped_"
    return f"#### Student · dual encoder\n`{kind_label(student)}`"


# ------------------------------------------------------------------------------ inputs and answers


def read_inputs(teacher: Checkpoint, image, image2) -> tuple[Image.Image, Image.Image | None]:
    """The input image(s) the pair's task takes, read; a message for the user when one is missing."""
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
