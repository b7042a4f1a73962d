"""The shared base of the fusion-teacher -> dual-student objectives (`TeacherObjective`,
workbench/methods/dual_student.py) and DiDE's cached teacher outputs (`DiDEObjective.loss`), on stand-ins.

Checked against independent expectations: the on-disk cache a config asks for (folder, teacher digest, value
type) and what `finish` leaves on disk; the label terms of a batch that carries no VQA targets, by hand; the
teacher moved to the accelerator's device. DiDE: a teacher output cached from one batch layout (five image
tokens, the last ones padding) and read back in another (four image tokens) gives the loss an uncached teacher
of that layout gives, so the entries hold each example's real image tokens only (the student's image masks)."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from workbench.methods.dide import DiDEConfig, DiDEObjective
from workbench.methods.dual_student import TeacherObjective
from workbench.methods.mad_features import teacher_digest
from workbench.models.dual import DualOutput
from workbench.models.fusion import FusionOutput

# ---------------------------------------------------------------------------------------------- the cache


def test_a_teacher_cache_folder_gives_a_cache_of_that_teacher_in_the_configured_type(tmp_path):
    teacher = nn.Linear(3, 2)
    config = SimpleNamespace(teacher_cache=str(tmp_path), teacher_cache_dtype="float16")
    obj = TeacherObjective("kd", config, teacher)
    assert obj.name == "kd" and obj.config is config and obj.teacher is teacher
    assert obj.cache is not None and obj.cache.dir == tmp_path / teacher_digest(teacher)
    assert obj.cache.dtype == torch.float16
    # no value type in the config: float32
    plain = TeacherObjective("kd", SimpleNamespace(teacher_cache=str(tmp_path)), teacher)
    assert plain.cache.dtype == torch.float32 and plain.cache.dir == obj.cache.dir


def test_no_cache_without_a_folder_or_without_a_teacher(tmp_path):
    assert TeacherObjective("kd", SimpleNamespace(), nn.Linear(3, 2)).cache is None
    assert TeacherObjective("kd", SimpleNamespace(teacher_cache=None), nn.Linear(3, 2)).cache is None
    assert TeacherObjective("none", SimpleNamespace(teacher_cache=str(tmp_path)), None).cache is None


def test_finish_writes_the_pending_entries_and_is_harmless_without_a_cache(tmp_path):
    teacher = nn.Linear(3, 2)
    obj = TeacherObjective("kd", SimpleNamespace(teacher_cache=str(tmp_path)), teacher)
    obj.cache.put("abc", {"logits": torch.tensor([1.0, 2.0])})
    assert not list(obj.cache.dir.glob("shard-*.safetensors"))
    obj.finish()
    assert len(list(obj.cache.dir.glob("shard-*.safetensors"))) == 1
    again = TeacherObjective("kd", SimpleNamespace(teacher_cache=str(tmp_path)), teacher)
    assert torch.equal(again.cache.get(["abc"])[0]["logits"], torch.tensor([1.0, 2.0]))
    TeacherObjective("kd", SimpleNamespace(), teacher).finish()  # no cache: nothing to write, no error


def test_prepare_moves_the_teacher_to_the_accelerators_device():
    obj = TeacherObjective("kd", SimpleNamespace(), nn.Linear(3, 2))
    obj.prepare(SimpleNamespace(device=torch.device("meta")), None)
    assert all(p.device == torch.device("meta") for p in obj.teacher.parameters())
    TeacherObjective("none", SimpleNamespace(), None).prepare(SimpleNamespace(device=torch.device("meta")), None)


# ---------------------------------------------------------------------------------------------- label terms


def test_label_terms_of_a_batch_without_vqa_targets_are_softmax_kd_and_cross_entropy():
    config = SimpleNamespace(hard=0.5, soft=2.0, temperature=2.0)
    obj = TeacherObjective("kd", config, None)
    student = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    teacher = torch.tensor([[0.0, 2.0, 0.0], [1.0, 1.0, 0.0]])
    batch = SimpleNamespace(labels=torch.tensor([0, 1]))  # a batch object with no `targets` at all
    total, logs = obj.label_terms(student, teacher, batch)

    def log_softmax(row):
        z = math.log(sum(math.exp(x) for x in row))
        return [x - z for x in row]

    kd = 0.0
    for s, t in zip(student.tolist(), teacher.tolist()):
        ls, lt = log_softmax([x / 2 for x in s]), log_softmax([x / 2 for x in t])
        kd += sum(math.exp(b) * (b - a) for a, b in zip(ls, lt))
    kd = kd / 2 * 4
    ce = (-log_softmax(student[0].tolist())[0] - log_softmax(student[1].tolist())[1]) / 2
    assert logs["soft"] == pytest.approx(kd, rel=1e-5) and logs["ce"] == pytest.approx(ce, rel=1e-5)
    assert logs["accuracy"] == 0.5
    assert total.item() == pytest.approx(2.0 * kd + 0.5 * ce, rel=1e-5)


# ---------------------------------------------------------------------------------------------- DiDE, cached

B, H, HD, T = 2, 2, 4, 3  # batch, heads, head width, text tokens
TEXT_MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])


def _qk(seed, n):
    g = torch.Generator().manual_seed(seed)
    return 1.5 * torch.randn(B, H, n, HD, generator=g), 1.5 * torch.randn(B, H, n, HD, generator=g)


class Teacher(nn.Module):
    """A fusion teacher whose last layer has the given (q, k) over [text][image] tokens."""

    def __init__(self, q, k):
        super().__init__()
        self.config = SimpleNamespace(num_hidden_layers=1)
        self.q, self.k, self.weight, self.calls = q, k, nn.Parameter(torch.zeros(())), 0

    def forward(self, input_ids, attention_mask, pixel_values, qk_layers=(), pixel_mask=None, **_):
        self.calls += 1
        return FusionOutput(logits=torch.zeros(B, 3), qk=[{0: (self.q, self.k)} for _ in qk_layers[:1]], text_len=T)


class Student(nn.Module):
    """A dual student whose towers' last layers have the given (q, k) and whose image has the given mask."""

    def __init__(self, text_qk, image_qk, mask):
        super().__init__()
        self.text_config = self.vision_config = SimpleNamespace(num_hidden_layers=1)
        self.text_qk, self.image_qk, self.mask = text_qk, image_qk, mask
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, input_ids, attention_mask, pixel_values, qk_layers=(), pixel_mask=None, **_):
        return DualOutput(
            logits=torch.zeros(B, 3) + self.weight,
            qk_text={0: self.text_qk},
            qk_image=[{0: self.image_qk}],
            image_masks=[self.mask],
        )


def test_dide_reads_cached_teacher_outputs_back_into_another_image_padding(tmp_path):
    batch = SimpleNamespace(
        input_ids=torch.tensor([[5, 6, 7], [8, 9, 0]]), attention_mask=TEXT_MASK,
        pixel_values=torch.arange(B * 3 * 4 * 4, dtype=torch.float).reshape(B, 1, 3, 4, 4), pixel_mask=None,
        labels=torch.tensor([0, 1]), targets=None, texts=["x", "y"],
    )  # fmt: skip
    tq, tk = _qk(1, T + 5)
    text_qk, (iq, ik) = _qk(2, T), _qk(3, 5)
    # five image tokens, the last padding in example 0 and the last two in example 1
    wide = Student(text_qk, (iq, ik), torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]]))
    # the same real tokens laid out in four positions
    narrow = Student(text_qk, (iq[:, :, :4], ik[:, :, :4]), torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]))
    config = DiDEConfig(soft=0.0, hard=0.0, teacher_cache=str(tmp_path))
    teacher = Teacher(tq, tk)
    cached = DiDEObjective("dide", config, teacher)
    first, _ = cached.loss(wide, batch)
    second, logs = cached.loss(narrow, batch)
    assert teacher.calls == 1  # the second pass read the cache
    reference = DiDEObjective("dide", DiDEConfig(soft=0.0, hard=0.0), Teacher(tq[:, :, : T + 4], tk[:, :, : T + 4]))
    want, want_logs = reference.loss(narrow, batch)
    assert second.item() == pytest.approx(want.item(), rel=1e-5)
    assert logs["t2i"] == pytest.approx(want_logs["t2i"], rel=1e-5)
    assert logs["i2t"] == pytest.approx(want_logs["i2t"], rel=1e-5)
    uncached_wide, _ = DiDEObjective("dide", DiDEConfig(soft=0.0, hard=0.0), Teacher(tq, tk)).loss(wide, batch)
    assert first.item() == pytest.approx(uncached_wide.item(), rel=1e-6)
