"""The DiDE recipe's own use of the attention loss, against a hand computation from hand-built q/k and masks.

The loss functions are tested on their own in test_losses.py; here the recipe (`DiDEObjective.loss`) is run
on stand-in models that return hand-built queries and keys, and its text-to-image and image-to-text terms are
recomputed independently (numpy, float64, explicit loops over real queries and real keys). This decides which
masks the recipe passes (padded text tokens and padding patches are neither queries nor keys), which argument
is the teacher (KL(teacher || student) is not symmetric), which teacher layer and which image each student map
is compared with, and how the weights combine the terms."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from workbench.methods.dide import DiDEConfig, DiDEObjective
from workbench.models.dual import DualOutput
from workbench.models.fusion import FusionOutput

B, H, D = 2, 2, 4  # batch, heads, head width
T, N = 3, 5  # text tokens; image tokens ([CLS] + 4 patches): T != N, so a swapped map cannot fit silently
TEXT_MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])  # example 1 has a padded text token
IMAGE_MASKS = (torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]), torch.tensor([[1, 1, 0, 1, 1], [1, 1, 1, 1, 1]]))
LABELS = 3


def _qk(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return 1.5 * torch.randn(B, H, n, D, generator=g), 1.5 * torch.randn(B, H, n, D, generator=g)


class StandInTeacher(nn.Module):
    """A fusion teacher whose layer `l` on image `j` has the given (q, k) over [text][image] tokens."""

    def __init__(self, qk: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]], layers: int, images: int):
        super().__init__()
        self.config = SimpleNamespace(num_hidden_layers=layers)
        self.qk, self.images, self.weight = qk, images, nn.Parameter(torch.zeros(()))
        self.logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])

    def forward(self, input_ids, attention_mask, pixel_values, qk_layers=(), pixel_mask=None, **_):
        n = self.config.num_hidden_layers
        qk = [{layer % n: self.qk[(layer % n, j)] for layer in qk_layers} for j in range(self.images)]
        return FusionOutput(logits=self.logits, qk=qk, text_len=T)


class StandInStudent(nn.Module):
    """A dual student whose towers' layer `l` have the given (q, k); image `j` has the image mask `masks[j]`."""

    def __init__(self, text_qk, image_qk, layers: int, masks):
        super().__init__()
        self.text_config = SimpleNamespace(num_hidden_layers=layers)
        self.vision_config = SimpleNamespace(num_hidden_layers=layers)
        self.text_qk, self.image_qk, self.masks = text_qk, image_qk, masks
        self.images = len({j for _, j in image_qk})
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, input_ids, attention_mask, pixel_values, qk_layers=(), pixel_mask=None, **_):
        self.seen = (attention_mask, pixel_mask)
        n = self.text_config.num_hidden_layers
        return DualOutput(
            logits=torch.zeros(B, LABELS) + self.weight,
            qk_text={layer % n: self.text_qk[layer % n] for layer in qk_layers},
            qk_image=[{ls % n: self.image_qk[(ls % n, j)] for ls in qk_layers} for j in range(self.images)],
            image_masks=[] if self.masks is None else list(self.masks),
        )


def _batch(images: int):
    return SimpleNamespace(
        input_ids=torch.ones(B, T, dtype=torch.long),
        attention_mask=TEXT_MASK,
        pixel_values=torch.zeros(B, images, 3, 8, 8),
        pixel_mask=None,
        labels=torch.tensor([0, 1]),
        targets=None,
        qtypes=["a", "b"],
        texts=["x", "y"],
    )


def _kl(p_scores: np.ndarray, q_scores: np.ndarray) -> float:
    """KL(softmax(p) || softmax(q)) of two score vectors, by hand."""
    p = np.exp(p_scores - p_scores.max())
    p /= p.sum()
    q = np.exp(q_scores - q_scores.max())
    q /= q.sum()
    return float(np.sum(p * (np.log(p) - np.log(q))))


def _by_hand(t_q, t_k, s_text, s_image, image_mask, reverse=False) -> tuple[float, float]:
    """(t2i, i2t) for one layer pair and one image: the mean over real queries (batch x heads) of
    KL(teacher || student) over the real keys of the other modality (`reverse`: KL(student || teacher))."""
    kl = (lambda a, b: _kl(b, a)) if reverse else _kl
    t_q, t_k = t_q.double().numpy(), t_k.double().numpy()
    (sq_t, sk_t), (sq_i, sk_i) = [(a.double().numpy(), b.double().numpy()) for a, b in (s_text, s_image)]
    text, image = TEXT_MASK.numpy(), image_mask.numpy()
    t2i, i2t = [], []
    for b in range(B):
        real_text = [i for i in range(T) if text[b, i]]
        real_image = [j for j in range(N) if image[b, j]]
        for h in range(H):
            for i in real_text:  # a text query over the real image keys
                teacher = np.array([t_q[b, h, i] @ t_k[b, h, T + j] for j in real_image]) / np.sqrt(D)
                student = np.array([sq_t[b, h, i] @ sk_i[b, h, j] for j in real_image]) / np.sqrt(D)
                t2i.append(kl(teacher, student))
            for j in real_image:  # an image query over the real text keys
                teacher = np.array([t_q[b, h, T + j] @ t_k[b, h, i] for i in real_text]) / np.sqrt(D)
                student = np.array([sq_i[b, h, j] @ sk_t[b, h, i] for i in real_text]) / np.sqrt(D)
                i2t.append(kl(teacher, student))
    return float(np.mean(t2i)), float(np.mean(i2t))


def _setup(layers: int, images: int):
    teacher_qk = {(lt, j): _qk(100 + 10 * lt + j, T + N) for lt in range(layers) for j in range(images)}
    text_qk = {ls: _qk(200 + ls, T) for ls in range(layers)}
    image_qk = {(ls, j): _qk(300 + 10 * ls + j, N) for ls in range(layers) for j in range(images)}
    masks = IMAGE_MASKS[:images]
    teacher = StandInTeacher(teacher_qk, layers, images)
    student = StandInStudent(text_qk, image_qk, layers, masks)
    return teacher, student, teacher_qk, text_qk, image_qk, masks


def test_dide_terms_are_kl_teacher_to_student_over_real_queries_and_real_keys():
    teacher, student, teacher_qk, text_qk, image_qk, masks = _setup(layers=1, images=1)
    recipe = DiDEObjective("dide", DiDEConfig(soft=0.0, hard=0.0, t2i=2.0, i2t=0.5), teacher)
    loss, logs = recipe.loss(student, _batch(images=1))
    want_t2i, want_i2t = _by_hand(*teacher_qk[(0, 0)], text_qk[0], image_qk[(0, 0)], masks[0])
    assert logs["t2i"] == pytest.approx(want_t2i, rel=1e-5)
    assert logs["i2t"] == pytest.approx(want_i2t, rel=1e-5)
    assert loss.item() == pytest.approx(2.0 * want_t2i + 0.5 * want_i2t, rel=1e-5)
    # the hand computation decides: the reverse KL, or the padding left in, give other values
    reverse_t2i, _ = _by_hand(*teacher_qk[(0, 0)], text_qk[0], image_qk[(0, 0)], masks[0], reverse=True)
    unmasked_t2i, _ = _by_hand(*teacher_qk[(0, 0)], text_qk[0], image_qk[(0, 0)], torch.ones(B, N, dtype=torch.long))
    assert abs(reverse_t2i - want_t2i) > 1e-2 and abs(unmasked_t2i - want_t2i) > 1e-2


def test_each_student_layer_learns_from_the_teacher_layer_paired_with_it():
    teacher, student, teacher_qk, text_qk, image_qk, masks = _setup(layers=2, images=1)
    recipe = DiDEObjective("dide", DiDEConfig(soft=0.0, hard=0.0, layers=(0, 1)), teacher)
    _, logs = recipe.loss(student, _batch(images=1))
    per_layer = [_by_hand(*teacher_qk[(layer, 0)], text_qk[layer], image_qk[(layer, 0)], masks[0]) for layer in (0, 1)]
    assert logs["t2i"] == pytest.approx(per_layer[0][0] + per_layer[1][0], rel=1e-5)
    assert logs["i2t"] == pytest.approx(per_layer[0][1] + per_layer[1][1], rel=1e-5)
    crossed = [_by_hand(*teacher_qk[(1 - ls, 0)], text_qk[ls], image_qk[(ls, 0)], masks[0]) for ls in (0, 1)]
    assert abs(sum(c[0] for c in crossed) - logs["t2i"]) > 1e-2  # the other pairing would give another sum


def test_default_layers_pair_the_last_layer_of_each_model():
    teacher, student, teacher_qk, text_qk, image_qk, masks = _setup(layers=2, images=1)
    _, logs = DiDEObjective("dide", DiDEConfig(soft=0.0, hard=0.0), teacher).loss(student, _batch(images=1))
    want_t2i, want_i2t = _by_hand(*teacher_qk[(1, 0)], text_qk[1], image_qk[(1, 0)], masks[0])
    assert logs["t2i"] == pytest.approx(want_t2i, rel=1e-5) and logs["i2t"] == pytest.approx(want_i2t, rel=1e-5)


def test_two_images_each_compare_their_own_maps_under_their_own_image_mask():
    teacher, student, teacher_qk, text_qk, image_qk, masks = _setup(layers=1, images=2)
    _, logs = DiDEObjective("dide", DiDEConfig(soft=0.0, hard=0.0), teacher).loss(student, _batch(images=2))
    per_image = [_by_hand(*teacher_qk[(0, j)], text_qk[0], image_qk[(0, j)], masks[j]) for j in (0, 1)]
    assert logs["t2i"] == pytest.approx(per_image[0][0] + per_image[1][0], rel=1e-5)
    assert logs["i2t"] == pytest.approx(per_image[0][1] + per_image[1][1], rel=1e-5)


def test_dide_adds_the_soft_label_term_of_the_teachers_logits_to_the_attention_terms():
    teacher, student, teacher_qk, text_qk, image_qk, masks = _setup(layers=1, images=1)
    recipe = DiDEObjective("dide", DiDEConfig(soft=1.5, hard=0.0, t2i=1.0, i2t=1.0, temperature=2.0), teacher)
    loss, logs = recipe.loss(student, _batch(images=1))
    # the student's logits are all 0: KL(softmax(z_T / 2) || uniform) * 2^2, averaged over the batch
    z = teacher.logits.double().numpy() / 2.0
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    soft = float(np.mean(np.sum(p * (np.log(p) - np.log(1 / LABELS)), 1))) * 4.0
    assert logs["soft"] == pytest.approx(soft, rel=1e-5) and "ce" not in logs
    assert loss.item() == pytest.approx(1.5 * soft + logs["t2i"] + logs["i2t"], rel=1e-5)


class Wrapped(nn.Module):
    """The student inside a wrapper that keeps it as `.module` (as DDP does)."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


def test_the_student_gets_the_batchs_masks_and_a_wrapped_student_is_read_through():
    teacher, student, teacher_qk, text_qk, image_qk, masks = _setup(layers=1, images=1)
    batch = _batch(images=1)
    batch.pixel_mask = torch.ones(B, 1, 8, 8)
    recipe = DiDEObjective("dide", DiDEConfig(soft=0.0, hard=0.0), teacher)
    _, logs = recipe.loss(Wrapped(student), batch)
    assert student.seen[0] is batch.attention_mask and student.seen[1] is batch.pixel_mask
    assert logs["t2i"] == pytest.approx(
        _by_hand(*teacher_qk[(0, 0)], text_qk[0], image_qk[(0, 0)], masks[0])[0], rel=1e-5
    )


def test_without_image_masks_every_image_token_is_a_key_and_a_query():
    teacher, student, teacher_qk, text_qk, image_qk, _ = _setup(layers=1, images=1)
    student.masks = None  # square images: the student reports no image masks
    _, logs = DiDEObjective("dide", DiDEConfig(soft=0.0, hard=0.0), teacher).loss(student, _batch(images=1))
    every = torch.ones(B, N, dtype=torch.long)
    want_t2i, want_i2t = _by_hand(*teacher_qk[(0, 0)], text_qk[0], image_qk[(0, 0)], every)
    assert logs["t2i"] == pytest.approx(want_t2i, rel=1e-5) and logs["i2t"] == pytest.approx(want_i2t, rel=1e-5)


def test_a_layer_map_pairs_a_teacher_layer_with_other_layers_of_each_tower():
    """ "1:0:1": teacher layer 1 into text-tower layer 0 and image-tower layer 1 (every index differs from a plain
    `layers` pairing somewhere)."""
    teacher, student, teacher_qk, text_qk, image_qk, masks = _setup(layers=2, images=1)
    recipe = DiDEObjective("dide", DiDEConfig(soft=0.0, hard=0.0, layer_map=("1:0:1",)), teacher)
    _, logs = recipe.loss(student, _batch(images=1))
    want_t2i, want_i2t = _by_hand(*teacher_qk[(1, 0)], text_qk[0], image_qk[(1, 0)], masks[0])
    assert logs["t2i"] == pytest.approx(want_t2i, rel=1e-5) and logs["i2t"] == pytest.approx(want_i2t, rel=1e-5)
