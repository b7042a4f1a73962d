"""The retrieval objective (`RetrievalObjective`, workbench/methods/mcad.py) on scripted stand-ins, against values
computed by hand.

The student stand-in returns hand-chosen embeddings (normalised by its `embed_for_retrieval`) and a chosen
temperature; the dual teacher stand-in returns hand-chosen unit embeddings and its scale. The expected loss is
recomputed here in plain Python (float64): InfoNCE on the rows and columns of the student's similarities, the
KL of the teacher's row and column softmaxes to the student's at temperature T (times T^2), the embedding
distances, and the weighted sum. The configuration checks, the teachers' freezing, `prepare` and `evaluate` are
checked on the same stand-ins."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import workbench.methods.mcad as mcad
from workbench.methods.mcad import RetrievalConfig, RetrievalObjective
from workbench.retrieval.adapter import FusedFeatureMap
from workbench.retrieval.evaluation import format_retrieval

B = 3
S_IMAGE = [[1.0, 0.0, 0.0], [1.0, 2.0, 0.0], [0.0, 1.0, 3.0]]  # the student's (unnormalised) embeddings
S_TEXT = [[2.0, 1.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 2.0]]
T_IMAGE = [[0.6, 0.8, 0.0], [0.0, 0.6, 0.8], [0.8, 0.0, 0.6]]  # the dual teacher's unit embeddings
T_TEXT = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
T_SCALE = 4.0
S_SCALE = 3.0


# ---------------------------------------------------------------------------------------------- by hand


def _unit(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def _sims(a, b, scale):
    return [[scale * sum(x * y for x, y in zip(r, c)) for c in b] for r in a]


def _t(m):
    return [list(r) for r in zip(*m)]


def _log_softmax(row):
    top = max(row)
    z = math.log(sum(math.exp(x - top) for x in row)) + top
    return [x - z for x in row]


def _info_nce(s):
    rows = sum(-_log_softmax(r)[i] for i, r in enumerate(s)) / len(s)
    cols = sum(-_log_softmax(r)[i] for i, r in enumerate(_t(s))) / len(s)
    return (rows + cols) / 2


def _kl_rows(student, teacher, temperature):
    total = 0.0
    for s, t in zip(student, teacher):
        ls, lt = _log_softmax([x / temperature for x in s]), _log_softmax([x / temperature for x in t])
        total += sum(math.exp(b) * (b - a) for a, b in zip(ls, lt))
    return total / len(student) * temperature**2


def _distance(s, t, kind):
    if kind == "squared-l2":
        return sum((a - b) ** 2 for a, b in zip(s, t))
    return 1 - sum(a * b for a, b in zip(s, t)) / math.sqrt(sum(a * a for a in s) * sum(b * b for b in t))


def _expected(contrastive, kl, feature, temperature, kind):
    si, st = [_unit(v) for v in S_IMAGE], [_unit(v) for v in S_TEXT]
    s, z = _sims(si, st, S_SCALE), _sims(T_IMAGE, T_TEXT, T_SCALE)
    i2t, t2i = _kl_rows(s, z, temperature), _kl_rows(_t(s), _t(z), temperature)
    feat = (
        sum(_distance(a, b, kind) for a, b in zip(si, T_IMAGE)) / B
        + sum(_distance(a, b, kind) for a, b in zip(st, T_TEXT)) / B
    ) / 2
    con = _info_nce(s)
    return contrastive * con + kl * (i2t + t2i) / 2 + feature * feat, con, i2t, t2i, feat


# ---------------------------------------------------------------------------------------------- stand-ins


class Student(nn.Module):
    def __init__(self, scale=S_SCALE):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(scale)))
        self.seen = {}

    def encode_text(self, input_ids, attention_mask):
        self.seen["text"] = (input_ids, attention_mask)
        return torch.tensor(S_TEXT)

    def encode_image(self, pixels, pixel_mask=None):
        self.seen["image"] = (pixels, pixel_mask)
        return torch.tensor(S_IMAGE)

    def embed_for_retrieval(self, text, image):
        return nn.functional.normalize(text, dim=-1), nn.functional.normalize(image, dim=-1)


class Wrapped(nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module = module


class Dual:
    def __init__(self):
        self.model = nn.Linear(2, 2)

    def image_embeddings(self, pixels):
        return torch.tensor(T_IMAGE)

    def embed_texts(self, texts):
        return torch.tensor(T_TEXT)

    def logit_scale(self):
        return torch.tensor(T_SCALE)


class Fusion:
    def __init__(self):
        self.model = nn.Linear(2, 2)
        self.moved = []

    def pooled(self, pixels, texts):
        return torch.eye(B, 2)

    def to(self, device):
        self.moved.append(device)
        return self


def _batch():
    g = torch.Generator().manual_seed(0)
    pixel_mask = torch.ones(B, 1, 4, 4)
    pixel_mask[1, 0, :, 3:] = 0
    return SimpleNamespace(
        input_ids=torch.arange(B * 4).reshape(B, 4),
        attention_mask=torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]]),
        pixel_values=torch.rand(B, 1, 3, 4, 4, generator=g),
        pixel_mask=pixel_mask,
        texts=["a", "b", "c"],
    )


def _config(**kw):
    return RetrievalConfig(**{"gamma": 0.0, "beta": 0.0, **kw})


# ---------------------------------------------------------------------------------------------- the loss


@pytest.mark.parametrize("kind", ["squared-l2", "cosine"])
def test_the_loss_is_the_weighted_sum_of_infonce_mean_kl_and_mean_feature_distance(kind):
    config = _config(contrastive=1.5, kl=0.7, feature=0.3, temperature=2.0, feature_loss=kind)
    obj = RetrievalObjective("kd", Dual(), None, config)
    loss, logs = obj.loss(Student(), _batch())
    want, con, i2t, t2i, feat = _expected(1.5, 0.7, 0.3, 2.0, kind)
    assert logs["contrastive"] == pytest.approx(con, rel=1e-5)
    assert logs["kl_i2t"] == pytest.approx(i2t, rel=1e-5) and logs["kl_t2i"] == pytest.approx(t2i, rel=1e-5)
    assert logs["feature"] == pytest.approx(feat, rel=1e-5)
    assert logs["scale"] == pytest.approx(S_SCALE, rel=1e-6)
    assert set(logs) == {"contrastive", "kl_i2t", "kl_t2i", "feature", "scale"}
    assert loss.item() == pytest.approx(want, rel=1e-5)
    # the hand computation decides: the two directions differ, and T = 1 gives other KL terms
    assert abs(i2t - t2i) > 1e-3 and abs(_expected(1.5, 0.7, 0.3, 1.0, kind)[0] - want) > 1e-3


def test_the_other_feature_distance_gives_another_loss():
    a = _expected(1.0, 1.0, 1.0, 1.0, "cosine")[4]
    b = _expected(1.0, 1.0, 1.0, 1.0, "squared-l2")[4]
    assert abs(a - b) > 1e-2


def test_a_wrapped_student_is_read_through_for_its_embeddings_and_its_scale():
    obj = RetrievalObjective("kd", Dual(), None, _config(contrastive=1.0, kl=1.0, feature=0.0))
    student = Student()
    loss, logs = obj.loss(Wrapped(student), _batch())
    assert loss.item() == pytest.approx(_expected(1.0, 1.0, 0.0, 1.0, "cosine")[0], rel=1e-5)
    assert logs["scale"] == pytest.approx(S_SCALE, rel=1e-6)


def test_the_student_side_uses_the_text_mask_the_first_images_pixel_mask_and_a_clamped_scale():
    batch = _batch()
    student = Student(scale=250.0)  # above CLIP's clamp of 100
    i, t, logits = RetrievalObjective.student_side(student, batch)
    assert student.seen["text"][1] is batch.attention_mask
    assert torch.equal(student.seen["image"][0], batch.pixel_values[:, 0])
    assert torch.equal(student.seen["image"][1], batch.pixel_mask[:, 0])
    want = _sims([_unit(v) for v in S_IMAGE], [_unit(v) for v in S_TEXT], 100.0)
    torch.testing.assert_close(logits, torch.tensor(want))
    torch.testing.assert_close(i, torch.tensor([_unit(v) for v in S_IMAGE]))
    torch.testing.assert_close(t, torch.tensor([_unit(v) for v in S_TEXT]))
    batch.pixel_mask = None
    RetrievalObjective.student_side(Wrapped(student), batch)
    assert student.seen["image"][1] is None


def test_the_fused_maps_fit_is_logged_when_the_fused_features_are_used():
    fused_map = FusedFeatureMap(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), r2=0.25)
    obj = RetrievalObjective("mcad", Dual(), Fusion(), RetrievalConfig(), fused_map)
    _, logs = obj.loss(Student(), _batch())
    assert logs["fused_map_r2"] == 0.25
    _, logs = RetrievalObjective("kd", Dual(), None, _config()).loss(Student(), _batch())
    assert "fused_map_r2" not in logs


# ---------------------------------------------------------------------------------------------- construction


def test_a_recipe_with_every_weight_zero_is_refused():
    with pytest.raises(ValueError, match="^every loss weight is zero: nothing to train on$"):
        RetrievalObjective("x", Dual(), None, _config(contrastive=0.0, kl=0.0, feature=0.0))


def test_teachers_a_recipe_does_not_use_are_dropped_and_the_ones_it_uses_are_frozen():
    fused_map = FusedFeatureMap(torch.eye(3), r2=1.0)
    # no fused features (gamma = 0): the map and the fusion teacher are not kept
    obj = RetrievalObjective("kd", Dual(), Fusion(), _config(), fused_map)
    assert obj.fused_map is None and obj.fusion is None and obj.dual is not None
    # contrastive only (gamma left at 1): no teacher at all, so no map either
    obj = RetrievalObjective("clip", Dual(), Fusion(), RetrievalConfig(kl=0.0, feature=0.0), fused_map)
    assert obj.fused_map is None and obj.fusion is None and obj.dual is None
    obj = RetrievalObjective("mcad", Dual(), Fusion(), RetrievalConfig(), fused_map)
    assert obj.fused_map is fused_map
    for teacher in (obj.dual, obj.fusion):
        assert not teacher.model.training and not any(p.requires_grad for p in teacher.model.parameters())


def test_the_feature_loss_names_and_the_legacy_mse_name():
    assert RetrievalConfig().feature_loss == "cosine"
    assert RetrievalConfig(feature_loss="squared-l2").feature_loss == "squared-l2"
    assert RetrievalConfig(feature_loss="mse").feature_loss == "squared-l2"
    with pytest.raises(ValueError, match=r"^feature_loss must be 'cosine' or 'squared-l2', got 'l1'$"):
        RetrievalConfig(feature_loss="l1")


def test_legacy_configs_with_an_alpha_and_no_gamma_are_the_scalar_method():
    assert RetrievalConfig.from_legacy({"alpha": 1.0, "kl": 1.0}) == {"alpha": 1.0, "kl": 1.0, "gamma": 0.0}
    for values in ({"alpha": 1.0, "gamma": 0.5}, {"gamma": 1.0}, {"kl": 1.0}, {}):
        assert RetrievalConfig.from_legacy(values) == values


# ---------------------------------------------------------------------------------------------- prepare, evaluate


def test_prepare_moves_the_teachers_to_the_accelerators_device():
    obj = RetrievalObjective("mcad", Dual(), Fusion(), RetrievalConfig(), FusedFeatureMap(torch.eye(3), r2=1.0))
    meta = torch.device("meta")
    obj.prepare(SimpleNamespace(device=meta), Student())
    assert all(p.device == meta for p in obj.dual.model.parameters()) and obj.fusion.moved == [meta]
    alone = RetrievalObjective("clip", None, None, RetrievalConfig(kl=0.0, feature=0.0))
    alone.prepare(SimpleNamespace(device=meta), Student())  # no teacher: nothing to move


def test_evaluate_measures_retrieval_with_the_student_as_a_dual_encoder(monkeypatch):
    calls = []

    class Encoder:
        def __init__(self, model, tokenizer):
            self.model, self.tokenizer = model, tokenizer

    def evaluate_retrieval(enc, dataset, limit=None, timing=True, progress=True):
        calls.append((enc, dataset, limit, timing, progress))
        return {"r1": 0.5}

    monkeypatch.setattr(mcad, "DualEncoder", Encoder)
    monkeypatch.setattr(mcad, "evaluate_retrieval", evaluate_retrieval)
    monkeypatch.setattr(mcad, "loop_metrics", lambda m: {"looped": m})
    obj = RetrievalObjective("clip", None, None, RetrievalConfig(kl=0.0, feature=0.0))
    model, collator, test = object(), SimpleNamespace(tokenizer="tok"), SimpleNamespace(split="test")
    assert obj.evaluate(model, test, collator) == {"looped": {"r1": 0.5}}
    enc, dataset, limit, timing, progress = calls[-1]
    assert enc.model is model and enc.tokenizer == "tok" and dataset is test
    assert limit is None and timing is True and progress is False
    val = SimpleNamespace(split="val")
    obj.evaluate(model, val, collator, limit=7, progress=True)
    assert calls[-1][1:] == (val, 7, False, True)  # timings only on the test split
    obj.evaluate(model, [], collator)
    assert calls[-1][3] is True  # a split without a name is timed


def test_format_metrics_is_the_retrieval_summary():
    direction = {"R@1": 0.5, "R@5": 1.0, "median_rank": 1.5, "n": 2}
    index = {"backend": "exact", "seconds": 0.5, "images_per_s": 4}
    metrics = {"n_images": 2, "n_texts": 2, "i2t": direction, "t2i": direction, "index": index, "params": 2e6,
               "size_mb": 8.0}  # fmt: skip
    text = RetrievalObjective.format_metrics(metrics)
    assert text == format_retrieval(metrics) and text.startswith("retrieval on 2 images / 2 captions")
