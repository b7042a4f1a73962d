"""The workbench app: teacher and student side by side, live. Thin: every computation is a library call.

    python app.py [--port 7860] [--host 127.0.0.1]

Tabs (DESIGN.md §8): **Ask** (a sample, an upload or a random scene; both models' answers, top-5
bars, latency, the student's image-feature cache), **Attention** (both models' maps on the same
input, one colour scale), **Speed** (`workbench.bench` live), **Errors** (where teacher and student
disagree on a test split; a row opens in Ask / Attention), **Retrieval** (text -> the top-k images of
a gallery of shapes test scenes from a dual student's index, built once on first use; optionally
re-ranked by a fusion image-text matching teacher; timings and model sizes).

Every event has an `api_name`, so each function can be called with `gradio_client`; the public
endpoints are /ask, /random_example, /load_sample, /pick_example, /set_pair, /explain, /speed,
/errors, /open_example and /retrieve. Events that only repeat one of them for the UI (e.g. Ask again
after a random scene) are private.

Models are loaded once at start-up. Three sets of weights, so that nothing one event does to a model
(Captum's and the q/k captures' forward hooks, the benchmark's attention switch) can touch another
event's forward pass: the serving copies answer Ask (thread-safe: plain forward passes); the analysis
copies serve Attention and Errors, one event at a time; the benchmark copies its own at each run.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import functools
import html
import os
import random
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no telemetry calls
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# a server has no display: saying so spares every Gradio event's backend check an import of pyplot
# (about a second, paid by the first request)
os.environ.setdefault("MPLBACKEND", "agg")

import gradio as gr  # noqa: E402
import gradio.component_meta  # noqa: E402
from PIL import Image, UnidentifiedImageError  # noqa: E402

from workbench import viz  # noqa: E402
from workbench.api import ASSETS, ask, ask_cached, check_question, load_model, read_image  # noqa: E402
from workbench.data.samples import load_samples  # noqa: E402
from workbench.errors import WorkbenchError  # noqa: E402
from workbench.models.io import Checkpoint  # noqa: E402
from workbench.retrieval import DualEncoder, FusionMatcher, GalleryIndex, retrieval_parameters, size_mb  # noqa: E402

Pair = tuple[Checkpoint, Checkpoint | None]  # (fusion teacher, its dual student or None)

# teacher folder in assets/ -> display name, in this order
TASK_NAMES = {
    "shapes-vqa": "shapes VQA",
    "shapes-ve": "shapes entailment",
    "easy-vqa": "easy-VQA",
    "shapes-nlvr": "shapes NLVR (two images)",
}
TEXT_LABELS = {"vqa": "question", "ve": "hypothesis", "nlvr": "statement about the two images"}
METHOD_CHOICES = [
    ("raw attention", "attention"),
    ("rollout", "rollout"),
    ("relevancy", "relevancy"),
    ("integrated gradients", "ig"),
]
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
# Speed-tab settings for `workbench.bench.benchmark_pair` ("quick" is the bench's own QUICK)
BENCH_SETTINGS = {
    "quick": None,
    "standard": dict(batch_sizes=(1, 8, 32), retrieval_sizes=(10, 40, 160), min_run_time=0.2, budget_s=3.0),
}
# both models exported to ONNX Runtime (`workbench bench --runtime onnx`, the README table): lower per-call
# overhead, so batch 1 shows the dual encoder's advantage; exporting adds a few seconds per batch size
BENCH_SETTINGS["standard, ONNX Runtime"] = dict(BENCH_SETTINGS["standard"], runtime="onnx")
# the input images: file paths (`read_image` handles every mode, so Gradio converts nothing); PNG for
# images the app sends out (the default WebP is lossy)
IMAGE_INPUT = dict(type="filepath", image_mode=None, format="png", sources=["upload", "clipboard"])
ERRORS_N = 600  # test examples compared in the Errors tab (100 per shapes question type)
# The Retrieval tab's models in assets/: the MCAD student (a dual encoder) and the fusion teacher with an
# image-text matching head that re-ranks its top k. Teachers of RETRIEVAL_TASKS serve only that tab (not Ask).
RETRIEVAL_STUDENT = "shapes-retrieval-student"
RETRIEVAL_FUSION = "shapes-itm-teacher"
RETRIEVAL_TASKS = ("shapes-itm", "shapes-retrieval")
RETRIEVAL_BUILD = (
    "`workbench experiment mcad` (the two teachers and the students; `--preset smoke` runs the pipeline in "
    "minutes), then `cp -r runs/mcad/students/mcad-seed0/model assets/shapes-retrieval-student` and "
    "`cp -r runs/mcad/teachers/fusion-itm/model assets/shapes-itm-teacher`"
)
RETRIEVAL_GALLERY = 300  # shapes test scenes in the Retrieval tab's gallery (`python app.py --gallery-size`)
RETRIEVAL_MAX_K = 24
ERROR_HEADERS = ["#", "type", "question", "gold", "teacher", "student", "attention KL"]
EXAMPLE_COUNT = 6


@contextlib.contextmanager
def _no_stub_files():
    """Gradio writes a `.pyi` stub beside the source file of every component subclass it sees defined
    (for custom-component packages); for `ImageInput` that would be an `app.pyi` in the repository."""
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


# ------------------------------------------------------------------------------------------ loading


def shipped_pairs(assets: Path = ASSETS) -> dict[str, tuple[Path, Path | None]]:
    """Every shipped teacher (`<task>-teacher`) with its student (`<task>-student`) if one is shipped,
    plus any other shipped student of it (`<task>-student-<recipe>`, e.g. the no-distillation baseline)
    as a pair of its own. Display name -> (teacher folder, student folder or None)."""
    order = list(TASK_NAMES)
    tasks = sorted(p.name.removesuffix("-teacher") for p in assets.glob("[!.]*-teacher") if p.is_dir())
    tasks = [task for task in tasks if task not in RETRIEVAL_TASKS]  # the Retrieval tab's models
    tasks.sort(key=lambda task: order.index(task) if task in order else len(order))
    pairs, extra = {}, {}
    for task in tasks:
        t, name = assets / f"{task}-teacher", TASK_NAMES.get(task, task)
        main = assets / f"{task}-student"
        pairs[name] = (t, main if main.is_dir() else None)
        for s in sorted(assets.glob(f"{task}-student-*")):
            if s.is_dir():
                extra[f"{name} · {s.name[len(task) + 1 :]}"] = (t, s)
    return {**pairs, **extra}


def load_pairs(paths: dict[str, tuple[Path, Path | None]]) -> dict[str, Pair]:
    """Load every checkpoint once (a teacher shared by several pairs is loaded once)."""
    loaded: dict[Path, Checkpoint] = {}

    def get(p: Path) -> Checkpoint:
        if p not in loaded:
            loaded[p] = load_model(p)
        return loaded[p]

    return {name: (get(t), get(s) if s is not None else None) for name, (t, s) in paths.items()}


@dataclasses.dataclass
class RetrievalModels:
    """The Retrieval tab's models: a dual encoder whose image index answers text queries, and optionally a
    fusion teacher with an image-text matching head ("match" among its labels) that re-ranks the top k.
    `note`: why a shipped one could not be loaded."""

    student: Checkpoint | None = None
    fusion: Checkpoint | None = None
    note: str = ""


def retrieval_gallery_name(student) -> str:
    """The test gallery the student was trained for (its checkpoint records it); a student without a shapes
    retrieval dataset (a CLIP folder, a Karpathy-trained one) gets the default, the hard gallery: each scene
    beside three variants with one object changed, so the results show whether a model tells "a red circle at
    top left" from "a red square at top left"."""
    from workbench.data import RETRIEVAL_DATASETS

    name = student.meta.get("dataset") if student is not None else None
    return name if name in RETRIEVAL_DATASETS else RETRIEVAL_DATASETS[0]


def load_retrieval(student: Path | None = None, fusion: Path | None = None, assets: Path = ASSETS) -> RetrievalModels:
    """The given folders, else the shipped `RETRIEVAL_STUDENT` / `RETRIEVAL_FUSION` when present. A folder
    that does not load is reported in `note`, not raised: the rest of the app serves without it."""
    from workbench.models.clip import load_dual_encoder
    from workbench.models.io import load_checkpoint

    student = Path(student) if student else assets / RETRIEVAL_STUDENT
    fusion = Path(fusion) if fusion else assets / RETRIEVAL_FUSION
    models, notes = RetrievalModels(), []
    if student.is_dir():
        try:
            models.student = load_dual_encoder(student)
            models.student.model.eval()
        except WorkbenchError as e:
            notes.append(f"The retrieval student {student} did not load: {e}")
    if fusion.is_dir():
        try:
            ck = load_checkpoint(fusion, kind="fusion")
        except WorkbenchError as e:
            notes.append(f"The fusion teacher {fusion} did not load: {e}")
        else:
            if "match" in ck.labels:
                models.fusion = ck
            else:
                notes.append(f"The fusion teacher {fusion} has no image-text matching head (no 'match' label).")
    models.note = " ".join(notes)
    return models


def warm_up(pairs: dict[str, Pair]) -> None:
    """One query per model, so the first user's request does not pay for lazy initialisation."""
    blank = Image.new("RGB", (64, 64), "white")
    for teacher, student in pairs.values():
        second = blank if _num_images(teacher) == 2 else None
        ask(teacher, blank, "is there a red circle?", second_image=second)
        if student is not None:
            ask(student, blank, "is there a red circle?", second_image=second)


# ------------------------------------------------------------------------------------------ helpers


def _task(ck: Checkpoint) -> str:
    return ck.meta.get("task", "vqa")


def _dataset_name(ck: Checkpoint) -> str:
    return ck.meta.get("dataset") or f"shapes-{_task(ck)}"


def _num_images(ck: Checkpoint) -> int:
    return int(ck.meta.get("num_images", 1))


def _random_label(teacher: Checkpoint) -> str:
    return "Random easy-VQA test image" if _dataset_name(teacher) == "easy-vqa" else "New random scene"


def _kind_label(ck: Checkpoint) -> str:
    recipe = ck.meta.get("recipe")
    return f"{ck.path.name} · recipe {recipe}" if recipe else ck.path.name


def _user_errors(fn):
    """Turn the library's errors about bad input into messages for the user (`gr.Error`)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except WorkbenchError as e:
            raise gr.Error(str(e)) from e

    return wrapper


def _copy(ck: Checkpoint | None) -> Checkpoint | None:
    """Same weights and tokenizer, a model object of its own."""
    return None if ck is None else dataclasses.replace(ck, model=copy.deepcopy(ck.model).eval())


def _read_inputs(teacher: Checkpoint, image, image2) -> tuple[Image.Image, Image.Image | None]:
    if image is None:
        raise gr.Error("Pick a sample image, upload one or make a random scene first.")
    if _num_images(teacher) == 2:
        if image2 is None:
            raise gr.Error("This task compares two images: add the right-hand image too (or a random scene).")
        return read_image(image), read_image(image2)
    return read_image(image), None


def _answer_text(result: dict, cached: bool | None = None) -> str:
    text = f"**{html.escape(result['answer'])}** · {result['confidence']:.1%} · {result['latency_ms']:.1f} ms"
    if cached is not None:
        text += " (image features cached)" if cached else " (image features computed, now cached)"
    if result["truncated"]:
        text += "\n\n⚠ the text was cut to the model's token limit"
    return text


# ------------------------------------------------------------------------------------------ the app


def build_app(
    pairs: dict[str, Pair],
    samples: list[dict],
    errors_n: int = ERRORS_N,
    bench_settings: dict | None = None,
    retrieval: RetrievalModels | None = None,
    gallery_size: int = RETRIEVAL_GALLERY,
) -> gr.Blocks:
    """The Blocks app over `pairs` (display name -> (teacher, student or None) checkpoints) and
    `samples` (`workbench.data.samples.load_samples`). `errors_n`: test examples the Errors tab
    compares; `bench_settings`: the Speed tab's settings by name (default `BENCH_SETTINGS`);
    `retrieval`: the Retrieval tab's models (default: the shipped ones, `load_retrieval()`);
    `gallery_size`: the shapes test scenes its gallery holds."""
    if not pairs:
        raise WorkbenchError(f"no shipped teacher checkpoints found in {ASSETS}; run `make rebuild`")
    if gallery_size < 1:
        raise ValueError(f"gallery_size must be at least 1, got {gallery_size}")
    retrieval = load_retrieval() if retrieval is None else retrieval
    names = list(pairs)
    analysis = {name: (_copy(t), _copy(s)) for name, (t, s) in pairs.items()}  # see the module docstring
    settings_by_name = dict(bench_settings or BENCH_SETTINGS)  # None: the bench's own QUICK settings
    # texts the app itself put in the question box: replaced when the input changes (a user's own is kept)
    suggested = {q for s in samples for q in s.get("questions", []) + s.get("hypotheses", [])}
    datasets: dict[tuple[str, int | None], object] = {}
    error_rows: dict[str, tuple[list[dict], Path]] = {}  # pair -> (compared rows, their CSV)
    export_dir = Path(tempfile.mkdtemp(prefix="workbench-app-"))

    def get_pair(name: str, which: dict = pairs) -> Pair:
        if name not in which:
            raise gr.Error(f"Unknown task / model pair {name!r}; choose one of {names}.")
        return which[name]

    def dataset(ck: Checkpoint, size: int | None):
        from workbench.data import load_dataset

        key = (_dataset_name(ck), size)
        if key not in datasets:
            datasets[key] = load_dataset(key[0], "test", size)
        return datasets[key]

    def suggest(text: str) -> str:
        if len(suggested) < 10_000:  # bounded: random scenes keep adding texts
            suggested.add(text)
        return text

    def ours(question) -> bool:
        return not (question or "").strip() or question in suggested

    def samples_for(teacher: Checkpoint) -> list[dict]:
        name = _dataset_name(teacher)
        source = "easy-vqa" if name == "easy-vqa" else "shapes" if name.startswith("shapes") else None
        return [s for s in samples if s.get("source") == source] or samples

    def examples_for(teacher: Checkpoint, sample: dict | None) -> list[str]:
        task = _task(teacher)
        texts = []
        if sample is not None and task in ("vqa", "ve"):
            texts = sample.get("hypotheses" if task == "ve" else "questions", [])
        if not texts:  # e.g. NLVR statements, or hypotheses for an easy-VQA image: the test split's own
            data = dataset(teacher, EXAMPLE_COUNT)
            texts = [suggest(data[i].text) for i in range(min(EXAMPLE_COUNT, len(data)))]
        return list(texts)[:EXAMPLE_COUNT]

    def attention_shape(name: str) -> tuple[int, int]:
        """(layers, heads) both models have; layers are aligned at the end, as DiDE pairs them. Read off
        the configs: importing `workbench.explain` (Captum) here would cost start-up time."""

        def shape(m):
            if hasattr(m, "config"):  # fusion teacher
                return m.config.num_hidden_layers, m.config.num_attention_heads
            depth = min(m.vision_config.num_hidden_layers, m.text_config.num_hidden_layers)
            return depth, m.text_config.num_attention_heads

        shapes = [shape(ck.model) for ck in get_pair(name) if ck is not None]
        return min(s[0] for s in shapes), min(s[1] for s in shapes)

    # ------------------------------------------------------------------ Ask

    @_user_errors
    def answer(pair_name: str, image, image2, question: str):
        """Both models' answers: text (answer, confidence, latency), top-5 bars."""
        teacher, student = get_pair(pair_name)
        img, img2 = _read_inputs(teacher, image, image2)
        question = check_question(question)
        t = ask(teacher, img, question, second_image=img2)
        t_plot = viz.top_answers_bar(t["top"], title=f"teacher: {t['answer']}")
        if student is None:
            return _answer_text(t), t_plot, "_no student shipped for this task yet_", None
        s = ask_cached(student, img, question, second_image=img2)
        s_plot = viz.top_answers_bar(s["top"], title=f"student: {s['answer']}")
        return _answer_text(t), t_plot, _answer_text(s, s["cache_hit"]), s_plot

    @_user_errors
    def random_example(pair_name: str):
        """A new random test scene (or easy-VQA test image) with a question of the pair's task."""
        teacher, _ = get_pair(pair_name)
        name = _dataset_name(teacher)
        data = dataset(teacher, None if name == "easy-vqa" else 1_000_000)  # shapes: scenes made on access
        i = random.randrange(len(data))
        ex = data[i]
        gold = data.labels[ex.label]
        what = "easy-VQA test image" if name == "easy-vqa" else "random test scene"
        info = f"{what} #{i} · {html.escape(ex.qtype)} · the generator's answer: **{html.escape(gold)}**"
        second = ex.images[1] if len(ex.images) > 1 else None
        return ex.images[0], second, suggest(ex.text), info

    @_user_errors
    def load_sample(pair_name: str, index: int, question: str):
        """Sample `index` of the gallery shown for this pair: image, example questions, question."""
        teacher, _ = get_pair(pair_name)
        shown = samples_for(teacher)
        if index is None or not 0 <= int(index) < len(shown):
            raise gr.Error(f"No sample #{index}; there are {len(shown)}.")
        sample = shown[int(index)]
        examples = examples_for(teacher, sample)
        if examples and ours(question):
            question = examples[0]
        second = gr.update()
        if _num_images(teacher) == 2:
            second = shown[(int(index) + 1) % len(shown)]["path"]
        return (
            sample["path"],
            second,
            question,
            gr.Dataset(samples=[[q] for q in examples]),
            f"sample `{sample['file']}`",
        )

    def pick_example(example):
        """The clicked example question (through the API: its index in this session's examples)."""
        return example[0] if isinstance(example, (list, tuple)) else example

    @_user_errors
    def set_pair(pair_name: str, question: str = ""):
        """Everything that depends on the chosen pair, reset; the question becomes one of the pair's
        examples unless the user typed their own."""
        teacher, student = get_pair(pair_name)
        shown = samples_for(teacher)
        examples = examples_for(teacher, shown[0] if shown else None)
        if examples and ours(question):
            question = examples[0]
        layers, heads = attention_shape(pair_name)
        task = _task(teacher)
        two = _num_images(teacher) == 2
        qtypes = ["all", *teacher.meta.get("qtypes", [])]
        s_head = f"#### Student · dual encoder\n`{_kind_label(student)}`" if student else "#### Student\n_none shipped_"
        return (
            gr.Dataset(samples=[[s["path"]] for s in shown]),
            gr.Dataset(samples=[[q] for q in examples]),
            gr.update(value=_random_label(teacher)),
            gr.update(label="left image" if two else "image"),
            gr.update(visible=two),
            gr.update(value=question, label=TEXT_LABELS.get(task, "question")),
            f"#### Teacher · fusion encoder\n`{_kind_label(teacher)}`",
            s_head,
            "",
            None,
            "",
            None,
            gr.update(maximum=layers, value=layers),
            gr.update(choices=["mean", *[str(h) for h in range(1, heads + 1)]], value="mean"),
            gr.update(choices=[("all question words", "all")], value="all"),
            None,
            "",
            gr.update(choices=qtypes, value="all"),
            "",
            None,
            None,
        )

    # ------------------------------------------------------------------ Attention

    @_user_errors
    def explain_pair(pair_name, image, image2, question, method, layer, head, word):
        """Teacher and student maps of one method on the current input, one colour scale."""
        from workbench.explain import encode, explain, map_agreement, normalise_map, question_map, word_map

        started = time.perf_counter()
        teacher, student = get_pair(pair_name, analysis)
        img, img2 = _read_inputs(teacher, image, image2)
        question = check_question(question)
        if method not in dict((v, k) for k, v in METHOD_CHOICES):
            raise gr.Error(f"Unknown method {method!r}.")
        if method == "ig" and img2 is not None:
            raise gr.Error("Integrated Gradients supports one-image models only; pick another method for NLVR.")
        layers, heads = attention_shape(pair_name)
        layer = min(max(int(layer or layers), 1), layers)
        layer_index = layer - layers - 1  # counted from the end in both models
        head_index = None if head in (None, "", "mean") else int(head) - 1
        if head_index is not None and not 0 <= head_index < heads:
            raise gr.Error(f"No head {head}; the models have {heads}.")
        maps, tokens, w = {}, None, None
        for role, ck in (("teacher", teacher), ("student", student)):
            if ck is None:
                continue
            batch = encode(ck.model, ck.tokenizer, img, question, second_image=img2)
            res = explain(ck.model, batch, ck.tokenizer, (method,), layer=layer_index)[method]
            answer_text = ask(ck, img, question, second_image=img2)["answer"]
            if tokens is None:  # the teacher's tokens name the words (the student shares its tokenizer)
                tokens = res["tokens"]
                w = _word_index(word, tokens) if method == "attention" else None
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
        if method == "attention":
            what = f"'{tokens[w]}'" if w is not None else "question words"
            heads_text = "heads averaged" if head_index is None else f"head {head_index + 1}"
            title = f"{what} → image<br><sup>layer {layer} of {layers} · {heads_text}</sup>"
        else:
            title = dict((v, k) for k, v in METHOD_CHOICES)[method]
        fig = viz.patch_maps_side_by_side(
            maps,
            title=title,
            image=img,
            colorscale="RdBu_r" if method == "ig" else "Viridis",
            symmetric=method == "ig",
            zlabel="attention" if method == "attention" else "share",
        )
        lines = [f"*{html.escape(question)}*", METHOD_NOTES[method]]
        if len(maps) == 2:
            agree = map_agreement(*maps.values())
            kl = "" if method == "ig" else f"KL {agree['kl']:.3f}, "  # KL would drop IG's negative part
            lines.append(f"Teacher vs student map: {kl}Spearman ρ {agree['spearman']:.2f}.")
        if img2 is not None:
            lines.append("Maps are over the left image.")
        lines.append(f"_{(time.perf_counter() - started) * 1000:.0f} ms_")
        word_choices = [("all question words", "all")] + [
            (f"{i}: {t}", f"{i}:{t}") for i, t in enumerate(tokens) if 0 < i < len(tokens) - 1
        ]
        on = method == "attention"
        return (
            fig,
            "\n\n".join(lines),
            gr.update(choices=word_choices, value=f"{w}:{tokens[w]}" if w is not None else "all", interactive=on),
            gr.update(interactive=on),
            gr.update(interactive=on),
        )

    # ------------------------------------------------------------------ Speed

    @_user_errors
    def speed(pair_name: str, settings: str, progress=gr.Progress()):
        """`workbench.bench.benchmark_pair` on copies of the pair's models, with a progress bar."""
        from workbench.bench import PATHS, QUICK, benchmark_pair, speed_table

        teacher, student = get_pair(pair_name)
        if student is None:
            raise gr.Error("No student is shipped for this task yet: nothing to compare the teacher with.")
        if settings not in settings_by_name:
            raise gr.Error(f"Unknown settings {settings!r}; choose one of {list(settings_by_name)}.")
        cfg = dict(settings_by_name[settings] or QUICK)
        retrieval = len(cfg.get("retrieval_sizes", ())) if _num_images(teacher) == 1 else 0
        total = len(PATHS) * len(cfg.get("batch_sizes", (1,))) + 2 * retrieval
        done = [0]

        def step(message: str) -> None:
            done[0] += 1
            progress((done[0], total), desc=message)

        progress(0, desc="copying the models and preparing inputs")
        result = benchmark_pair(_copy(teacher), _copy(student), progress=step, **cfg)
        load = result["machine"].get("load_average_1min_at_start")
        note = f"\n\nLoad average when the run started: {load} (other work on the machine slows every path)."
        fig = viz.speed_bars(result).update_layout(width=None, autosize=True)  # as wide as the tab
        return fig, speed_table(result) + (note if load is not None else "")

    # ------------------------------------------------------------------ Errors

    @_user_errors
    def errors(pair_name: str, qtype: str, wrong: str, progress=gr.Progress(track_tqdm=True)):
        """Examples of the test split where teacher and student answer differently (computed once)."""
        from workbench.data import Collator
        from workbench.evaluate import accuracy_by_type, compare_models, disagreements, export_rows

        teacher, student = get_pair(pair_name, analysis)
        if student is None:
            raise gr.Error("No student is shipped for this task yet: nothing to compare the teacher with.")
        if pair_name not in error_rows:
            progress(0, desc=f"comparing teacher and student on {errors_n} test examples")
            rows = compare_models(
                teacher.model,
                student.model,
                dataset(teacher, errors_n),
                Collator.for_model(teacher.model, teacher.tokenizer),
                student_collator=Collator.for_model(student.model, student.tokenizer),
                progress=True,  # a tqdm bar, which gr.Progress(track_tqdm=True) shows
            )
            slug = "".join(c if c.isalnum() else "-" for c in pair_name).strip("-")
            error_rows[pair_name] = rows, export_rows(rows, export_dir / f"{slug}-teacher-vs-student.csv")
        rows, csv = error_rows[pair_name]
        stats = accuracy_by_type(rows)
        all_dis = disagreements(rows)
        shown = disagreements(
            rows, None if qtype in (None, "", "all") else qtype, None if wrong in (None, "", "any") else wrong
        )
        table = [
            [
                r["index"],
                r["qtype"],
                r["text"],
                r["gold"],
                f"{r['teacher_answer']} ({r['teacher_confidence']:.0%})",
                f"{r['student_answer']} ({r['student_confidence']:.0%})",
                None if r["kl"] != r["kl"] else round(r["kl"], 3),
            ]
            for r in shown
        ]
        o = stats["overall"]
        summary = (
            f"{o['n']} test examples of `{_dataset_name(teacher)}`: teacher {o['teacher']:.1%}, "
            f"student {o['student']:.1%}, same answer {o['agree']:.1%}. **{len(all_dis)} disagreements**, "
            f"{len(shown)} shown (most confident student first). Click a row to open it."
        )
        types = ["all", *stats["per_type"]]
        return (
            summary,
            viz.accuracy_by_type_bar(stats["per_type"], models=("teacher", "student", "agree")),
            {"headers": ERROR_HEADERS, "data": table},
            str(csv),
            gr.update(choices=types, value=qtype if qtype in types else "all"),
        )

    @_user_errors
    def open_example(pair_name: str, index, target: str = "Ask"):
        """Test example `index` (a row of the Errors table) into the inputs; switch to `target`."""
        teacher, _ = get_pair(pair_name)
        data = dataset(teacher, errors_n)
        if index is None or not 0 <= int(index) < len(data):
            raise gr.Error(f"No test example #{index}; the Errors tab compares examples 0 to {len(data) - 1}.")
        ex = data[int(index)]
        info = f"test example #{int(index)} · {html.escape(ex.qtype)} · gold answer: **{data.labels[ex.label]}**"
        second = ex.images[1] if len(ex.images) > 1 else None
        tab = "attention" if str(target).lower() == "attention" else "ask"
        return ex.images[0], second, suggest(ex.text), info, gr.Tabs(selected=tab)

    def open_row(pair_name: str, target: str, evt: gr.SelectData):
        """A click in the Errors table: open that row's example (the row's first cell is its index)."""
        if not evt.row_value:
            raise gr.Error("Click a row of the table.")
        return open_example(pair_name, int(evt.row_value[0]), target)

    # ------------------------------------------------------------------ Retrieval

    ret_student, ret_fusion = retrieval.student, retrieval.fusion
    ret_encoder = DualEncoder(ret_student.model, ret_student.tokenizer) if ret_student else None
    matcher = FusionMatcher(ret_fusion.model, ret_fusion.tokenizer, ret_fusion.labels) if ret_fusion else None
    ret_gallery = None
    if ret_encoder is not None:
        from workbench.data import load_dataset
        from workbench.retrieval import gallery_from

        ret_gallery = gallery_from(load_dataset(retrieval_gallery_name(ret_student), "test", gallery_size))
    ret_index: dict[str, GalleryIndex] = {}  # "index": built on the first query
    ret_lock = threading.Lock()
    sizes = {}
    if ret_student is not None:
        n = retrieval_parameters(ret_student.model)
        sizes["student"] = {"name": ret_student.path.name, "params": n, "size_mb": size_mb(n)}
    if ret_fusion is not None:
        n = sum(p.numel() for p in ret_fusion.model.parameters())
        sizes["fusion"] = {"name": ret_fusion.path.name, "params": n, "size_mb": size_mb(n)}

    def size_text(role: str) -> str:
        m = sizes[role]
        return f"`{m['name']}` ({m['params'] / 1e6:.2f} M parameters, {m['size_mb']:.1f} MB fp32)"

    def retrieval_header() -> str:
        if ret_encoder is None:
            lines = [
                "**No retrieval student is loaded, so this tab cannot search yet.**",
                f"Build one with {RETRIEVAL_BUILD}, then restart the app.",
            ]
        else:
            lines = [
                f"Text → images over a gallery of **{ret_gallery.n_images} shapes test scenes**, in groups of four: "
                "a scene and three copies with one object's colour, shape or place changed. The dual student "
                f"{size_text('student')} embeds every gallery image once into an index (on the first query); a "
                "query then costs one text encoding and one matrix product. Independent of the task / model pair "
                "above."
            ]
            if matcher is not None:
                lines.append(
                    f"The fusion teacher {size_text('fusion')} can re-rank the top k by its image-text matching "
                    "score: k joint passes per query, where scoring the whole gallery would take one per image."
                )
            else:
                lines.append(f"No fusion teacher is loaded, so re-ranking is off (it is `assets/{RETRIEVAL_FUSION}`).")
        if retrieval.note:
            lines.append(f"⚠ {html.escape(retrieval.note)}")
        return "\n\n".join(lines)

    def gallery_index(progress) -> tuple[GalleryIndex, bool]:
        """The student's index over the gallery, built on first use (once, whichever event comes first)."""
        with ret_lock:
            if "index" in ret_index:
                return ret_index["index"], False
            progress(0, desc=f"embedding the {ret_gallery.n_images} gallery images once")
            built = GalleryIndex.build(ret_encoder, ret_gallery, progress=True)  # a tqdm bar gr.Progress shows
            built.search("warm-up", 1)  # the first real query's timings should not include lazy set-up
            ret_index["index"] = built
            return built, True

    def display(image: Image.Image) -> Image.Image:
        """A gallery render scaled up with crisp pixels for the page (at least 128 pixels a side)."""
        factor = max(1, -(-128 // max(image.size)))
        return image.resize((image.width * factor, image.height * factor), Image.NEAREST)

    @_user_errors
    def retrieve(query: str, k, rerank: bool, progress=gr.Progress(track_tqdm=True)):
        """The top-k gallery images for a text query from the dual student's index (built on first use),
        optionally re-ranked by the fusion teacher; the timing of every stage and the models' sizes."""
        if ret_encoder is None:
            raise gr.Error(f"No retrieval student is loaded. Build one with {RETRIEVAL_BUILD}, then restart the app.")
        query = check_question(query, "query")
        try:
            k = int(k)
        except (TypeError, ValueError):
            raise gr.Error(f"k must be a whole number from 1 to {RETRIEVAL_MAX_K}, got {k!r}.") from None
        if not 1 <= k <= RETRIEVAL_MAX_K:
            raise gr.Error(f"k must be from 1 to {RETRIEVAL_MAX_K}, got {k}.")
        if rerank and matcher is None:
            raise gr.Error(
                f"No fusion teacher is loaded, so there is nothing to re-rank with (assets/{RETRIEVAL_FUSION})."
            )
        index, built_now = gallery_index(progress)
        out = index.search(query, k, matcher if rerank else None)
        gold = out["gold"]
        timings = {"index": 1e3 * index.seconds, **out["timings_ms"]}
        items, rows = [], []
        for r in out["results"]:
            label = f"#{r['rank']} · cos {r['similarity']:.3f}"
            if out["reranked"]:
                label = f"#{r['rank']} · P(match) {r['match_prob']:.2f} · was #{r['dual_rank']}"
            if gold is not None and r["image"] == gold["image"]:
                label = f"✓ {label}"  # the image the query describes
            items.append((display(ret_gallery.load_image(r["image"])), label))
            rows.append({**r, "caption": index.caption(r["image"])})
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
        if gold is not None:
            where = "" if gold["rank"] <= out["k"] else f", outside the top {out['k']}"
            lines.append(
                f"The query is the caption of gallery image #{gold['image']}: it ranks **{gold['rank']}**{where}."
            )
        models = f"**Models**: student {size_text('student')}"
        if out["reranked"]:
            models += f"; fusion teacher {size_text('fusion')}"
        lines.append(models + ".")
        data = {
            "query": query,
            "k": out["k"],
            "reranked": out["reranked"],
            "results": rows,
            "gold": gold,
            "timings_ms": {name: round(v, 4) for name, v in timings.items()},
            "index": {"n_images": len(index), "backend": index.index.backend, "built_now": built_now},
            "models": {role: m for role, m in sizes.items() if role == "student" or out["reranked"]},
        }
        title = f"timings · {len(index)} images, top {out['k']}" + (" re-ranked" if out["reranked"] else "")
        return items, "\n\n".join(lines), viz.retrieval_timings(timings, title), data

    # ------------------------------------------------------------------ layout

    first_teacher, first_student = pairs[names[0]]
    first_samples = samples_for(first_teacher)
    first_examples = examples_for(first_teacher, first_samples[0] if first_samples else None)
    layers0, heads0 = attention_shape(names[0])
    two0 = _num_images(first_teacher) == 2

    with gr.Blocks(title="VL distillation workbench") as demo:
        gr.Markdown(
            "# VL distillation workbench\n"
            "A slow **fusion teacher** (image patches and words in one transformer) beside the fast "
            "**dual-encoder student** distilled from it (separate towers, image features cacheable)."
        )
        pair = gr.Dropdown(names, value=names[0], label="task / model pair", elem_id="pair")
        with gr.Tabs(selected="ask") as tabs:
            with gr.Tab("Ask", id="ask"):
                with gr.Row():
                    with gr.Column(scale=2):
                        gallery = gr.Dataset(
                            components=["image"],
                            samples=[[s["path"]] for s in first_samples],
                            type="index",
                            layout="gallery",
                            samples_per_page=12,
                            label="sample images (click one)",
                            elem_id="samples",
                        )
                        with gr.Row():
                            image = ImageInput(
                                **IMAGE_INPUT,
                                value=first_samples[0]["path"] if first_samples else None,
                                label="left image" if two0 else "image",
                                height=220,
                                elem_id="image",
                            )
                            image2 = ImageInput(
                                **IMAGE_INPUT,
                                label="right image",
                                height=220,
                                visible=two0,
                                elem_id="image2",
                            )
                        random_btn = gr.Button(_random_label(first_teacher), elem_id="random")
                        source_info = gr.Markdown(elem_id="source-info")
                        question = gr.Textbox(
                            value=first_examples[0] if first_examples else "",
                            label=TEXT_LABELS.get(_task(first_teacher), "question"),
                            max_lines=3,
                            elem_id="question",
                        )
                        examples = gr.Dataset(
                            components=[question],
                            samples=[[q] for q in first_examples],
                            type="values",
                            label="examples (click to ask)",
                            elem_id="examples",
                        )
                        ask_btn = gr.Button("Ask", variant="primary", elem_id="ask")
                    with gr.Column(scale=3):
                        with gr.Row():
                            with gr.Column():
                                t_head = gr.Markdown(f"#### Teacher · fusion encoder\n`{_kind_label(first_teacher)}`")
                                t_text = gr.Markdown(elem_id="teacher-answer")
                                t_plot = gr.Plot(label="teacher: top 5", elem_id="teacher-top")
                            with gr.Column():
                                s_head = gr.Markdown(
                                    f"#### Student · dual encoder\n`{_kind_label(first_student)}`"
                                    if first_student
                                    else "#### Student\n_none shipped_"
                                )
                                s_text = gr.Markdown(elem_id="student-answer")
                                s_plot = gr.Plot(label="student: top 5", elem_id="student-top")
            with gr.Tab("Attention", id="attention") as attention_tab:
                gr.Markdown(
                    "Teacher and student maps of the same input (the one in **Ask**), side by side on one "
                    "colour scale. Layer, head and word apply to raw attention."
                )
                with gr.Row():
                    method = gr.Radio(METHOD_CHOICES, value="attention", label="method", elem_id="method")
                    layer = gr.Slider(1, layers0, value=layers0, step=1, label="layer", elem_id="layer")
                    head = gr.Dropdown(
                        ["mean", *[str(h) for h in range(1, heads0 + 1)]], value="mean", label="head", elem_id="head"
                    )
                    word = gr.Dropdown(
                        [("all question words", "all")], value="all", label="word", allow_custom_value=True
                    )
                    explain_btn = gr.Button("Explain", variant="primary", elem_id="explain")
                att_plot = gr.Plot(label="maps", elem_id="attention-plot")
                att_text = gr.Markdown(elem_id="attention-info")
            with gr.Tab("Speed", id="speed"):
                gr.Markdown(
                    "Per-query latency (batch 1) and throughput of the teacher, the student end to end and the "
                    "student with its image features cached, plus retrieval over N images x N texts; "
                    "`torch.utils.benchmark` on copies of the models, in PyTorch or with both models exported to "
                    "ONNX Runtime. Background work on the machine slows "
                    "every path."
                )
                with gr.Row():
                    settings = gr.Radio(list(settings_by_name), value="quick", label="settings", elem_id="settings")
                    speed_btn = gr.Button("Run benchmark", variant="primary", elem_id="run-speed")
                speed_plot = gr.Plot(label="speed", elem_id="speed-plot")
                speed_text = gr.Markdown(elem_id="speed-table")
            with gr.Tab("Errors", id="errors") as errors_tab:
                gr.Markdown(
                    f"Where teacher and student answer differently on the first {errors_n} examples of the test "
                    "split (computed on first use, then kept). Clicking a row opens the example."
                )
                with gr.Row():
                    qtype = gr.Dropdown(
                        ["all", *first_teacher.meta.get("qtypes", [])], value="all", label="question type"
                    )
                    wrong = gr.Radio(
                        [("any", "any"), ("student wrong", "student"), ("teacher wrong", "teacher")],
                        value="any",
                        label="show",
                    )
                    target = gr.Radio(["Ask", "Attention"], value="Attention", label="open a row in")
                    errors_btn = gr.Button("Find disagreements", variant="primary", elem_id="find-errors")
                err_text = gr.Markdown(elem_id="errors-summary")
                err_table = gr.Dataframe(
                    headers=ERROR_HEADERS,
                    interactive=False,
                    wrap=True,
                    max_height=420,
                    column_widths=["6%", "11%", "41%", "9%", "13%", "13%", "7%"],
                    elem_id="errors-table",
                )
                with gr.Row():
                    err_plot = gr.Plot(label="accuracy and agreement by type", elem_id="errors-plot")
                    with gr.Column():
                        err_file = gr.File(label="every compared example (CSV)")
                        open_index = gr.Number(label="test example #", precision=0, minimum=0)
                        open_btn = gr.Button("Open example")
            with gr.Tab("Retrieval", id="retrieval"):
                gr.Markdown(retrieval_header(), elem_id="retrieval-models")
                with gr.Row():
                    ret_query = gr.Textbox(
                        value=ret_gallery.texts[0] if ret_gallery else "",
                        label="text query",
                        max_lines=2,
                        scale=4,
                        elem_id="retrieval-query",
                    )
                    ret_k = gr.Slider(1, RETRIEVAL_MAX_K, value=8, step=1, label="top k", elem_id="retrieval-k")
                    ret_rerank = gr.Checkbox(
                        False,
                        label="re-rank the top k with the fusion teacher",
                        interactive=matcher is not None,
                        elem_id="retrieval-rerank",
                    )
                    retrieve_btn = gr.Button(
                        "Search", variant="primary", interactive=ret_encoder is not None, elem_id="retrieve"
                    )
                ret_examples = gr.Dataset(
                    components=[ret_query],
                    samples=[[t] for t in (ret_gallery.texts[:EXAMPLE_COUNT] if ret_gallery else [])],
                    type="values",
                    label="captions of gallery images (click to search)",
                    elem_id="retrieval-examples",
                    visible=ret_gallery is not None,
                )
                ret_results = gr.Gallery(
                    label="top k, best first",
                    columns=6,
                    height=470,
                    object_fit="contain",
                    format="png",
                    elem_id="retrieval-gallery",
                )
                with gr.Row():
                    ret_info = gr.Markdown(elem_id="retrieval-info")
                    ret_plot = gr.Plot(label="timings", elem_id="retrieval-timings")
                with gr.Accordion("the ranking as data", open=False):
                    ret_data = gr.JSON(elem_id="retrieval-data")

        # ------------------------------------------------------------------ events
        inputs = [pair, image, image2, question]
        answers = [t_text, t_plot, s_text, s_plot]
        opened = [image, image2, question, source_info, tabs]
        att_in = [*inputs, method, layer, head, word]
        att_out = [att_plot, att_text, word, layer, head]
        err_in, err_out = [pair, qtype, wrong], [err_text, err_plot, err_table, err_file, qtype]
        ask_kw = dict(concurrency_id="ask")
        att_kw = dict(concurrency_id="analysis", concurrency_limit=1)  # one user of the analysis copies at a time
        private = dict(api_visibility="private")

        def then_ask(dep, name):
            return dep.then(answer, inputs, answers, api_name=name, **ask_kw, **private)

        ask_btn.click(answer, inputs, answers, api_name="ask", **ask_kw)
        question.submit(answer, inputs, answers, api_name="ask_on_enter", **ask_kw, **private)
        then_ask(
            random_btn.click(random_example, pair, [image, image2, question, source_info], api_name="random_example"),
            "ask_after_random",
        )
        then_ask(
            gallery.click(
                load_sample,
                [pair, gallery, question],
                [image, image2, question, examples, source_info],
                api_name="load_sample",
            ),
            "ask_after_sample",
        )
        then_ask(examples.click(pick_example, examples, question, api_name="pick_example"), "ask_after_example")
        pair_out = [gallery, examples, random_btn, image, image2, question, t_head, s_head, *answers, layer, head, word]
        pair_out += [att_plot, att_text, qtype, err_text, err_plot, err_table]
        pair.change(set_pair, [pair, question], pair_out, api_name="set_pair")

        explain_btn.click(explain_pair, att_in, att_out, api_name="explain", **att_kw)
        for name, event in (
            ("method", method.input),
            ("layer", layer.release),
            ("head", head.input),
            ("word", word.input),
        ):
            event(explain_pair, att_in, att_out, api_name=f"explain_on_{name}", **att_kw, **private)
        attention_tab.select(explain_pair, att_in, att_out, api_name="explain_on_tab", **att_kw, **private)

        speed_btn.click(speed, [pair, settings], [speed_plot, speed_text], api_name="speed", concurrency_limit=1)

        errors_btn.click(errors, err_in, err_out, api_name="errors", **att_kw)
        errors_tab.select(errors, err_in, err_out, api_name="errors_on_tab", **att_kw, **private)
        qtype.input(errors, err_in, err_out, api_name="errors_by_type", **att_kw, **private)
        wrong.input(errors, err_in, err_out, api_name="errors_by_who", **att_kw, **private)
        for dep, name in (
            (open_btn.click(open_example, [pair, open_index, target], opened, api_name="open_example"), "index"),
            (err_table.select(open_row, [pair, target], opened, api_name="open_row", **private), "row"),
        ):
            then_ask(dep, f"ask_after_open_{name}").then(
                explain_pair, att_in, att_out, api_name=f"explain_after_open_{name}", **att_kw, **private
            )

        ret_in, ret_out = [ret_query, ret_k, ret_rerank], [ret_results, ret_info, ret_plot, ret_data]
        ret_kw = dict(concurrency_id="retrieve")
        retrieve_btn.click(retrieve, ret_in, ret_out, api_name="retrieve", **ret_kw)
        ret_query.submit(retrieve, ret_in, ret_out, api_name="retrieve_on_enter", **ret_kw, **private)
        ret_examples.click(pick_example, ret_examples, ret_query, api_name="pick_query", **private).then(
            retrieve, ret_in, ret_out, api_name="retrieve_after_example", **ret_kw, **private
        )
    demo.queue(default_concurrency_limit=2, max_size=256)
    return demo


def _word_index(word, tokens: list[str]) -> int | None:
    """The token position a word choice ("<i>:<token>") names, if it is still that token; else None."""
    if not word or word == "all" or ":" not in str(word):
        return None
    i, _, tok = str(word).partition(":")
    try:
        i = int(i)
    except ValueError:
        return None
    return i if 0 <= i < len(tokens) and tokens[i] == tok else None


def preload() -> None:
    """Import what the Attention, Speed and Errors tabs use (Captum, the benchmark), in the background
    shortly after start-up, so that neither start-up nor the first click on those tabs waits for it."""
    import workbench.bench  # noqa: F401
    import workbench.evaluate  # noqa: F401
    import workbench.explain  # noqa: F401


def serve(demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, **kwargs):
    """Launch `demo` the way `python app.py` does (the tests use this too)."""
    kwargs.setdefault("max_file_size", "64mb")  # an upload bound: a 4000 x 4000 RGB PNG is at most ~48 MB
    return demo.launch(server_name=host, server_port=port, show_error=True, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the workbench app on the shipped checkpoints.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument(
        "--gallery-size", type=int, default=RETRIEVAL_GALLERY, help="shapes test scenes in the Retrieval tab's gallery"
    )
    args = parser.parse_args()
    t0 = time.perf_counter()
    pairs = load_pairs(shipped_pairs())
    warm_up(pairs)
    demo = build_app(pairs, load_samples(ASSETS / "samples"), gallery_size=args.gallery_size)
    print(f"{len(pairs)} task / model pairs loaded and the app built in {time.perf_counter() - t0:.1f} s")
    timer = threading.Timer(5.0, preload)  # after start-up and the first requests, not during them
    timer.daemon = True
    timer.start()
    serve(demo, args.host, args.port)


if __name__ == "__main__":
    main()
