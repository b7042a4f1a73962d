"""MAD: adaptive distillation from frozen unimodal teachers into the cross-modal (fusion) encoder.

The student is the fusion encoder (ViLT, `kind="fusion"`), trained on the task with

    loss = CE(student logits, gold) + feature_weight * (L_text + L_image)
    L_m  = token_feature_distill(P_m(student tokens of modality m), teacher targets, token mask, weights)

The teachers are frozen unimodal encoders (`workbench.models.unimodal`): a pretrained text encoder
(all-MiniLM-L6-v2 by default) and a ViT pretrained on images alone (our MAE, `workbench pretrain-mae`).
`P_text`, `P_image` are learned linear maps from the student's width to each teacher's (`MADProjections`).

The MAD paper publishes no code or formulas; every choice below is ours:

* Student features: the fusion encoder's last hidden state (after ViLT's final LayerNorm), text tokens
  [0, T) and image patches [T + 1, T + 1 + P) (the image [CLS] is not distilled).
* Targets: the teacher features aligned to the student's tokens (text by character-span overlap, the
  student's [CLS] from the teacher's sentence feature; image on the student's patch grid; see
  `unimodal`), each standardised per token (LayerNorm without parameters), so cosine and MSE see teachers
  of any scale alike.
* Token selection (`token_selection`): every real text token with a target, plus per instance the top-`k`
  image patches (default k = 4 of 16: a question names one or two of 2-6 objects) ranked by the student's
  own text-to-image attention at `select_layer` (default the last), averaged over heads and over the real
  text tokens (`losses.select_image_tokens`). Without it: every patch.
* Confidence weighting (`confidence`): per-instance weight = the probability a linear probe on the frozen
  teachers' pooled features gives the gold answer, held out (cross-fitted) for the pairs the probe was
  fitted on (`workbench.methods.mad_probe`), scaled to sum to the batch size (`losses.confidence_weights`). The same
  weight multiplies the text and the image term. Without it: 1.
* Feature loss: cosine (1 - cos, default) or MSE (mean over the feature axis) per token, averaged over an
  instance's selected tokens, weighted per instance, divided by the batch size (`losses.token_feature_distill`).
* Weights: task CE 1 (MAD keeps the task loss; there is no cross-modal teacher for soft labels),
  feature_weight 1.

Variants (registry entries sharing `MADConfig`): `mad` (both), `mad-naive` (all tokens, uniform weights),
`mad-no-select`, `mad-no-conf`. `run_mad` runs one: `workbench distill --recipe mad ...`.

Trainable parts: `MADProjections` ride on the student as the submodule `mad_projections` while it trains
(`MADObjective.attach`, called by `workbench.train.train` before it builds the optimizer), so they are
optimised, saved in the training state and resumed; `detach` removes them before the final checkpoint is
written, which is then a plain fusion model. They are applied inside the student's forward (a hook), so a
DDP-wrapped student sees them as part of its forward pass.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from workbench import losses
from workbench.data import load_dataset, num_images
from workbench.data.collate import image_to_tensor
from workbench.errors import WorkbenchError
from workbench.methods.base import Method, get_method, register
from workbench.methods.mad_features import load_image_features, save_image_features, teacher_digest
from workbench.methods.mad_probe import (
    ConfidenceProbe,
    example_key,
    fit_confidence_probe,
    image_key,
    pooled_features,
    standardise_tokens,
)
from workbench.models.fusion import FusionTeacher
from workbench.models.unimodal import TextTeacher, VisionTeacher, student_offsets
from workbench.train import TrainConfig, batch_accuracy, train


class MADProjections(nn.Module):
    """Learned linear maps from the student's width to each teacher's (None where there is no teacher)."""

    def __init__(self, student_dim: int, text_dim: int | None, image_dim: int | None):
        super().__init__()
        self.text = nn.Linear(student_dim, text_dim) if text_dim else None
        self.image = nn.Linear(student_dim, image_dim) if image_dim else None


@dataclass
class MADConfig:
    token_selection: bool = True  # distil only the top-k image patches by the student's text-to-image attention
    confidence: bool = True  # weight each instance by the teacher side's confidence in the gold answer
    k: int = 4  # image patches kept per instance by token selection
    select_layer: int = -1  # student layer whose text-to-image attention ranks the patches
    feature_weight: float = 1.0  # weight of the feature loss beside the task cross-entropy
    feature_loss: Literal["cosine", "mse"] = "cosine"  # per token: 1 - cos, or the mean squared error
    probe_size: int = 2048  # training pairs the confidence probe is fitted on (at most)
    probe_steps: int = 200  # full-batch Adam steps fitting the confidence probe
    text_teacher: str | None = "minilm"  # "minilm" (the package), a folder, or None
    vision_teacher: str | None = "assets/shapes-mae"  # a folder, or None
    feature_cache: str | None = None  # folder keeping the vision teacher's image features between runs


class MADObjective:
    """`loss(student, batch) -> (loss, logs)` for the shared loop (module docstring).

    `probe_data`: the training examples the confidence probe is fitted on (in `prepare`, or call
    `fit_confidence_probe`); needed when `config.confidence`.

    `image_cache_size`: keep the vision teacher's features of up to this many images, keyed by the image's
    bytes. A low-shot run shows every image many times (low1: 30 passes) and the frozen teacher gives the
    same features each time; the vision teacher is about a quarter of a MAD step on the CPU, the text
    teacher next to nothing. 0 (default): no cache (a single pass gains nothing from one)."""

    def __init__(
        self,
        name: str,
        text_teacher: TextTeacher | None,
        vision_teacher: VisionTeacher | None,
        student_tokenizer,
        config: MADConfig | None = None,
        probe_data=None,
        image_cache_size: int = 0,
    ):
        self.name = name
        self.config = c = config or get_method(name).config()
        if text_teacher is None and vision_teacher is None:
            raise ValueError("MAD needs at least one unimodal teacher")
        if c.feature_loss not in ("cosine", "mse"):
            raise ValueError(f"feature_loss must be 'cosine' or 'mse', got {c.feature_loss!r}")
        self.text = text_teacher.eval().requires_grad_(False) if text_teacher is not None else None
        self.vision = vision_teacher.eval().requires_grad_(False) if vision_teacher is not None else None
        self.tokenizer = student_tokenizer
        self.probe_data = probe_data
        self.probe: ConfidenceProbe | None = None
        self.probe_info: dict = {}
        self.projections: MADProjections | None = None
        self.image_cache_size = image_cache_size
        self.image_cache: dict[tuple, torch.Tensor] = {}

    # -- trainable parts on the student (see the module docstring)

    def attach(self, model: nn.Module) -> None:
        model = getattr(model, "module", model)
        if not isinstance(model, FusionTeacher):
            raise WorkbenchError(f"MAD trains a fusion (single-stream) student, not a {type(model).__name__}")
        self.projections = MADProjections(
            model.config.hidden_size,
            self.text.dim if self.text is not None else None,
            self.vision.dim if self.vision is not None else None,
        ).to(next(model.parameters()).device)
        model.mad_projections = self.projections

    def detach(self, model: nn.Module) -> None:
        model = getattr(model, "module", model)
        if "mad_projections" in model._modules:
            del model.mad_projections

    def prepare(self, accelerator, student) -> None:
        for teacher in (self.text, self.vision):
            if teacher is not None:
                teacher.to(accelerator.device)
        if self.config.confidence and self.probe is None:
            if self.probe_data is None:
                raise ValueError("confidence weighting needs probe_data (training examples) to fit its probe")
            model = getattr(student, "module", student)
            self.fit_confidence_probe(self.probe_data, model.config.image_size, _grid(model))

    # -- teachers

    @torch.no_grad()
    def teacher_targets(self, texts, pixel_values, text_offsets=None, grid=None, cls_first=True) -> dict:
        """Standardised targets: "text" ([B, T, Dt], mask), "sentence" [B, Dt], "image" ([B, P, Dv], mask).
        Without `text_offsets` only the sentence feature is computed (the probe's input)."""
        out = {}
        if self.text is not None:
            if text_offsets is None:
                out["sentence"] = standardise_tokens(self.text.encode(texts).sentence)
            else:
                aligned, mask, sentence = self.text.for_student(texts, text_offsets, cls_first)
                out["text"], out["sentence"] = (standardise_tokens(aligned), mask), standardise_tokens(sentence)
        if self.vision is not None:
            feats, mask = self.image_features(pixel_values, grid)
            out["image"] = (standardise_tokens(feats), mask)
        return out

    @torch.no_grad()
    def image_features(self, pixel_values: torch.Tensor, grid=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The vision teacher's (features, mask) of a batch, from `image_cache` where it has them."""
        if not self.image_cache_size:
            return self.vision(pixel_values, grid)
        keys = [(grid, image_key(p)) for p in pixel_values]
        found = [self.image_cache.get(key) for key in keys]
        missing = [i for i, f in enumerate(found) if f is None]
        if missing:
            for i, f in zip(missing, self.vision(pixel_values[missing], grid)[0]):
                found[i] = f
                if len(self.image_cache) < self.image_cache_size:
                    self.image_cache[keys[i]] = f
        feats = torch.stack([f.to(pixel_values.device) for f in found])  # features from disk sit on the CPU
        return feats, torch.ones(feats.shape[:2], dtype=torch.bool, device=feats.device)  # as VisionTeacher's

    @staticmethod
    def pooled(targets: dict) -> torch.Tensor:
        image = targets.get("image")
        return pooled_features(targets.get("sentence"), *(image if image is not None else (None, None)))

    @torch.no_grad()
    def fit_confidence_probe(self, examples, image_size: int, grid: tuple[int, int], batch_size: int = 128) -> dict:
        """Fit the probe on the first `config.probe_size` of `examples` (workbench `Example`s)."""
        n = min(self.config.probe_size, len(examples))
        feats, labels, keys = [], [], []
        for lo in range(0, n, batch_size):
            chunk = [examples[i] for i in range(lo, min(n, lo + batch_size))]
            pixels = torch.stack([image_to_tensor(e.images[0], image_size) for e in chunk])
            texts = [e.text for e in chunk]
            targets = self.teacher_targets(texts, pixels.to(self._device()), grid=grid)
            feats.append(self.pooled(targets))
            labels.append(torch.tensor([e.label for e in chunk], device=feats[-1].device))
            keys += [example_key(t, p) for t, p in zip(texts, pixels)]  # the Collator makes the same tensors
        x, y = torch.cat(feats), torch.cat(labels)
        num_labels = len(getattr(examples, "labels", ())) or int(y.max()) + 1
        self.probe, self.probe_info = fit_confidence_probe(x, y, keys, num_labels, steps=self.config.probe_steps)
        return self.probe_info

    def _device(self) -> torch.device:
        teacher = self.text.encoder if self.text is not None else self.vision.encoder
        return next(teacher.parameters()).device

    # -- the objective

    def loss(self, student: nn.Module, batch) -> tuple[torch.Tensor, dict]:
        c, model = self.config, getattr(student, "module", student)
        if batch.pixel_values.shape[1] != 1:
            raise WorkbenchError("MAD is implemented for one image per example (VQA, VE)")
        if self.projections is None:
            raise WorkbenchError("MADObjective.attach(student) first: the projections live on the student")
        store: dict[str, torch.Tensor] = {}

        def project(_module, _inputs, hidden):  # inside the student's forward (DDP sees the projections used)
            proj = model.mad_projections
            store["text"] = proj.text(hidden) if proj.text is not None else None
            store["image"] = proj.image(hidden) if proj.image is not None else None

        hook = model.vilt.layernorm.register_forward_hook(project)
        try:
            out = student(
                batch.input_ids, batch.attention_mask, batch.pixel_values, output_attentions=c.token_selection
            )  # fmt: skip
        finally:
            hook.remove()
        ce = nn.functional.cross_entropy(out.logits, batch.labels)
        logs = {"ce": ce.item(), "accuracy": batch_accuracy(out.logits, batch.labels)}

        t, grid = out.text_len, out.grid
        p = grid[0] * grid[1]
        offsets = student_offsets(self.tokenizer, batch.texts, batch.input_ids) if self.text is not None else None
        cls_id = getattr(self.tokenizer, "cls_token_id", None)
        cls_first = cls_id is not None and bool((batch.input_ids[:, 0] == cls_id).all())
        targets = self.teacher_targets(batch.texts, batch.pixel_values[:, 0], offsets, grid, cls_first)

        weights = None
        if c.confidence:
            if self.probe is None:
                raise WorkbenchError("confidence weighting: the probe is not fitted (prepare / fit_confidence_probe)")
            keys = [example_key(text, pixels) for text, pixels in zip(batch.texts, batch.pixel_values[:, 0])]
            conf = self.probe.prob_of_gold(self.pooled(targets), batch.labels, keys)
            weights = losses.confidence_weights(conf).to(ce.device)
            logs["conf"] = conf.mean().item()

        feature = ce.new_zeros(())
        if self.text is not None:
            target, mask = targets["text"]
            mask = mask & batch.attention_mask.bool()
            f_text = losses.token_feature_distill(store["text"][:, :t], target, mask, weights, c.feature_loss)
            feature, logs["f_text"] = feature + f_text, f_text.item()
        if self.vision is not None:
            target, mask = targets["image"]
            if c.token_selection:
                t2i = out.attentions[0][c.select_layer][:, :, :t, t + 1 : t + 1 + p]
                mask = mask & losses.select_image_tokens(t2i, batch.attention_mask, c.k)
            f_image = losses.token_feature_distill(
                store["image"][:, t + 1 : t + 1 + p], target, mask, weights, c.feature_loss
            )
            feature, logs["f_image"] = feature + f_image, f_image.item()
        return ce + c.feature_weight * feature, logs


def _grid(model: FusionTeacher) -> tuple[int, int]:
    side = model.config.image_size // model.config.patch_size
    return side, side


def load_teachers(config: MADConfig) -> tuple[TextTeacher | None, VisionTeacher | None]:
    text = vision = None
    if config.text_teacher:
        text = TextTeacher.minilm() if config.text_teacher == "minilm" else TextTeacher.from_folder(config.text_teacher)
    if config.vision_teacher:
        path = Path(config.vision_teacher)
        if not path.exists():
            raise WorkbenchError(
                f"no vision teacher at {path}: pre-train one with `workbench pretrain-mae --out {path}` "
                "or pass --vision-teacher (a ViTMAE or other Hugging Face vision encoder folder)"
            )
        vision = VisionTeacher.from_folder(path)
    if text is None and vision is None:
        raise WorkbenchError("MAD needs at least one teacher (--text-teacher / --vision-teacher)")
    return text, vision


def run_mad(
    cfg: TrainConfig,
    config: MADConfig,
    resume: bool = False,
    progress: bool = True,
):
    """Train a fusion student `cfg.out/model` with MAD variant `cfg.recipe` (a key of `MAD_VARIANTS`).

    The student is a fresh fusion encoder of `cfg.size` (default: the shipped teachers' size, 128 wide, 4
    layers, 4 heads, 16-px patches on 64-px images) with the workbench's tokenizer, or `cfg.init_from`.
    Low-shot runs: `cfg.train_size` (e.g. 1,280 = 1% of the 128,000 pairs the shipped teachers saw); the
    confidence probe only sees those pairs. The MAD settings and teachers go into the checkpoint's
    train_config (`recipe_args`); the confidence probe's accuracies go to `cfg.out/probe.json`.

    `config.feature_cache`: a folder where the vision teacher's features of the training images are kept between
    runs (`<teacher digest>.safetensors`, 8 KB an image for the shipped MAE): every run of a grid on one task
    sees the same images, so only the first pays for the teacher (about a quarter of an uncached MAD step on
    the CPU). Without it, a run caches in memory only when it passes over its pairs more than once."""
    from workbench.data.vocab import build_tokenizer
    from workbench.models.io import load_checkpoint, write_json_atomic

    if num_images(cfg.dataset) != 1:
        raise WorkbenchError(f"MAD is implemented for one image per example; {cfg.dataset} has two")
    text, vision = load_teachers(config)
    tokenizer = load_checkpoint(cfg.init_from).tokenizer if cfg.init_from else build_tokenizer(cfg.paraphrase)
    cfg = replace(cfg, model="fusion", teacher=None, recipe_args=asdict(config))
    # the training texts as the run reads them (reworded with --paraphrase): the probe's lookups are keyed by text
    pairs = load_dataset(cfg.dataset, "train", cfg.train_size, paraphrase=cfg.rewording)
    probe_data = pairs if config.confidence else None
    cache_file = None
    if config.feature_cache and vision is not None:
        cache_file = Path(config.feature_cache) / f"{teacher_digest(vision)}.safetensors"
    stored = load_image_features(cache_file) if cache_file is not None and cache_file.exists() else {}
    # several passes over the pairs (low-shot) or a cache file: the vision teacher runs once per image
    keep = vision is not None and (cfg.epochs > 1 or cache_file is not None)
    cache = len(stored) + len(pairs) if keep else 0
    recipe = MADObjective(cfg.recipe, text, vision, tokenizer, config, probe_data=probe_data, image_cache_size=cache)
    recipe.image_cache.update(stored)
    result = train(cfg, recipe=recipe, resume=resume, progress=progress)
    if cache_file is not None and len(recipe.image_cache) > len(stored):
        save_image_features(recipe.image_cache, cache_file)
    if recipe.probe_info:  # how good the confidence source was: in-sample and held-out accuracy
        write_json_atomic(Path(cfg.out) / "probe.json", recipe.probe_info)
        print(f"confidence probe: {recipe.probe_info}")
    return {
        **result,
        "probe": recipe.probe_info,
        "cached_images": len(recipe.image_cache) - len(stored),
        "stored_images": len(stored),
    }


# the method and its ablations: one Config, the switches differ
for _name, _defaults, _summary in (
    ("mad", {}, "MAD: feature KD from frozen unimodal teachers, with token selection and confidence weighting"),
    ("mad-naive", dict(token_selection=False, confidence=False), "MAD without both adaptive parts: every token, "
     "uniform weights"),
    ("mad-no-select", dict(token_selection=False), "MAD without token selection (every image patch)"),
    ("mad-no-conf", dict(confidence=False), "MAD without confidence weighting (uniform instance weights)"),
):  # fmt: skip
    register(
        Method(_name, _summary, task="answer", student="fusion", Config=MADConfig, run=run_mad, defaults=_defaults)
    )
