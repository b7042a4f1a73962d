"""Retrieval distillation into a small dual encoder: MCAD and the baselines it is compared with.

Every recipe here is one objective with parts switched on or off (weights in
`RetrievalConfig`; each recipe is a registry entry with its defaults),
run by the shared training loop (`workbench.train.train`) on `shapes-retrieval` batches of B
(image, caption) pairs. Teachers are frozen and run without gradients: a dual-encoder teacher
(ours trained with `clip`, or a Hugging Face CLIP folder) and, for MCAD, a fusion (single-stream)
teacher with an image-text matching head (`FusionMatcher`).

    S  = student similarity logits [B, B] (its own learned temperature)
    (u, w) = dual teacher's image and text embeddings;  f_i = the fusion teacher's joint (pooled) state of
         the matched pair (image i, caption i), mapped into the dual space (`retrieval.adapter`)
    (u~, w~) = normalize(u + gamma f), normalize(w + gamma f)  (`losses.fused_feature_targets`)
    St = the dual teacher's temperature * u~ w~^T;  G = fusion teacher's log P(match) per pair
    Z  = St + alpha * G                                       (`losses.fused_teacher_logits`)
    (u', w') = modified teacher features from (u~, w~) and Z  (`losses.modified_teacher_features`)
    loss = contrastive * InfoNCE(S)
         + kl * mean(KL_rows(Z || S), KL_cols(Z || S)) at temperature T
         + feature * mean(d(student image emb, u'), d(student text emb, w'))

| recipe | what it is | contrastive | kl | feature | gamma | alpha | beta |
|---|---|---|---|---|---|---|---|
| `clip` | contrastive only (also trains the dual teacher) | 1 | 0 | 0 | - | - | - |
| `clipkd` | CLIP-KD: feature (sq. L2) + relation (KL) KD | 1 | 1 | 1 (sq. L2) | 0 | 0 | 0 |
| `affinity` | TinyCLIP affinity mimicking (KL rows + cols) | 0 | 1 | 0 | 0 | 0 | 0 |
| `mcad` | MCAD: fused features in the teacher's features | 1 | 1 | 1 (cosine) | 1 | 0 | 0.5 |
| `mcad-scalar` | ablation: the fused signal as a scalar only | 1 | 1 | 1 (cosine) | 0 | 1 | 0.5 |
| `mcad-nofused` | MCAD without the fused single-stream signal | 1 | 1 | 1 (cosine) | 0 | 0 | 0.5 |
| `mcad-nofeat` | MCAD without feature distillation | 1 | 1 | 0 | 1 | 0 | - |

What is ours where the MCAD paper is silent (see the loss and adapter docstrings for the reasons): the
fused features are the fusion teacher's pooled state of each matched in-batch pair, carried into the dual
teacher's space by a linear map fitted once before distillation (ridge regression onto normalize(u + w)
of `adapter_pairs` training pairs) and frozen, and added with weight gamma to both sides of the pair; the
student's retrieval projection is sized to the teacher's embedding width and is the learned feature map;
loss weights 1, T = 1, gamma = 1, beta = 0.5. `mcad-scalar` (this workbench's earlier MCAD) adds the fusion
teacher's log P(match) to the dual teacher's logits instead (a product of experts), scored only for the
pairs in the dual teacher's top-k of each row and column plus the diagonal (`fusion_topk`). CLIP-KD's
interactive contrastive term and TinyCLIP's weight inheritance are not included.
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
from workbench.retrieval.adapter import FusedFeatureMap, fit_fused_feature_map
from workbench.retrieval.encoders import model_device
from workbench.train import TrainConfig, train


@dataclass
class RetrievalConfig:
    contrastive: float = 1.0  # symmetric InfoNCE on the student's own similarities
    kl: float = 1.0  # distribution distillation: KL on row- and column-softmaxes
    feature: float = 1.0  # feature distillation towards the (modified) teacher embeddings
    gamma: float = 1.0  # weight of the fusion teacher's fused features added to the dual teacher's (0: none)
    adapter_pairs: int = 2048  # training pairs the fused-feature map is fitted on (`retrieval.adapter`)
    alpha: float = 0.0  # weight of the fusion teacher's log P(match) in the modified logits (mcad-scalar)
    beta: float = 0.5  # feature injection: how far teacher features move towards the matched other side
    temperature: float = 1.0  # distillation temperature, dividing both similarity matrices
    fusion_topk: int = 3  # fusion-scored pairs: the diagonal + top-k per row and column (<= 0: all B^2)
    feature_loss: Literal["cosine", "squared-l2"] = "cosine"  # `losses.embedding_distill`
    dual_teacher: str | None = None  # our dual checkpoint or a Hugging Face CLIP folder
    fusion_teacher: str | None = None  # a fusion checkpoint with a matching head (trained on shapes-itm-mixed)

    @staticmethod
    def from_legacy(values: dict) -> dict:
        """Configs saved before the fused features (issue 28) have an `alpha` and no `gamma`: they are the scalar
        method (`mcad-scalar`), whatever their recipe name says."""
        return {**values, "gamma": 0.0} if "alpha" in values and "gamma" not in values else values

    def __post_init__(self):
        if self.feature_loss == "mse":  # the name runs before the registry gave CLIP-KD's squared L2 distance
            self.feature_loss = "squared-l2"
        if self.feature_loss not in ("cosine", "squared-l2"):
            raise ValueError(f"feature_loss must be 'cosine' or 'squared-l2', got {self.feature_loss!r}")


def needs_dual(w: RetrievalConfig) -> bool:
    return bool(w.kl or w.feature)


def needs_fusion(w: RetrievalConfig) -> bool:
    return needs_dual(w) and bool(w.alpha or w.gamma)


class RetrievalObjective:
    """`loss(student, batch) -> (loss, logs)` for the shared loop; `evaluate` measures R@K instead of accuracy."""

    def __init__(
        self,
        name: str,
        dual: DualEncoder | None = None,
        fusion: FusionMatcher | None = None,
        config: RetrievalConfig | None = None,
        fused_map: FusedFeatureMap | None = None,
    ):
        self.name = name
        self.config = w = config or RetrievalConfig()
        if not (w.contrastive or w.kl or w.feature):
            raise ValueError("every loss weight is zero: nothing to train on")
        if needs_dual(w) and dual is None:
            raise ValueError(f"recipe {name!r} distils from a dual-encoder teacher: pass one")
        if needs_fusion(w) and fusion is None:
            raise ValueError(
                f"recipe {name!r} injects the fusion teacher's features or matching scores "
                f"(gamma={w.gamma}, alpha={w.alpha}): pass one"
            )
        if needs_fusion(w) and w.gamma and fused_map is None:
            raise ValueError(f"recipe {name!r} mixes in fused features (gamma={w.gamma}): pass their fitted map")
        self.fused_map = fused_map if needs_fusion(w) and w.gamma else None
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
        if self.fused_map is not None:  # MCAD: the joint state of each matched pair, in both of its sides
            u, v = losses.fused_feature_targets(u, v, self.fused_map(self.fusion.pooled(pixels, batch.texts)), w.gamma)
        logits = dual.logit_scale().float() * u @ v.T
        out = {"image": u, "text": v, "logits": logits, "pairs": 0}
        if self.fusion is not None and w.alpha:
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
            if self.fusion is not None and w.alpha:
                logs["fused_pairs"] = float(t["pairs"])
            if self.fused_map is not None:
                logs["fused_map_r2"] = self.fused_map.r2
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


@torch.no_grad()
def fit_fused_map(
    dual: DualEncoder, fusion: FusionMatcher, dataset: str, pairs: int, data_root=None, chunk: int = 256
) -> FusedFeatureMap:
    """The map of the fusion teacher's pooled state into the dual teacher's space, fitted on the first `pairs`
    (image, caption) training pairs of `dataset` (the same pairs for every seed: the map is part of the
    teacher, not of the run)."""
    from workbench.data import load_dataset
    from workbench.data.collate import image_to_tensor

    data = load_dataset(dataset, "train", pairs, data_root=data_root)
    pooled, target = [], []
    for s in range(0, len(data), chunk):
        examples = [data[i] for i in range(s, min(s + chunk, len(data)))]
        pixels = torch.stack([image_to_tensor(e.images[0], fusion.image_size) for e in examples])
        texts = [e.text for e in examples]
        pooled.append(fusion.pooled(pixels, texts))
        joint = dual.image_embeddings(pixels.to(model_device(dual.model))).float() + dual.embed_texts(texts).float()
        target.append(nn.functional.normalize(joint, dim=-1).to(pooled[-1].device))
    return fit_fused_feature_map(torch.cat(pooled), torch.cat(target))


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
    fused_map = None
    if fusion is not None and weights.gamma:
        fused_map = fit_fused_map(dual, fusion, cfg.dataset, weights.adapter_pairs, cfg.data_root)
    recipe = RetrievalObjective(cfg.recipe, dual, fusion, config, fused_map)
    return train(cfg, recipe=recipe, resume=resume, progress=progress)


# every recipe is one objective with parts switched on or off (the table in the module docstring)
for _name, _defaults, _summary in (
    ("clip", dict(kl=0.0, feature=0.0, gamma=0.0, beta=0.0), "CLIP: contrastive only (also trains the dual teacher)"),
    ("clipkd", dict(gamma=0.0, beta=0.0, feature_loss="squared-l2"), "CLIP-KD: feature (squared L2) + relation KD"),
    ("affinity", dict(contrastive=0.0, feature=0.0, gamma=0.0, beta=0.0), "TinyCLIP affinity mimicking"),
    ("mcad", {}, "MCAD: distribution + feature KD from a dual teacher whose features hold the fusion teacher's"),
    ("mcad-scalar", dict(gamma=0.0, alpha=1.0), "MCAD ablation: the fusion teacher's log P(match) added to the logits"),
    ("mcad-nofused", dict(gamma=0.0), "MCAD without the fused single-stream signal"),
    ("mcad-nofeat", dict(feature=0.0), "MCAD without feature distillation"),
):  # fmt: skip
    register(Method(_name, _summary, "retrieval", "dual", RetrievalConfig, run=run_retrieval, defaults=_defaults))
