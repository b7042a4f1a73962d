"""Retrieval distillation into a small dual encoder: MCAD and the baselines it is compared with.

Every recipe here is one objective with parts switched on or off (weights in
`RetrievalConfig`; each recipe is a registry entry with its defaults),
run by the shared training loop (`workbench.train.train`) on `shapes-retrieval` batches of B
(image, caption) pairs. Teachers are frozen and run without gradients: a dual-encoder teacher
(ours trained with `clip`, or a Hugging Face CLIP folder) and, for MCAD, a fusion (single-stream)
teacher with an image-text matching head (`FusionMatcher`).

    S  = student similarity logits [B, B] (its own learned temperature)
    St = dual teacher's logits (its temperature);  G = fusion teacher's log P(match) per pair
    Z  = St + alpha * G                                       (`losses.fused_teacher_logits`)
    (u', w') = modified teacher features from (u, w) and Z    (`losses.modified_teacher_features`)
    loss = contrastive * InfoNCE(S)
         + kl * mean(KL_rows(Z || S), KL_cols(Z || S)) at temperature T
         + feature * mean(d(student image emb, u'), d(student text emb, w'))

| recipe         | what it is                                    | contrastive | kl | feature      | alpha | beta |
|----------------|-----------------------------------------------|-------------|----|--------------|-------|------|
| `clip`         | contrastive only (also trains the dual teacher)| 1          | 0  | 0            | -     | -    |
| `clipkd`       | CLIP-KD: feature (sq. L2) + relation (KL) KD  | 1           | 1  | 1 (sq. L2)   | 0     | 0    |
| `affinity`     | TinyCLIP affinity mimicking (KL rows + cols)  | 0           | 1  | 0            | 0     | 0    |
| `mcad`         | MCAD                                          | 1           | 1  | 1 (cosine)   | 1     | 0.5  |
| `mcad-nofused` | MCAD without the fused single-stream signal   | 1           | 1  | 1 (cosine)   | 0     | 0.5  |
| `mcad-nofeat`  | MCAD without feature distillation             | 1           | 1  | 0            | 1     | -    |

What is ours where the MCAD paper is silent (see the loss docstrings for the reasons): the fused
signal is the fusion teacher's log P(match) added to the dual teacher's logits (a product of
experts); it is computed only for the pairs in the dual teacher's top-k of each row and column
plus the diagonal (`fusion_topk`, B^2 joint passes per step being too slow here); it reaches the
teacher features through the modified distribution, not through a learned map of the fused state;
the student's retrieval projection is sized to the teacher's embedding width and is the learned
feature map; loss weights 1, T = 1, beta = 0.5. CLIP-KD's interactive contrastive term and
TinyCLIP's weight inheritance are not included.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Literal

import torch
from torch import nn

from workbench import losses
from workbench.data import RETRIEVAL_DATASETS
from workbench.data.real import TASKS
from workbench.errors import WorkbenchError
from workbench.methods.base import Method, register
from workbench.retrieval import DualEncoder, FusionMatcher, evaluate_retrieval, format_retrieval, loop_metrics
from workbench.train import TrainConfig, train


@dataclass
class RetrievalConfig:
    contrastive: float = 1.0  # symmetric InfoNCE on the student's own similarities
    kl: float = 1.0  # distribution distillation: KL on row- and column-softmaxes
    feature: float = 1.0  # feature distillation towards the (modified) teacher embeddings
    alpha: float = 1.0  # weight of the fusion teacher's log P(match) in the modified logits (0: dual only)
    beta: float = 0.5  # feature injection: how far teacher features move towards the matched other side
    temperature: float = 1.0  # distillation temperature, dividing both similarity matrices
    fusion_topk: int = 3  # fusion-scored pairs: the diagonal + top-k per row and column (<= 0: all B^2)
    feature_loss: Literal["cosine", "squared-l2"] = "cosine"  # `losses.embedding_distill`
    dual_teacher: str | None = None  # our dual checkpoint or a Hugging Face CLIP folder
    fusion_teacher: str | None = None  # a fusion checkpoint with a matching head (trained on shapes-itm-mixed)

    def __post_init__(self):
        if self.feature_loss == "mse":  # the name runs before the registry gave CLIP-KD's squared L2 distance
            self.feature_loss = "squared-l2"
        if self.feature_loss not in ("cosine", "squared-l2"):
            raise ValueError(f"feature_loss must be 'cosine' or 'squared-l2', got {self.feature_loss!r}")


def needs_dual(w: RetrievalConfig) -> bool:
    return bool(w.kl or w.feature)


def needs_fusion(w: RetrievalConfig) -> bool:
    return needs_dual(w) and bool(w.alpha)


class RetrievalObjective:
    """`loss(student, batch) -> (loss, logs)` for the shared loop; `evaluate` measures R@K instead of accuracy."""

    def __init__(
        self,
        name: str,
        dual: DualEncoder | None = None,
        fusion: FusionMatcher | None = None,
        config: RetrievalConfig | None = None,
    ):
        self.name = name
        self.config = w = config or RetrievalConfig()
        if not (w.contrastive or w.kl or w.feature):
            raise ValueError("every loss weight is zero: nothing to train on")
        if needs_dual(w) and dual is None:
            raise ValueError(f"recipe {name!r} distils from a dual-encoder teacher: pass one")
        if needs_fusion(w) and fusion is None:
            raise ValueError(
                f"recipe {name!r} injects the fusion teacher's matching scores (alpha={w.alpha}): pass one"
            )
        self.dual = dual if needs_dual(w) else None
        self.fusion = fusion if needs_fusion(w) else None
        if self.dual is not None:
            self.dual.model.eval().requires_grad_(False)
        if self.fusion is not None:
            self.fusion.model.eval().requires_grad_(False)

    def prepare(self, accelerator, student) -> None:
        if self.dual is not None:
            self.dual.model.to(accelerator.device)
        if self.fusion is not None:
            self.fusion.to(accelerator.device)

    @staticmethod
    def student_side(student: nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(image embeddings, text embeddings, logits [images, texts]) of the student, with gradients."""
        model = getattr(student, "module", student)
        text = model.encode_text(batch.input_ids, batch.attention_mask)
        mask = batch.pixel_mask[:, 0] if batch.pixel_mask is not None else None
        image = model.encode_image(batch.pixel_values[:, 0], pixel_mask=mask)
        t, i = model.embed_for_retrieval(text, image)
        return i, t, model.logit_scale.exp().clamp(max=100) * i @ t.T

    @torch.no_grad()
    def teacher_side(self, batch) -> dict:
        """The dual teacher's embeddings and logits, and (MCAD) the modified logits and features."""
        w, dual = self.config, self.dual
        pixels = batch.pixel_values[:, 0]
        u = dual.image_embeddings(pixels).float()
        v = dual.embed_texts(batch.texts).float()  # the teacher's own tokenizer
        logits = dual.logit_scale().float() * u @ v.T
        out = {"image": u, "text": v, "logits": logits, "pairs": 0}
        if self.fusion is not None:
            mask = losses.fusion_pair_mask(logits, w.fusion_topk)
            g = self.fusion.pair_log_match(pixels, batch.texts, mask).to(logits.device)
            out["logits"] = losses.fused_teacher_logits(logits, g, w.alpha)
            out["pairs"] = int(mask.sum())
        if w.feature:
            out["image"], out["text"] = losses.modified_teacher_features(u, v, out["logits"], w.beta)
        return out

    def loss(self, student: nn.Module, batch) -> tuple[torch.Tensor, dict]:
        w = self.config
        s_img, s_txt, s_logits = self.student_side(student, batch)
        total = s_logits.new_zeros(())
        logs: dict[str, float] = {}
        if w.contrastive:
            con = losses.clip_contrastive(s_logits)
            total, logs["contrastive"] = total + w.contrastive * con, float(con.detach())
        if self.dual is not None:
            t = self.teacher_side(batch)
            if w.kl:
                i2t, t2i = losses.affinity_kl(s_logits, t["logits"], w.temperature)
                total = total + w.kl * (i2t + t2i) / 2
                logs["kl_i2t"], logs["kl_t2i"] = float(i2t.detach()), float(t2i.detach())
            if w.feature:
                feat = (
                    losses.embedding_distill(s_img, t["image"], w.feature_loss)
                    + losses.embedding_distill(s_txt, t["text"], w.feature_loss)
                ) / 2
                total, logs["feature"] = total + w.feature * feat, float(feat.detach())
            if self.fusion is not None:
                logs["fused_pairs"] = float(t["pairs"])
        logs["scale"] = float(getattr(student, "module", student).logit_scale.detach().exp())
        return total, logs

    def evaluate(self, model, dataset, collator, limit=None, progress=False, **_) -> dict:
        """R@K on the split's gallery; timings only on the test split (the final measurement)."""
        timing = getattr(dataset, "split", "test") == "test"
        enc = DualEncoder(model, collator.tokenizer)
        return loop_metrics(evaluate_retrieval(enc, dataset, limit=limit, timing=timing, progress=progress))

    @staticmethod
    def format_metrics(metrics: dict) -> str:
        return format_retrieval(metrics)


def run_retrieval(cfg: TrainConfig, config: RetrievalConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train the dual student `cfg.out/model` with retrieval recipe `cfg.recipe`.

    `config.dual_teacher`: our dual checkpoint or a CLIP folder; `config.fusion_teacher`: a fusion checkpoint
    trained on `shapes-itm`. A distilled student's embedding width is the dual teacher's (the
    feature loss compares them); its tokenizer is that of the first workbench teacher (`cfg.teacher`;
    the workbench's own without one), and each teacher re-tokenizes the captions with its own. The
    config, teachers' paths included, goes into the checkpoint's train_config (`recipe_args`).
    """
    from workbench.models.clip import load_dual_encoder

    retrieval_sets = (*RETRIEVAL_DATASETS, *(d for d, task in TASKS.items() if task == "retrieval"))
    if cfg.dataset not in retrieval_sets:
        raise WorkbenchError(f"retrieval distillation trains on {retrieval_sets}, not {cfg.dataset!r}")
    weights, dual_teacher, fusion_teacher = config, config.dual_teacher, config.fusion_teacher
    dual = fusion = None
    if needs_dual(weights):
        if not dual_teacher:
            raise WorkbenchError(f"recipe {cfg.recipe!r} needs --dual-teacher (a dual checkpoint or a CLIP folder)")
        ck = load_dual_encoder(dual_teacher)
        dual = DualEncoder(ck.model, ck.tokenizer)
    if needs_fusion(weights):
        if not fusion_teacher:
            raise WorkbenchError(
                f"recipe {cfg.recipe!r} needs --fusion-teacher (a fusion model trained on shapes-itm-mixed)"
            )
        fusion = FusionMatcher.load(fusion_teacher)
    size = dict(cfg.size)
    if dual is not None:
        size.setdefault("embed_dim", dual.embed_dim)
    # the student reads token ids as a workbench teacher does (a CLIP teacher's tokenizer is not ours)
    ours = [
        p
        for p, used in (
            (dual_teacher, dual is not None and dual.model.kind == "dual"),
            (fusion_teacher, fusion is not None),
        )
        if used
    ]
    cfg = replace(
        cfg,
        model="dual",
        teacher=str(ours[0]) if ours and not cfg.init_from else None,
        size=size,
        recipe_args=asdict(
            replace(
                config,
                dual_teacher=str(dual_teacher) if dual is not None else None,
                fusion_teacher=str(fusion_teacher) if fusion is not None else None,
            )
        ),
    )
    recipe = RetrievalObjective(cfg.recipe, dual, fusion, config)
    return train(cfg, recipe=recipe, resume=resume, progress=progress)


# every recipe is one objective with parts switched on or off (the table in the module docstring)
for _name, _defaults, _summary in (
    ("clip", dict(kl=0.0, feature=0.0, alpha=0.0, beta=0.0), "CLIP: contrastive only (also trains the dual teacher)"),
    ("clipkd", dict(alpha=0.0, beta=0.0, feature_loss="squared-l2"), "CLIP-KD: feature (squared L2) + relation KD"),
    ("affinity", dict(contrastive=0.0, feature=0.0, alpha=0.0, beta=0.0), "TinyCLIP affinity mimicking"),
    ("mcad", {}, "MCAD: distribution + feature KD from a dual teacher modified by the fusion teacher"),
    ("mcad-nofused", dict(alpha=0.0), "MCAD without the fused single-stream signal"),
    ("mcad-nofeat", dict(feature=0.0), "MCAD without feature distillation"),
):  # fmt: skip
    register(Method(_name, _summary, "retrieval", "dual", RetrievalConfig, run=run_retrieval, defaults=_defaults))
