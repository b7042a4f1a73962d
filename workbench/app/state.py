"""What the tabs share, made explicit: `AppState` (the task / model pairs, their analysis copies, the
test splits read so far, the texts the app put in a text box) and `RetrievalState` (the Retrieval tab's
models, its gallery and the index built on the first query). One of each per app; the tabs hold them and
change nothing else that another tab reads."""

from __future__ import annotations

import copy
import dataclasses
import random
import threading
from collections.abc import Callable

import gradio as gr

from workbench.app.exports import Exports
from workbench.app.loading import Pair, RetrievalModels, retrieval_gallery_name
from workbench.app.ui import EXAMPLE_COUNT, dataset_of, num_images, task_of
from workbench.models.io import Checkpoint
from workbench.retrieval import DualEncoder, FusionMatcher, GalleryIndex, retrieval_parameters, size_mb

MAX_SUGGESTED = 10_000  # bounded: random scenes keep adding texts


def copy_checkpoint(ck: Checkpoint | None) -> Checkpoint | None:
    """Same weights and tokenizer, a model object of its own."""
    return None if ck is None else dataclasses.replace(ck, model=copy.deepcopy(ck.model).eval())


class AppState:
    """The task / model pairs and the caches the Ask, Attention, Speed and Errors tabs share.

    `pairs`: display name -> (teacher, student or None), the serving copies (Ask; plain forward passes,
    thread-safe); `analysis`: a copy of each for Attention and Errors, whose hooks must not touch a
    serving forward pass. `samples`: the shipped sample images (`workbench.data.samples.load_samples`)."""

    def __init__(self, pairs: dict[str, Pair], samples: list[dict]):
        self.pairs = pairs
        self.names = list(pairs)
        self.analysis = {name: (copy_checkpoint(t), copy_checkpoint(s)) for name, (t, s) in pairs.items()}
        self.samples = samples
        self.datasets: dict[tuple[str, int | None], object] = {}  # (dataset, size) -> its test split
        # texts the app itself put in the question box: replaced when the input changes (a user's own is kept)
        self.suggested = {q for s in samples for q in s.get("questions", []) + s.get("hypotheses", [])}
        self.exports = Exports()  # the downloads' folder

    def pair(self, name: str, analysis: bool = False) -> Pair:
        """The named pair's serving models (or, with `analysis`, its analysis copies)."""
        which = self.analysis if analysis else self.pairs
        if name not in which:
            raise gr.Error(f"Unknown task / model pair {name!r}; choose one of {self.names}.")
        return which[name]

    def dataset(self, ck: Checkpoint, size: int | None):
        """The test split of the checkpoint's dataset (`size` examples), read once."""
        from workbench.data import load_dataset

        key = (dataset_of(ck), size)
        if key not in self.datasets:
            self.datasets[key] = load_dataset(key[0], "test", size)
        return self.datasets[key]

    def suggest(self, text: str) -> str:
        """`text`, remembered as one the app suggested."""
        if len(self.suggested) < MAX_SUGGESTED:
            self.suggested.add(text)
        return text

    def is_suggested(self, question) -> bool:
        """Whether the text box holds nothing of the user's own (empty, or a text the app put there)."""
        return not (question or "").strip() or question in self.suggested

    def samples_for(self, teacher: Checkpoint) -> list[dict]:
        """The sample images of the teacher's kind of data (all samples when none is)."""
        name = dataset_of(teacher)
        source = "easy-vqa" if name == "easy-vqa" else "shapes" if name.startswith("shapes") else None
        return [s for s in self.samples if s.get("source") == source] or self.samples

    def examples_for(self, teacher: Checkpoint, sample: dict | None) -> list[str]:
        """Example texts of the teacher's task: the sample's own, else the first of the test split."""
        task = task_of(teacher)
        texts = []
        if sample is not None and task in ("vqa", "ve"):
            texts = sample.get("hypotheses" if task == "ve" else "questions", [])
        if not texts:  # e.g. NLVR statements, or hypotheses for an easy-VQA image: the test split's own
            data = self.dataset(teacher, EXAMPLE_COUNT)
            texts = [self.suggest(data[i].text) for i in range(min(EXAMPLE_COUNT, len(data)))]
        return list(texts)[:EXAMPLE_COUNT]

    def first_sample(self, teacher: Checkpoint) -> tuple[str | None, str | None, dict | None]:
        """The pair's own first input: (its first sample image, the next one for a two-image task, that sample)."""
        shown = self.samples_for(teacher)
        if not shown:
            return None, None, None
        second = shown[1 % len(shown)]["path"] if num_images(teacher) == 2 else None
        return shown[0]["path"], second, shown[0]

    def scene_examples(self, teacher: Checkpoint, data, index: int, example) -> list[str]:
        """Example texts about example `index` of `data` (a random scene, an opened test example): its own text
        first, then the generator's other questions of the task about the same scene(s) (shapes) or the other
        questions about the same image (easy-VQA); each remembered as suggested."""
        from workbench.data.shapes import VE_LABELS, VQA_TYPES, nlvr_statement, ve_hypothesis, vqa_question

        task, meta, rng = task_of(teacher), example.meta, random.Random(index)
        texts = [example.text]
        if "scene" in meta and task == "vqa":
            texts += [vqa_question(meta["scene"], t, rng)[0] for t in VQA_TYPES]
        elif "scene" in meta and task == "ve":
            made = (ve_hypothesis(meta["scene"], rng, want) for want in VE_LABELS * 4)
            texts += [h[0] for h in made if h is not None]
        elif "scenes" in meta and task == "nlvr":
            texts += [nlvr_statement(*meta["scenes"], rng)[0] for _ in range(4 * EXAMPLE_COUNT)]
        elif dataset_of(teacher) == "easy-vqa" and "image_id" in meta:
            texts += [item[0] for item in data.items if item[2] == meta["image_id"]]
        return [self.suggest(t) for t in dict.fromkeys(texts)][:EXAMPLE_COUNT]

    def attention_shape(self, name: str) -> tuple[int, int]:
        """(layers, heads) both models have; layers are aligned at the end, as DiDE pairs them. Read off
        the configs: importing `workbench.explain` (Captum) here would cost start-up time."""

        def shape(m):
            if hasattr(m, "config"):  # fusion teacher
                return m.config.num_hidden_layers, m.config.num_attention_heads
            depth = min(m.vision_config.num_hidden_layers, m.text_config.num_hidden_layers)
            return depth, m.text_config.num_attention_heads

        shapes = [shape(ck.model) for ck in self.pair(name) if ck is not None]
        return min(s[0] for s in shapes), min(s[1] for s in shapes)


class RetrievalState:
    """The Retrieval tab's models and gallery; the student's index over the gallery, built on first use.

    `encoder` (None without a student), `matcher` (None without a fusion teacher with a matching head),
    `gallery` (the first `gallery_size` test scenes of the dataset the student records), `sizes`
    (parameters and fp32 megabytes of each model), `note` (why a shipped model did not load)."""

    def __init__(self, models: RetrievalModels, gallery_size: int):
        if gallery_size < 1:
            raise ValueError(f"gallery_size must be at least 1, got {gallery_size}")
        student, fusion = models.student, models.fusion
        self.note = models.note
        self.encoder = DualEncoder(student.model, student.tokenizer) if student else None
        self.matcher = FusionMatcher(fusion.model, fusion.tokenizer, fusion.labels) if fusion else None
        self.gallery = None
        if self.encoder is not None:
            from workbench.data import load_dataset
            from workbench.retrieval import gallery_from

            self.gallery = gallery_from(load_dataset(retrieval_gallery_name(student), "test", gallery_size))
        self.sizes = {}
        if student is not None:
            n = retrieval_parameters(student.model)
            self.sizes["student"] = {"name": student.path.name, "params": n, "size_mb": size_mb(n)}
        if fusion is not None:
            n = sum(p.numel() for p in fusion.model.parameters())
            self.sizes["fusion"] = {"name": fusion.path.name, "params": n, "size_mb": size_mb(n)}
        self._index: GalleryIndex | None = None
        self._lock = threading.Lock()

    def index(self, progress: Callable | None = None) -> tuple[GalleryIndex, bool]:
        """(the student's index over the gallery, whether this call built it): built once, whichever
        event comes first. `progress(fraction, desc=...)` is told before the build."""
        with self._lock:
            if self._index is not None:
                return self._index, False
            if progress is not None:
                progress(0, desc=f"embedding the {self.gallery.n_images} gallery images once")
            built = GalleryIndex.build(self.encoder, self.gallery, progress=True)  # a tqdm bar gr.Progress shows
            built.search("warm-up", 1)  # the first real query's timings should not include lazy set-up
            self._index = built
            return built, True

    def size_text(self, role: str) -> str:
        """A model's name and size, for the page."""
        m = self.sizes[role]
        return f"`{m['name']}` ({m['params'] / 1e6:.2f} M parameters, {m['size_mb']:.1f} MB fp32)"
