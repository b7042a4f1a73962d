"""Image-text matching pairs: positives are the scene's caption, negatives differ in exactly one attribute."""

import re

from workbench.data import load_dataset
from workbench.data.shapes import caption


def _objects(text):
    return re.findall(r"a (small|large) (\w+) (circle|square|triangle) at ([a-z ]+?)(?:,|\.)", text)


def test_itm_pairs():
    data = load_dataset("shapes-itm", "train", 300)
    kinds = {}
    for i in range(len(data)):
        e = data[i]
        scene = e.meta["scene"]
        truth = caption(scene)
        kinds[e.qtype] = kinds.get(e.qtype, 0) + 1
        if data.labels[e.label] == "match":
            assert e.qtype == "match" and e.text == truth
            continue
        assert e.text != truth
        a, b = _objects(truth), _objects(e.text)
        assert len(a) == len(b) == len(scene.objects)
        changed = set(a) ^ set(b)
        if e.qtype == "colour swap":  # one colour replaced, or two objects exchanged colours
            assert len(changed) in (2, 4)
            assert sorted(x[2] for x in a) == sorted(x[2] for x in b)
        else:  # shape or position of one object changed
            assert len(changed) == 2
            field = 2 if e.qtype == "shape swap" else 3
            old, new = sorted(changed - set(b)), sorted(changed - set(a))
            assert old[0][field] != new[0][field]
            assert [x for j, x in enumerate(old[0]) if j != field] == [x for j, x in enumerate(new[0]) if j != field]
    assert kinds["match"] == 150 and kinds["colour swap"] == kinds["shape swap"] == kinds["position swap"] == 50


def test_itm_mixed_keeps_the_swaps_and_adds_other_and_partial_scenes_as_negatives():
    mixed, swaps = load_dataset("shapes-itm-mixed", "train", 240), load_dataset("shapes-itm", "train", 240)
    kinds = [mixed[i].qtype for i in range(len(mixed))]
    assert kinds.count("match") == 120 and kinds.count("partial scene") == 60 and kinds.count("other scene") == 30
    assert kinds.count("colour swap") == kinds.count("shape swap") == kinds.count("position swap") == 10
    gallery = {caption(swaps.scene(i)) for i in range(len(swaps))}  # every scene an index shows as its own
    wrong_at = set()
    for i, kind in enumerate(kinds):
        e = mixed[i]
        assert e.label == int(kind == "match") and mixed.qtype(i) == kind
        assert e.meta["scene"] == mixed.scene(i)  # the image is always the index's own scene
        if kind == "other scene":  # a real caption of a different scene, never one shown as an image
            other = _objects(e.text)
            assert e.text != caption(e.meta["scene"]) and e.text not in gallery and 2 <= len(other) <= 6
        if kind == "partial scene":  # some of the scene's objects (never none, never all), the rest not in it
            truth, named = _objects(caption(e.meta["scene"])), _objects(e.text)
            kept = [o for o in named if o in truth]
            assert 1 <= len(kept) < len(truth) and len(set(named)) == len(named) <= len(truth)
            assert e.text != caption(e.meta["scene"]) and len(named) > len(kept)
            wrong_at |= {j for j, o in enumerate(named) if o not in truth}
    assert {0, 1, 2} <= wrong_at  # the wrong objects are anywhere in the sentence, not only after the first
    assert mixed.labels == swaps.labels  # a model trained on either scores "match" the same way
