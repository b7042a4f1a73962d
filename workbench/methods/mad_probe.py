"""MAD's confidence source: a linear probe on the frozen unimodal teachers' pooled features.

MAD weights each instance by how confident "the teacher side" is about it; with a CLIP-like teacher that
could be a zero-shot probability, but our teachers are unimodal and know nothing of the answers. Ours: a
multinomial logistic regression on [text sentence feature ; mean of the image patch features] (each
teacher's features standardised per token first, as the distillation targets are), predicting the answer,
fitted once at the start of a run on at most `probe_size` of the run's own training pairs (so a low-shot run
uses no extra labels). The confidence of an instance is the probe's probability of its gold answer.

Fit: inputs standardised with the fitting set's mean and std, zero-initialised weights, full-batch Adam
(`steps` = 200, lr 0.05) with L2 (weight decay 1e-2). Cheap (about a second) and deterministic.

Out-of-fold confidences. A probe scores the pairs it was fitted on too well: at 1% of shapes-vqa (1,280
pairs) one fitted on all of them was right on 71% of them and on 47% of validation pairs (mean probability
of gold 0.61 against 0.45; weight decay 1e-2 narrows that to 0.54 against 0.43 at the same validation
accuracy; measured with a 40-step MAE). In a low-shot run every training pair is a fitting pair, so the
weights would mostly measure memorisation. `fit_confidence_probe` therefore cross-fits: the fitting pairs
are split into `folds` at random (`fold_of`), each fold is scored by the probe fitted on the others, and
those held-out probabilities are stored per pair (keyed by its text and pixels, `example_key`: the
teachers are frozen, so a pair's features never change); any other pair (a full-data run has more pairs
than `probe_size`) is scored by the probe fitted on all of them, also unseen by it. Measured at 1% of
shapes-vqa with 2 folds: held-out accuracy 47% (validation: 47%), mean probability of gold 0.45 (0.43).

A linear probe cannot combine question and image, so it is confident where the answer follows from one
modality's features (or from the answer prior); that is what "the teacher side knows this instance" can
mean for unimodal teachers.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def standardise_tokens(x: torch.Tensor) -> torch.Tensor:
    """Per-token standardisation over the feature axis (a LayerNorm without parameters)."""
    return nn.functional.layer_norm(x.float(), x.shape[-1:])


def pooled_features(
    text_sentence: torch.Tensor | None, image_tokens: torch.Tensor | None, image_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """[B, D_text + D_image]: the teachers' pooled features (either may be None)."""
    parts = []
    if text_sentence is not None:
        parts.append(text_sentence.float())
    if image_tokens is not None:
        if image_mask is None:
            parts.append(image_tokens.float().mean(1))
        else:
            m = image_mask[..., None].float()
            parts.append((image_tokens.float() * m).sum(1) / m.sum(1).clamp(min=1))
    if not parts:
        raise ValueError("no teacher features to pool")
    return torch.cat(parts, dim=-1)


class LinearProbe(nn.Module):
    """Standardise, then one linear layer: answer logits from pooled teacher features. Frozen once fitted."""

    def __init__(self, dim: int, num_labels: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.linear = nn.Linear(dim, num_labels)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear((features.float() - self.mean) / self.std)

    @torch.no_grad()
    def prob_of_gold(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """[B]: the probe's probability of each instance's gold answer (no gradient)."""
        probs = self(features).softmax(-1)
        return probs.gather(1, labels[:, None]).squeeze(1)


def fit_probe(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_labels: int,
    steps: int = 200,
    lr: float = 0.05,
    weight_decay: float = 1e-2,
) -> LinearProbe:
    """Fit a `LinearProbe` by full-batch Adam on (features [N, D], labels [N]); returns it frozen."""
    features = features.float()
    probe = LinearProbe(features.shape[1], num_labels).to(features.device)
    probe.mean.copy_(features.mean(0))
    if features.shape[0] > 1:
        # a near-constant channel (std ~1e-6) would turn float noise of 1e-6 (the same text batched with
        # other texts) into unit-size inputs: floor each channel's scale at 1% of the typical channel's
        std = features.std(0)
        probe.std.copy_(std.clamp(min=max(1e-2 * float(std.mean()), 1e-6)))
    opt = torch.optim.Adam(probe.linear.parameters(), lr=lr, weight_decay=weight_decay)
    with torch.enable_grad():
        for _ in range(steps):
            loss = nn.functional.cross_entropy(probe(features), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return probe.eval().requires_grad_(False)


def _pixel_bytes(pixels: torch.Tensor) -> bytes:
    return pixels.detach().float().cpu().contiguous().numpy().tobytes()


def example_key(text: str, pixels: torch.Tensor) -> bytes:
    """Identity of a (text, image) pair: a hash of the text and the image tensor's bytes ([3, H, W])."""
    return hashlib.blake2b(text.encode() + b"\0" + _pixel_bytes(pixels), digest_size=16).digest()


def image_key(pixels: torch.Tensor) -> bytes:
    """Identity of an image: a hash of its tensor's bytes ([3, H, W])."""
    return hashlib.blake2b(_pixel_bytes(pixels), digest_size=16).digest()


class ConfidenceProbe:
    """`prob_of_gold(features, labels, keys)`: the held-out (out-of-fold) probability for a pair the probes
    were fitted on, the full probe's for any other pair (module docstring)."""

    def __init__(self, full: LinearProbe, held_out: dict[bytes, float] | None = None):
        self.full = full
        self.held_out = held_out or {}

    @torch.no_grad()
    def prob_of_gold(self, features: torch.Tensor, labels: torch.Tensor, keys: list[bytes] | None = None):
        p = self.full.prob_of_gold(features.to(self.full.mean.device), labels.to(self.full.mean.device))
        if keys:
            stored = [self.held_out.get(k) for k in keys]
            known = torch.tensor([v is not None for v in stored], device=p.device)
            values = torch.tensor([v if v is not None else 0.0 for v in stored], device=p.device, dtype=p.dtype)
            p = torch.where(known, values, p)
        return p


def fold_of(n: int, folds: int, seed: int = 0) -> torch.Tensor:
    """[n] fold index of each fitting pair: a seeded random permutation mod `folds`. Not the index mod
    `folds`: the shapes generators cycle question types with the index (type = index mod 6), so parity folds
    would each miss half the types (measured: held-out accuracy 10% at 1% of shapes-vqa, against 47% on
    validation pairs)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)) % folds


def fit_confidence_probe(
    features: torch.Tensor, labels: torch.Tensor, keys: list[bytes], num_labels: int, folds: int = 2, **fit
) -> tuple[ConfidenceProbe, dict]:
    """Fit the full probe and `folds` held-out ones (module docstring). Returns (probe, info): the number
    of pairs, the full probe's accuracy on them (in-sample) and the held-out accuracy and mean
    probability of gold (none when there are fewer than 2 * folds pairs: then no cross-fitting)."""
    n = features.shape[0]
    full = fit_probe(features, labels, num_labels, **fit)
    info = {"examples": n, "train_accuracy": round(probe_accuracy(full, features, labels), 4)}
    held: dict[bytes, float] = {}
    if folds >= 2 and n >= 2 * folds:
        fold = fold_of(n, folds).to(features.device)
        correct = 0
        for f in range(folds):
            probe = fit_probe(features[fold != f], labels[fold != f], num_labels, **fit)
            x, y = features[fold == f], labels[fold == f]
            held.update(
                zip([keys[i] for i in (fold == f).nonzero().flatten().tolist()], probe.prob_of_gold(x, y).tolist())
            )
            correct += int((probe(x).argmax(-1) == y).sum())
        info["held_out_accuracy"] = round(correct / n, 4)
        info["held_out_mean_p"] = round(sum(held.values()) / max(1, len(held)), 4)
    return ConfidenceProbe(full, held), info


@torch.no_grad()
def probe_accuracy(probe: LinearProbe, features: torch.Tensor, labels: torch.Tensor) -> float:
    return (probe(features).argmax(-1) == labels).float().mean().item()


__all__ = [
    "ConfidenceProbe",
    "LinearProbe",
    "example_key",
    "fit_confidence_probe",
    "fit_probe",
    "fold_of",
    "image_key",
    "pooled_features",
    "probe_accuracy",
    "standardise_tokens",
]
