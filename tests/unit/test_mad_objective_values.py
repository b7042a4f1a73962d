"""MAD's objective (`MADObjective`, workbench/methods/mad.py) on scripted stand-ins, against hand-computed values.

The student is a stand-in whose final LayerNorm (an identity) emits hand-chosen hidden states, whose attention
maps are hand-built and whose logits are fixed; the teachers return hand-chosen features and masks; the probe
returns fixed confidences. The projections are set to the identity, so the student's features are its hidden
states. The expected loss is recomputed here in plain Python (float64): the per-token standardisation, the
cosine distance or mean squared error, the masks, the top-k patch by head- and text-averaged attention, the
confidence weights (proportional, summing to the batch size), the cross-entropy and the weighted sum.
"""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import workbench.methods.mad as mad
from workbench.errors import WorkbenchError
from workbench.methods.mad import MADConfig, MADObjective, MADProjections
from workbench.methods.mad_probe import example_key
from workbench.models import create_model

B, T, D = 2, 3, 4  # batch, text tokens, feature width (student, text and image teachers alike)
GRID = (2, 1)  # a non-square patch grid (tall images): P = 2 patches, not 1 x 1 nor 2 x 2
P = GRID[0] * GRID[1]
TEXTS = ["a red square", "two blue circles"]
ATTENTION_MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])  # example 1 has a padded text token
LOGITS = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
LABELS = torch.tensor([0, 2])
CONF = torch.tensor([0.75, 0.25])  # the probe's P(gold): weights 1.5 and 0.5 (sum = batch size)

# hidden states [B, T + 1 + P, D]: text tokens, the image [CLS], the patches
HIDDEN = torch.tensor(
    [
        [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [9.0, 9.0, 9.0, 9.0],
         [1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0]],
        [[1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], [3.0, 0.0, 1.0, 0.0], [9.0, 9.0, 9.0, 9.0],
         [1.0, 1.0, 1.0, 0.0], [0.0, 1.0, 0.0, 2.0]],
    ]
)  # fmt: skip
TEXT_TARGETS = torch.tensor(
    [
        [[1.0, -1.0, 1.0, -1.0], [2.0, 0.0, 0.0, -2.0], [0.0, 3.0, 0.0, -3.0]],
        [[1.0, 1.0, -1.0, -1.0], [3.0, 1.0, -1.0, -3.0], [5.0, 0.0, 0.0, -5.0]],
    ]
)
# the text teacher's own token mask: example 0's last token has no target; example 1's padded one has one
TEXT_TARGET_MASK = torch.tensor([[True, True, False], [True, True, True]])
IMAGE_TARGETS = torch.tensor(
    [[[1.0, 0.0, 2.0, 1.0], [0.0, 2.0, 1.0, 1.0]], [[4.0, 0.0, 0.0, 0.0], [1.0, 1.0, 3.0, 3.0]]]
)
SENTENCE = torch.tensor([[1.0, 2.0, 3.0, 6.0], [0.0, 0.0, 1.0, 3.0]])


# ---------------------------------------------------------------------------------------------- by hand


def _standardise(v):
    mean = sum(v) / len(v)
    var = sum((x - mean) ** 2 for x in v) / len(v)
    return [(x - mean) / math.sqrt(var + 1e-5) for x in v]


def _distance(s, t, kind):
    t = _standardise(t)
    if kind == "mse":
        return sum((a - b) ** 2 for a, b in zip(s, t)) / len(s)
    dot = sum(a * b for a, b in zip(s, t))
    return 1 - dot / (math.sqrt(sum(a * a for a in s)) * math.sqrt(sum(b * b for b in t)))


def _term(pairs_per_instance, kind, weights):
    """sum_i w_i * mean over instance i's (student, target) pairs of the distance, divided by the batch size."""
    total = 0.0
    for w, pairs in zip(weights, pairs_per_instance):
        if pairs:
            total += w * sum(_distance(s, t, kind) for s, t in pairs) / len(pairs)
    return total / len(pairs_per_instance)


def _ce():
    out = []
    for row, y in zip(LOGITS.tolist(), LABELS.tolist()):
        out.append(math.log(sum(math.exp(z) for z in row)) - row[y])
    return sum(out) / len(out)


def _expected(kind="cosine", text_tokens=((0, 1), (0, 1)), patches=((1,), (0,)), weights=(1.5, 0.5), fw=0.5):
    h = HIDDEN.tolist()
    text = [[(h[b][i], TEXT_TARGETS[b, i].tolist()) for i in text_tokens[b]] for b in range(B)]
    image = [[(h[b][T + 1 + j], IMAGE_TARGETS[b, j].tolist()) for j in patches[b]] for b in range(B)]
    f_text, f_image = _term(text, kind, weights), _term(image, kind, weights)
    return _ce() + fw * (f_text + f_image), f_text, f_image


# ---------------------------------------------------------------------------------------------- stand-ins


def _attentions():
    """Two layers of [B, H=2, 6, 6] attention. The last layer's head- and real-text-averaged text-to-image
    attention ranks patch 1 first in example 0 and patch 0 in example 1; the first layer the other way."""
    n = T + 1 + P
    last, first = torch.zeros(B, 2, n, n), torch.zeros(B, 2, n, n)
    last[0, :, :T, T + 1 :] = torch.tensor([0.2, 0.6])
    last[1, :, :2, T + 1 :] = torch.tensor([0.5, 0.3])
    last[1, :, 2, T + 1 :] = torch.tensor([0.0, 9.0])  # example 1's padded query: counting it would pick patch 1
    first[0, :, :T, T + 1 :] = torch.tensor([0.6, 0.2])
    first[1, :, :T, T + 1 :] = torch.tensor([0.1, 0.7])
    return [first, last]


class Student(nn.Module):
    """A fusion student stand-in: its `vilt.layernorm` emits HIDDEN (so the MAD hook sees it)."""

    def __init__(self):
        super().__init__()
        self.vilt = nn.Module()
        self.vilt.layernorm = nn.Identity()
        self.weight = nn.Parameter(torch.zeros(()))
        self.calls = []

    def forward(self, input_ids, attention_mask, pixel_values, output_attentions=False):
        self.calls.append(output_attentions)
        self.vilt.layernorm(HIDDEN + self.weight)
        return SimpleNamespace(
            logits=LOGITS + self.weight,
            text_len=T,
            grid=GRID,
            attentions=[_attentions()] if output_attentions else [],
        )


class Wrapped(nn.Module):
    """The student kept as `.module`, as DDP keeps it."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


class TextTeacher(nn.Module):
    dim = D

    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(1, 1)
        self.seen = []

    def for_student(self, texts, offsets, cls_first):
        self.seen.append((texts, offsets, cls_first))
        return TEXT_TARGETS, TEXT_TARGET_MASK, SENTENCE

    def encode(self, texts):
        return SimpleNamespace(sentence=SENTENCE[: len(texts)])


class VisionTeacher(nn.Module):
    dim = D

    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(1, 1)
        self.seen = []

    def forward(self, pixel_values, grid=None):
        self.seen.append((pixel_values.shape[0], grid))
        feats = IMAGE_TARGETS[: pixel_values.shape[0]]
        return feats, torch.ones(feats.shape[:2], dtype=torch.bool)


class Probe:
    def __init__(self):
        self.seen = []

    def prob_of_gold(self, pooled, labels, keys):
        self.seen.append((pooled, labels, keys))
        return CONF


class Tokenizer:
    cls_token_id = 7


def _batch(first_ids=(7, 7)):
    g = torch.Generator().manual_seed(0)
    ids = torch.tensor([[first_ids[0], 11, 12], [first_ids[1], 13, 0]])
    return SimpleNamespace(
        input_ids=ids,
        attention_mask=ATTENTION_MASK,
        pixel_values=torch.rand(B, 1, 3, 4, 8, generator=g),
        labels=LABELS,
        texts=TEXTS,
    )


@pytest.fixture
def offsets(monkeypatch):
    """`student_offsets` replaced by a recorder returning a marker (the text teacher stand-in checks it gets it)."""
    seen = []
    marker = torch.full((B, T, 2), 5)

    def fake(tokenizer, texts, input_ids):
        seen.append((tokenizer, texts, input_ids))
        return marker

    monkeypatch.setattr(mad, "student_offsets", fake)
    return seen, marker


def _objective(text=True, vision=True, tokenizer=None, probe=True, **config):
    config = {"k": 1, "feature_weight": 0.5, **config}
    obj = MADObjective(
        "mad",
        TextTeacher() if text else None,
        VisionTeacher() if vision else None,
        Tokenizer() if tokenizer is None else tokenizer,
        MADConfig(**config),
    )
    if probe:
        obj.probe = Probe()
    return obj


def _attached(obj, student):
    obj.projections = MADProjections(D, D if obj.text is not None else None, D if obj.vision is not None else None)
    for proj in (obj.projections.text, obj.projections.image):
        if proj is not None:
            with torch.no_grad():
                proj.weight.copy_(torch.eye(D))
                proj.bias.zero_()
    student.mad_projections = obj.projections
    return student


# ---------------------------------------------------------------------------------------------- the loss


def test_mad_loss_is_ce_plus_weighted_confidence_scaled_text_and_top_k_image_terms(offsets):
    obj = _objective()
    student = _attached(obj, Student())
    batch = _batch()
    loss, logs = obj.loss(student, batch)
    want, f_text, f_image = _expected()
    assert logs["f_text"] == pytest.approx(f_text, rel=1e-5)
    assert logs["f_image"] == pytest.approx(f_image, rel=1e-5)
    assert loss.item() == pytest.approx(want, rel=1e-5)
    assert set(logs) == {"ce", "accuracy", "conf", "f_text", "f_image"}
    assert logs["ce"] == pytest.approx(_ce(), rel=1e-6)
    assert logs["accuracy"] == 0.5  # example 0 right (argmax 0), example 1 wrong (argmax 1, gold 2)
    assert logs["conf"] == pytest.approx(0.5)
    assert student.calls == [True]  # attention maps asked for: token selection reads them
    # the recomputation decides: other masks, weights, patches or signs give other values
    assert abs(_expected(weights=(1.0, 1.0))[0] - want) > 1e-3
    assert abs(_expected(text_tokens=((0, 1, 2), (0, 1, 2)))[0] - want) > 1e-3
    assert abs(_expected(patches=((0,), (1,)))[0] - want) > 1e-3
    assert abs(_expected(patches=((0, 1), (0, 1)))[0] - want) > 1e-3


def test_mad_loss_with_the_mean_squared_error(offsets):
    obj = _objective(feature_loss="mse")
    loss, logs = obj.loss(_attached(obj, Student()), _batch())
    want, f_text, f_image = _expected("mse")
    assert logs["f_text"] == pytest.approx(f_text, rel=1e-4)
    assert logs["f_image"] == pytest.approx(f_image, rel=1e-4)
    assert loss.item() == pytest.approx(want, rel=1e-4)
    assert abs(_expected("cosine")[0] - want) > 1e-2


def test_the_probe_scores_the_batchs_pooled_teacher_features_under_its_pair_keys(offsets):
    obj = _objective()
    batch = _batch()
    obj.loss(_attached(obj, Student()), batch)
    ((pooled, labels, keys),) = obj.probe.seen
    assert keys == [example_key(text, pixels) for text, pixels in zip(TEXTS, batch.pixel_values[:, 0])]
    assert labels is LABELS
    # pooled: the standardised sentence feature, then the mean of the standardised image features
    for b in range(B):
        image = [_standardise(v) for v in IMAGE_TARGETS[b].tolist()]
        want = _standardise(SENTENCE[b].tolist()) + [sum(col) / P for col in zip(*image)]
        assert pooled[b].tolist() == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_without_selection_or_confidence_every_patch_counts_alike(offsets):
    obj = _objective(token_selection=False, confidence=False, probe=False)
    student = _attached(obj, Student())
    loss, logs = obj.loss(student, _batch())
    want, f_text, f_image = _expected(patches=((0, 1), (0, 1)), weights=(1.0, 1.0))
    assert logs["f_image"] == pytest.approx(f_image, rel=1e-5) and logs["f_text"] == pytest.approx(f_text, rel=1e-5)
    assert loss.item() == pytest.approx(want, rel=1e-5)
    assert "conf" not in logs and student.calls == [False]


def test_the_selection_reads_the_configured_layer(offsets):
    obj = _objective(select_layer=0, confidence=False, probe=False)
    _, logs = obj.loss(_attached(obj, Student()), _batch())
    assert logs["f_image"] == pytest.approx(_expected(patches=((0,), (1,)), weights=(1, 1))[2], rel=1e-5)


def test_a_text_only_mad_has_no_image_term_and_needs_no_image_projection(offsets):
    obj = _objective(vision=False, confidence=False, probe=False)
    assert obj.vision is None
    loss, logs = obj.loss(_attached(obj, Student()), _batch())
    _, f_text, _ = _expected(weights=(1, 1))
    assert "f_image" not in logs and logs["f_text"] == pytest.approx(f_text, rel=1e-5)
    assert loss.item() == pytest.approx(_ce() + 0.5 * f_text, rel=1e-5)


def test_a_vision_only_mad_needs_no_tokenizer_and_no_text_projection(offsets):
    seen, _ = offsets
    obj = _objective(text=False, tokenizer=object(), confidence=False, probe=False)
    obj.tokenizer = None  # the text side is absent: nothing reads the tokenizer
    assert obj.text is None
    loss, logs = obj.loss(_attached(obj, Student()), _batch())
    _, _, f_image = _expected(weights=(1, 1))
    assert "f_text" not in logs and logs["f_image"] == pytest.approx(f_image, rel=1e-5)
    assert loss.item() == pytest.approx(_ce() + 0.5 * f_image, rel=1e-5)
    assert seen == []  # no student offsets without a text teacher


def test_the_text_teacher_gets_the_student_offsets_and_whether_the_student_starts_with_cls(offsets):
    seen, marker = offsets
    obj = _objective(confidence=False, probe=False)
    student = _attached(obj, Student())
    batch = _batch()
    obj.loss(student, batch)
    assert seen[0][0] is obj.tokenizer and seen[0][1] == TEXTS and seen[0][2] is batch.input_ids
    texts, got, cls_first = obj.text.seen[-1]
    assert texts == TEXTS and got is marker and cls_first is True
    obj.loss(student, _batch(first_ids=(7, 9)))  # one example does not start with [CLS]
    assert obj.text.seen[-1][2] is False
    obj.loss(student, _batch(first_ids=(9, 9)))
    assert obj.text.seen[-1][2] is False
    obj.tokenizer = SimpleNamespace()  # a tokenizer without a [CLS] token
    obj.loss(student, _batch())
    assert obj.text.seen[-1][2] is False
    obj.tokenizer = SimpleNamespace(cls_token_id=None)
    obj.loss(student, _batch())
    assert obj.text.seen[-1][2] is False


def test_a_wrapped_student_is_read_through(offsets):
    obj = _objective()
    student = _attached(obj, Student())
    loss, _ = obj.loss(Wrapped(student), _batch())
    assert loss.item() == pytest.approx(_expected()[0], rel=1e-5)


def test_the_loss_refuses_two_images_a_detached_student_and_an_unfitted_probe(offsets):
    obj = _objective()
    batch = _batch()
    with pytest.raises(WorkbenchError, match=r"^MADObjective\.attach\(student\) first: the projections live on the "
                       r"student$"):  # fmt: skip
        obj.loss(Student(), batch)
    student = _attached(obj, Student())
    two = SimpleNamespace(**{**vars(batch), "pixel_values": batch.pixel_values.repeat(1, 2, 1, 1, 1)})
    with pytest.raises(WorkbenchError, match=r"^MAD is implemented for one image per example \(VQA, VE\)$"):
        obj.loss(student, two)
    obj.probe = None
    with pytest.raises(
        WorkbenchError, match=r"^confidence weighting: the probe is not fitted \(prepare / fit_confidence_probe\)$"
    ):
        obj.loss(student, batch)


# ---------------------------------------------------------------------------------------------- construction


def test_the_objective_keeps_its_name_config_and_empty_state():
    obj = _objective(probe=False)
    assert obj.name == "mad" and obj.config.k == 1
    assert obj.probe is None and obj.probe_info == {} and obj.projections is None and obj.probe_data is None
    assert obj.image_cache_size == 0 and obj.image_cache == {}
    data = [1, 2, 3]
    other = MADObjective("mad", TextTeacher(), None, Tokenizer(), probe_data=data, image_cache_size=5)
    assert other.probe_data is data and other.image_cache_size == 5


def test_without_a_config_the_methods_registered_defaults_are_used():
    obj = MADObjective("mad-naive", TextTeacher(), VisionTeacher(), Tokenizer())
    assert obj.config.token_selection is False and obj.config.confidence is False and obj.config.k == 4


def test_either_teacher_alone_is_enough_and_none_is_refused():
    only_text = MADObjective("mad", TextTeacher(), None, Tokenizer(), MADConfig())
    only_vision = MADObjective("mad", None, VisionTeacher(), Tokenizer(), MADConfig())
    assert only_text.vision is None and only_vision.text is None
    assert not only_text.text.training and not any(p.requires_grad for p in only_vision.vision.parameters())
    with pytest.raises(ValueError, match="^MAD needs at least one unimodal teacher$"):
        MADObjective("mad", None, None, Tokenizer(), MADConfig())


def test_the_feature_loss_is_cosine_or_mse():
    assert MADObjective("mad", TextTeacher(), None, Tokenizer(), MADConfig(feature_loss="mse")).config.feature_loss
    with pytest.raises(ValueError, match=r"^feature_loss must be 'cosine' or 'mse', got 'l1'$"):
        MADObjective("mad", TextTeacher(), None, Tokenizer(), MADConfig(feature_loss="l1"))


def test_projections_exist_only_for_present_teachers():
    proj = MADProjections(8, None, 4)
    assert proj.text is None and proj.image.weight.shape == (4, 8)
    proj = MADProjections(8, 3, None)
    assert proj.image is None and proj.text.weight.shape == (3, 8)


def test_the_pooled_features_are_the_sentence_then_the_masked_image_mean():
    sentence = torch.tensor([[1.0, 2.0]])
    image = torch.tensor([[[1.0, 3.0], [5.0, 7.0], [100.0, 100.0]]])
    mask = torch.tensor([[True, True, False]])
    assert MADObjective.pooled({"sentence": sentence, "image": (image, mask)}).tolist() == [[1.0, 2.0, 3.0, 5.0]]
    assert MADObjective.pooled({"sentence": sentence}).tolist() == [[1.0, 2.0]]
    assert MADObjective.pooled({"image": (image, mask)}).tolist() == [[3.0, 5.0]]


def test_the_image_feature_cache_is_off_by_default_and_fills_up_to_its_size():
    pixels = torch.rand(2, 3, 4, 8)
    plain = _objective(text=False, probe=False)
    feats, mask = plain.image_features(pixels, GRID)
    assert torch.equal(feats, IMAGE_TARGETS) and mask.all() and plain.image_cache == {}
    cached = _objective(text=False, probe=False)
    cached.image_cache_size = 1
    feats, _ = cached.image_features(pixels, GRID)
    assert torch.equal(feats, IMAGE_TARGETS) and len(cached.image_cache) == 1
    kept = MADObjective("mad", None, VisionTeacher(), None, MADConfig(), image_cache_size=2)
    kept.image_features(pixels, GRID)
    assert len(kept.image_cache) == 2


def test_the_probe_device_is_the_text_teachers_else_the_vision_teachers():
    text, vision = TextTeacher(), VisionTeacher()
    text.encoder.to("meta")
    both = MADObjective("mad", text, vision, Tokenizer(), MADConfig())
    assert both._device() == torch.device("meta")
    assert MADObjective("mad", text, None, Tokenizer(), MADConfig())._device() == torch.device("meta")
    vision_meta = VisionTeacher()
    vision_meta.encoder.to("meta")
    assert MADObjective("mad", None, vision_meta, Tokenizer(), MADConfig())._device() == torch.device("meta")
    assert MADObjective("mad", TextTeacher(), vision_meta, Tokenizer(), MADConfig())._device() == torch.device("cpu")


def test_the_patch_grid_is_whole_patches_per_side():
    model = SimpleNamespace(config=SimpleNamespace(image_size=72, patch_size=16))
    assert mad._grid(model) == (4, 4) and all(type(s) is int for s in mad._grid(model))


# ---------------------------------------------------------------------------------------------- attach, prepare

TINY = {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "image_size": 32, "patch_size": 16}


def test_attach_puts_projections_of_the_teachers_widths_on_a_wrapped_fusion_student_and_detach_removes_them():
    student = create_model("fusion", 30, 3, **TINY)
    obj = MADObjective("mad", TextTeacher(), VisionTeacher(), Tokenizer(), MADConfig())
    obj.attach(Wrapped(student))
    assert student.mad_projections is obj.projections
    assert obj.projections.text.weight.shape == (D, 16) and obj.projections.image.weight.shape == (D, 16)
    obj.detach(Wrapped(student))
    assert "mad_projections" not in student._modules
    text_only = MADObjective("mad", TextTeacher(), None, Tokenizer(), MADConfig())
    text_only.attach(student)
    assert student.mad_projections.image is None and student.mad_projections.text is not None
    vision_only = MADObjective("mad", None, VisionTeacher(), Tokenizer(), MADConfig())
    vision_only.attach(student)
    assert student.mad_projections.text is None and student.mad_projections.image is not None


def test_attach_places_the_projections_on_the_students_device():
    student = create_model("fusion", 30, 3, **TINY).to("meta")
    obj = MADObjective("mad", TextTeacher(), VisionTeacher(), Tokenizer(), MADConfig())
    obj.attach(student)
    assert all(p.device == torch.device("meta") for p in obj.projections.parameters())


def test_attach_refuses_a_student_that_is_not_a_fusion_encoder():
    obj = MADObjective("mad", TextTeacher(), VisionTeacher(), Tokenizer(), MADConfig())
    with pytest.raises(WorkbenchError, match=r"^MAD trains a fusion \(single-stream\) student, not a Linear$"):
        obj.attach(nn.Linear(2, 2))


def _prepared(config, probe_data, student, device="cpu"):
    obj = MADObjective("mad", TextTeacher(), VisionTeacher(), Tokenizer(), config, probe_data=probe_data)
    fits = []
    obj.fit_confidence_probe = lambda *args: fits.append(args)
    obj.prepare(SimpleNamespace(device=torch.device(device)), student)
    return obj, fits


def test_prepare_moves_the_teachers_to_the_accelerators_device_and_fits_the_probe_once():
    obj, fits = _prepared(MADConfig(confidence=False), None, Wrapped(nn.Linear(1, 1)), "meta")
    assert fits == [] and obj.probe is None
    assert all(p.device == torch.device("meta") for t in (obj.text, obj.vision) for p in t.parameters())
    data = ["pairs"]
    inner = nn.Module()
    inner.config = SimpleNamespace(image_size=72, patch_size=16)
    wrapped = Wrapped(inner)
    for student in (wrapped, inner):  # read through a DDP-style wrapper, or the student itself
        obj, fits = _prepared(MADConfig(), data, student)
        assert len(fits) == 1 and fits[0][0] is data and fits[0][1] == 72 and fits[0][2] == (4, 4)
    fitted = MADObjective("mad", TextTeacher(), VisionTeacher(), Tokenizer(), MADConfig(), probe_data=data)
    fitted.probe = Probe()
    again = []
    fitted.fit_confidence_probe = lambda *args: again.append(args)
    fitted.prepare(SimpleNamespace(device=torch.device("cpu")), wrapped)
    assert again == []  # a probe fitted already is kept
    with pytest.raises(ValueError, match=r"^confidence weighting needs probe_data \(training examples\) to fit its "
                       r"probe$"):  # fmt: skip
        _prepared(MADConfig(), None, wrapped)
