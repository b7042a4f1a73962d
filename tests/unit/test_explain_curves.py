"""Deletion / insertion curves at 10% steps or per patch, batched or one image at a time, and Integrated
Gradients with a bounded internal batch: the fast paths give the slow paths' numbers."""

import numpy as np
import pytest
import torch

from workbench.data.collate import Batch
from workbench.explain.attribution import integrated_gradients
from workbench.explain.curves import CurveRunner, check_steps, step_counts
from workbench.explain.faithfulness import auc, perturbation_curve, perturbation_curves
from workbench.models import create_model

SIZE = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "patch_size": 16, "image_size": 64, "max_text_len": 16}


@pytest.fixture(scope="module")
def tiny():
    """A random fusion teacher and dual student (4 x 4 patches) and a two-example batch."""
    torch.manual_seed(0)
    models = {kind: create_model(kind, 50, 5, **SIZE).eval() for kind in ("fusion", "dual")}
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 50, (2, 7), generator=g)
    ids[:, 0], ids[:, -1] = 2, 3
    batch = Batch(
        torch.rand(2, 1, 3, 64, 64, generator=g) * 2 - 1,
        ids,
        torch.ones(2, 7, dtype=torch.long),
        torch.zeros(2, dtype=torch.long),
        ["", ""],
        ["q", "q"],
    )
    maps = {name: np.random.default_rng(k).random((4, 4)) for k, name in enumerate(("a", "b"))}
    return models, batch, maps


def test_the_default_is_ten_steps_and_the_end():
    counts = step_counts(144)
    assert len(counts) == 11 and counts[0] == 0 and counts[-1] == 144
    assert list(counts) == [0, 14, 29, 43, 58, 72, 86, 101, 115, 130, 144]  # round(k * 14.4), halves up
    assert list(step_counts(16, "patch")) == list(range(17))
    assert list(step_counts(3, 10)) == [0, 1, 2, 3]  # fewer patches than steps: repeats dropped
    assert check_steps("10") == 10 and check_steps("patch") == "patch"
    for bad in ("0", "ten", 2.5, -1):
        with pytest.raises(ValueError):
            check_steps(bad)


def test_a_default_curve_has_eleven_points_and_the_same_auc_rule(tiny):
    models, batch, maps = tiny
    curve = perturbation_curve(models["fusion"], batch, maps["a"])
    assert curve["steps"] == 10 and len(curve["scores"]) == 11 and len(curve["fractions"]) == 11
    assert curve["fractions"][0] == 0 and curve["fractions"][-1] == 1.0
    assert curve["auc"] == pytest.approx(auc(curve["scores"], curve["fractions"]))


@pytest.mark.parametrize(("kind", "steps"), [("fusion", 10), ("fusion", "patch"), ("dual", 10), ("dual", 3)])
def test_batched_curves_equal_one_image_at_a_time(tiny, kind, steps):
    """All curves of two maps and two random orders in shared batches (ends evaluated once) give the
    probabilities of each curve evaluated alone, one perturbed image per forward pass."""
    models, batch, maps = tiny
    model = models[kind]
    together = perturbation_curves(model, batch, maps, random_orders=2, seed=3, index=1, steps=steps, batch_size=5)
    for mode in ("deletion", "insertion"):
        for name, patch_map in maps.items():
            alone = perturbation_curve(model, batch, patch_map, mode, index=1, steps=steps, batch_size=1)
            got = together[(name, mode)]
            assert got["target"] == alone["target"]
            np.testing.assert_allclose(got["scores"], alone["scores"], atol=1e-5, rtol=0)
            np.testing.assert_allclose(got["fractions"], alone["fractions"])
            assert got["auc"] == pytest.approx(alone["auc"], abs=1e-5)
    # the chance curves: deletion over two random orders; insertion over the same orders reversed
    rand = perturbation_curve(model, batch, maps["a"], "deletion", index=1, steps=steps, random_orders=2, seed=3)
    np.testing.assert_allclose(together[("random", "deletion")]["scores"], rand["random_scores"], atol=1e-5, rtol=0)
    rng = np.random.default_rng(3)
    reversed_orders = [rng.permutation(16)[::-1] for _ in range(2)]
    each = [perturbation_curve(model, batch, _map_of(o), "insertion", index=1, steps=steps)["scores"] for o in
            reversed_orders]  # fmt: skip
    np.testing.assert_allclose(together[("random", "insertion")]["scores"], np.mean(each, axis=0), atol=1e-5, rtol=0)


def _map_of(order: np.ndarray) -> np.ndarray:
    """A 4 x 4 map whose patches, most relevant first, are `order`."""
    m = np.zeros(order.size)
    m[order] = np.arange(order.size, 0, -1)
    return m.reshape(4, 4)


def test_an_image_two_curves_share_is_evaluated_once():
    """Deleting the first k patches of an order and inserting the last P - k of it give the same image: with the
    ten-step counts of 16 patches (symmetric), a deletion curve and the insertion curve of the reversed order
    cost the two ends and 9 images, not 2 + 18, and give what each curve alone gives."""
    seen = []

    def forward(chunk):
        seen.extend(chunk)
        return torch.stack([c.sum().reshape(1) for c in chunk])

    pixels, base = torch.rand(1, 3, 64, 64), torch.zeros(1, 3, 64, 64)
    runner = CurveRunner(forward, pixels, base, (4, 4), 16, batch_size=4)
    order = np.random.default_rng(0).permutation(16)
    counts = step_counts(16)
    assert list(16 - counts[::-1]) == list(counts)
    requests = [(order, "deletion"), (order[::-1], "insertion")]
    shared = runner.curves(requests, counts)
    assert len(seen) == 2 + 9
    alone = runner.curves(requests, counts, share_ends=False)
    for a, b in zip(shared, alone):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(shared[0], shared[1].flip(0))  # the same images, read backwards


def test_shared_images_are_the_same_images_when_the_order_leaves_out_padding_patches():
    """On a padded image the curves' order holds the real patches only: an insertion then starts from the image
    with those patches replaced (the padding kept, as deletion keeps it), so an image two curves share is one
    image, and sharing gives what each curve alone gives."""

    def forward(chunk):
        return torch.stack([c.sum().reshape(1) for c in chunk])  # every pixel counts, the padding's too

    pixels, base = torch.rand(1, 3, 64, 64), torch.zeros(1, 3, 64, 64)
    runner = CurveRunner(forward, pixels, base, (4, 4), 16, batch_size=4)
    order = np.random.default_rng(1).permutation(12)  # patches 12-15 are padding
    counts = step_counts(12)
    requests = [(order, "deletion"), (order[::-1], "insertion")]
    shared = runner.curves(requests, counts)
    alone = runner.curves(requests, counts, share_ends=False)
    for a, b in zip(shared, alone):
        torch.testing.assert_close(a, b)


def test_per_patch_curves_change_one_patch_a_point(tiny):
    models, batch, maps = tiny
    curve = perturbation_curve(models["dual"], batch, maps["b"], "insertion", steps="patch", random_orders=1)
    assert len(curve["scores"]) == 17 and len(curve["random_scores"]) == 17
    np.testing.assert_allclose(np.diff(curve["fractions"]), 1 / 16)


@pytest.mark.parametrize("kind", ["fusion", "dual"])
def test_integrated_gradients_with_an_internal_batch_equal_without(tiny, kind):
    models, batch, _ = tiny
    model = models[kind]
    whole = integrated_gradients(model, batch, n_steps=12, internal_batch_size=None, index=0)
    parts = integrated_gradients(model, batch, n_steps=12, internal_batch_size=5, index=0)
    np.testing.assert_allclose(parts["image"], whole["image"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(parts["text"], whole["text"], atol=1e-4, rtol=0)
    assert parts["target"] == whole["target"]
    assert all(p.requires_grad for p in model.parameters())  # the weights are frozen only during IG


def test_kept_ends_give_the_same_curves_map_by_map(tiny):
    """`workbench explain` runs each method's curves alone (to time it) and keeps the two end images."""
    models, batch, maps = tiny
    together = perturbation_curves(models["fusion"], batch, maps)
    ends = {}
    for name in maps:
        alone = perturbation_curves(models["fusion"], batch, {name: maps[name]}, ends=ends)
        for mode in ("deletion", "insertion"):
            np.testing.assert_allclose(alone[(name, mode)]["scores"], together[(name, mode)]["scores"], atol=1e-5)
    assert set(ends) == {"intact", "blank"}


@pytest.mark.parametrize("num_images, image_index, padded", [(1, 0, False), (2, 1, False), (2, 0, True)])
def test_the_students_curve_forward_encodes_the_fixed_parts_once_and_equals_its_forward(
    num_images, image_index, padded
):
    """The dual student's curve forward (question and unperturbed images encoded once) against the model's own
    forward on the same copies: one and two images, the second image perturbed, a padded image."""
    from workbench.explain.curves import model_forward

    torch.manual_seed(0)
    model = create_model("dual", 50, 5, num_images=num_images, **SIZE).eval()
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(5, 50, (1, 7), generator=g)
    mask = torch.ones(1, 7, dtype=torch.long)
    pixels = torch.rand(num_images, 3, 64, 64, generator=g) * 2 - 1
    pixel_mask = None
    if padded:  # the image part is the top 48 x 32 pixels of the 64 x 64 canvas
        pixel_mask = torch.zeros(num_images, 64, 64, dtype=torch.long)
        pixel_mask[:, :48, :32] = 1
    chunk = torch.rand(3, 3, 64, 64, generator=g)
    calls = []
    model.text_tower.register_forward_hook(lambda *a: calls.append("text"))
    got = model_forward(model, ids, mask, pixels, image_index, pixel_mask)(chunk)
    assert calls == ["text"]  # the question once, not once per copy
    full = pixels[None].repeat(3, 1, 1, 1, 1)
    full[:, image_index] = chunk
    extra = {} if pixel_mask is None else {"pixel_mask": pixel_mask[None].expand(3, -1, -1, -1)}
    with torch.no_grad():
        want = model(ids.expand(3, -1), mask.expand(3, -1), full, **extra).logits.softmax(-1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
