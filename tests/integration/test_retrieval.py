"""Retrieval evaluation: ranks and R@K on hand-made similarity matrices, the index, galleries (shapes and
COCO-Karpathy files), fusion re-ranking, and a Hugging Face CLIP folder as a dual encoder."""

import json

import pytest
import torch
from PIL import Image

from workbench.data import load_dataset
from workbench.errors import CheckpointError
from workbench.models import create_model
from workbench.retrieval import (
    DualEncoder,
    FusionMatcher,
    Gallery,
    ImageIndex,
    compare_misses,
    evaluate_retrieval,
    gallery_from,
    i2t_ranks,
    r1_misses,
    ranks_from_embeddings,
    recall_summary,
    rerank_ranks,
    scores_from_ranks,
    t2i_ranks,
)

TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2}


def test_ranks_recall_and_median_rank_on_a_hand_made_matrix():
    sim = torch.tensor(
        [  # rows: captions 0..2 (caption t describes image t); columns: images 0..2
            [0.9, 0.1, 0.2],  # caption 0: its image first -> rank 1
            [0.8, 0.5, 0.1],  # caption 1: image 0 ahead -> rank 2
            [0.3, 0.6, 0.2],  # caption 2: last -> rank 3
        ]
    )
    t2i = torch.tensor([0, 1, 2])
    assert t2i_ranks(sim, t2i).tolist() == [1, 2, 3]
    # image 0: column (0.9, 0.8, 0.3) -> 1; image 1: (0.1, 0.5, 0.6) -> 2; image 2: (0.2, 0.1, 0.2): a tie with
    # caption 0 counts against the model -> 2
    assert i2t_ranks(sim, t2i).tolist() == [1, 2, 2]
    s = scores_from_ranks(t2i_ranks(sim, t2i), i2t_ranks(sim, t2i), ks=(1, 2, 5))
    assert s["t2i"] == {"R@1": pytest.approx(1 / 3), "R@2": pytest.approx(2 / 3), "R@5": 1.0, "median_rank": 2.0,
                        "mean_rank": 2.0, "n": 3}  # fmt: skip
    assert s["i2t"]["R@1"] == pytest.approx(1 / 3) and s["i2t"]["R@2"] == 1.0 and s["i2t"]["median_rank"] == 2.0
    assert s["r1"] == pytest.approx(1 / 3) and s["rsum"] == pytest.approx(1 / 3 + 2 / 3 + 1 + 1 / 3 + 1 + 1)


def test_image_to_text_takes_each_images_best_caption_and_skips_images_without_one():
    sim = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.2, 0.0], [0.7, 0.6, 0.0]])  # captions 0, 1 of image 0; 2 of image 1
    t2i = torch.tensor([0, 0, 1])
    # image 0: its captions score 0.1 and 0.8; the best (0.8) is first; image 1: caption 2 (0.6) behind caption 0
    assert i2t_ranks(sim, t2i).tolist() == [1, 2]  # image 2 has no caption: not ranked
    assert t2i_ranks(sim, t2i).tolist() == [2, 1, 2]  # caption 2: image 0 (0.7) ahead of its image (0.6)


def test_r1_misses_name_the_gallery_items_and_two_models_misses_compare():
    # captions 0, 1 of image 0, caption 2 of image 2 (image 1 has none, so i2t ranks follow images 0 and 2)
    t_ranks, i_ranks = torch.tensor([1, 3, 2]), torch.tensor([1, 4])
    mine = r1_misses(t_ranks, i_ranks, [0, 0, 2])
    assert mine == {"t2i": [1, 2], "i2t": [2]}  # i2t: image 2, not position 1
    theirs = {"t2i": [0, 2], "i2t": []}
    assert compare_misses(mine, theirs) == {
        "t2i": {"this": 2, "other": 2, "both": 1, "only_this": 1, "only_other": 1},
        "i2t": {"this": 1, "other": 0, "both": 0, "only_this": 1, "only_other": 0},
    }


def test_a_collapsed_model_gets_the_worst_rank_not_the_best():
    sim = torch.zeros(4, 4)
    assert t2i_ranks(sim, torch.arange(4)).tolist() == [4] * 4
    assert recall_summary(t2i_ranks(sim, torch.arange(4)))["R@1"] == 0.0


def test_blockwise_ranks_equal_the_full_matrix():
    torch.manual_seed(0)
    text, image = torch.randn(23, 8), torch.randn(10, 8)
    t2i = torch.randint(0, 10, (23,))
    t_ranks, i_ranks = ranks_from_embeddings(text, image, t2i.tolist(), chunk=4)
    sim = text @ image.T
    assert torch.equal(t_ranks, t2i_ranks(sim, t2i)) and torch.equal(i_ranks, i2t_ranks(sim, t2i))


def test_index_search_is_the_top_k_of_the_matrix_product():
    torch.manual_seed(0)
    gallery = torch.nn.functional.normalize(torch.randn(50, 16), dim=-1)
    index = ImageIndex(gallery, backend="auto")
    assert index.backend == "torch" and len(index) == 50
    q = gallery[[3, 7]] + 0.01
    scores, idx = index.search(q, k=5)
    assert idx[:, 0].tolist() == [3, 7] and scores.shape == (2, 5)
    assert torch.equal(idx, (q @ gallery.T).topk(5).indices)
    flat = ImageIndex(gallery, backend="faiss")  # faiss-cpu is a dependency: the large-gallery path is tested
    assert flat.backend == "faiss"
    faiss_scores, faiss_idx = flat.search(q, 5)
    assert torch.equal(faiss_idx, idx) and torch.allclose(faiss_scores, scores, atol=1e-5)


def test_auto_index_switches_to_faiss_for_large_galleries(monkeypatch):
    import workbench.retrieval.index as index

    monkeypatch.setattr(index, "FAISS_AUTO_MIN", 40)
    gallery = torch.nn.functional.normalize(torch.randn(50, 16, generator=torch.Generator().manual_seed(1)), dim=-1)
    assert ImageIndex(gallery, backend="auto").backend == "faiss"
    assert ImageIndex(gallery[:39], backend="auto").backend == "torch"
    with pytest.raises(ValueError, match="backend must be"):
        ImageIndex(gallery, backend="annoy")


def test_shapes_gallery_has_one_unique_caption_per_image():
    g = gallery_from(load_dataset("shapes-retrieval", "test", 40), limit=30)
    assert g.n_images == 30 and g.text_to_image == list(range(30)) and len(set(g.texts)) == 30
    assert g.load_image(0).size == (64, 64)
    with pytest.raises(ValueError, match="not a retrieval gallery"):
        gallery_from(load_dataset("shapes-vqa", "test", 4))


def test_hard_gallery_comes_in_groups_of_a_scene_and_its_one_attribute_variants():
    import re

    from workbench.data.shapes import RETRIEVAL_VARIANTS, caption
    from workbench.train import sampled_order

    data = load_dataset("shapes-retrieval-hard", "test", 80)
    g, scenes = data.group_size, data.gallery()
    assert g == 1 + len(RETRIEVAL_VARIANTS) == 4 and load_dataset("shapes-retrieval", "test", 8).group_size == 1
    texts = gallery_from(data).texts
    assert len(texts) == len(set(texts)) == 80  # every caption names exactly one image

    def objects(text):
        return set(re.findall(r"a (small|large) (\w+) (circle|square|triangle) at ([a-z ]+?)(?:,|\.)", text))

    for k in range(0, 80, g):
        base = objects(caption(scenes[k]))
        for j, kind in enumerate(RETRIEVAL_VARIANTS, start=1):
            variant = objects(texts[k + j])
            assert len(variant) == len(base)  # one object changed (a colour swap may exchange two objects' colours)
            assert len(base - variant) in ((1, 2) if kind == "colour swap" else (1,)), (kind, texts[k], texts[k + j])
    # training keeps a group together: a shuffled order of whole groups
    order = sampled_order(load_dataset("shapes-retrieval-hard", "train", 400), {}, seed=0, epoch=1)
    assert sorted(order) == list(range(400)) and order != list(range(400))
    assert all(order[i : i + g] == list(range(order[i], order[i] + g)) and order[i] % g == 0 for i in range(0, 400, g))


def _karpathy(root, n_images=4):
    images = []
    for i in range(n_images):
        folder = "val2014"
        name = f"COCO_{folder}_{i:012d}.jpg"
        (root / folder).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20 + i, 16), (40 * i, 100, 200 - 30 * i)).save(root / folder / name)
        caps = [f"picture number {i}", f"another view of {i}"]
        images.append({"filepath": folder, "filename": name, "split": "test", "imgid": 100 + i,
                       "sentences": [{"raw": c + " ", "tokens": c.split()} for c in caps]})  # fmt: skip
    (root / "dataset_coco.json").write_text(json.dumps({"images": images, "dataset": "coco"}))
    return root


def test_karpathy_files_make_a_gallery_with_five_style_multi_caption_images(tmp_path, tokenizer):
    from workbench.data.formats import KarpathyCaptions

    ds = KarpathyCaptions(_karpathy(tmp_path), "test")
    g = gallery_from(ds)
    assert g.n_images == 4 and len(g.texts) == 8 and g.text_to_image == [0, 0, 1, 1, 2, 2, 3, 3]
    assert g.texts[0] == "picture number 0"
    assert gallery_from(ds, limit=2).text_to_image == [0, 0, 1, 1]
    torch.manual_seed(0)
    model = create_model("dual", len(tokenizer), 0, **TINY)
    m = evaluate_retrieval(DualEncoder(model, tokenizer), ds, timing=False)
    assert m["n_images"] == 4 and m["n_texts"] == 8 and m["i2t"]["n"] == 4 and m["t2i"]["n"] == 8
    assert 0 <= m["i2t"]["R@1"] <= 1 and 1 <= m["t2i"]["median_rank"] <= 4


def test_evaluate_retrieval_reports_index_time_latency_and_size(tokenizer):
    torch.manual_seed(0)
    model = create_model("dual", len(tokenizer), 0, **TINY).train()
    m = evaluate_retrieval(DualEncoder(model, tokenizer), load_dataset("shapes-retrieval", "test", 24),
                           min_run_time=0.02)  # fmt: skip
    assert model.training  # restored
    assert m["index"]["backend"] == "torch" and m["index"]["seconds"] > 0
    assert set(m["query_ms"]) == {"encode_text", "search", "total", "threads"} and m["query_ms"]["total"] > 0
    towers = sum(p.numel() for t in (model.image_tower, model.text_tower) for p in t.parameters())
    assert m["params"] == towers + 2 * 32 * 128 + 1  # + projections (32 -> 128) + logit scale
    assert m["size_mb"] == pytest.approx(m["params"] * 4 / 2**20, abs=0.01)


class _OracleMatcher:
    """Scores a pair 0 if the caption names the image (encoded in its red channel), else -5."""

    chunk, image_size = 7, 8

    def log_match(self, pixels, texts):
        idx = ((pixels[:, 0, 0, 0] + 1) * 127.5).round().long().tolist()
        return torch.tensor([0.0 if t == f"c{i}" else -5.0 for i, t in zip(idx, texts)])


def test_fusion_reranking_fixes_the_order_within_the_top_k_only():
    n = 6
    g = Gallery(n, lambda j: Image.new("RGB", (8, 8), (j, 0, 0)), [f"c{j}" for j in range(n)], list(range(n)))
    sim = -torch.eye(n)  # the dual encoder puts every gold image last
    sim[0, 0] = 1.0  # ... except caption 0, whose gold is first
    t_ranks, i_ranks = rerank_ranks(sim, g, _OracleMatcher(), k=n)
    assert t_ranks.tolist() == [1] * n and i_ranks.tolist() == [1] * n
    t_ranks, _ = rerank_ranks(sim, g, _OracleMatcher(), k=2)  # gold outside the top 2 stays where it was
    assert t_ranks.tolist() == [1] + [n] * (n - 1)


class _ConfidentMatcher(_OracleMatcher):
    """Every pair a near-certain match, the gold a little more certain (log P 1e-6 closer to 0)."""

    def log_match(self, pixels, texts):
        idx = ((pixels[:, 0, 0, 0] + 1) * 127.5).round().long().tolist()
        return torch.tensor([-1e-7 if t == f"c{i}" else -2e-6 for i, t in zip(idx, texts)], dtype=torch.float64)


def test_fusion_reranking_keeps_near_certain_scores_apart():
    # a confident matcher's log-probabilities differ by far less than float32 resolves next to the lift
    n = 5
    g = Gallery(n, lambda j: Image.new("RGB", (8, 8), (j, 0, 0)), [f"c{j}" for j in range(n)], list(range(n)))
    sim = -torch.eye(n)  # the dual encoder puts every gold image last
    t_ranks, i_ranks = rerank_ranks(sim, g, _ConfidentMatcher(), k=n)
    assert t_ranks.tolist() == [1] * n and i_ranks.tolist() == [1] * n


def test_fusion_matcher_needs_a_matching_head_and_scores_pairs(tokenizer):
    from workbench.data.shapes import ITM_LABELS

    torch.manual_seed(0)
    fusion = create_model("fusion", len(tokenizer), 2, **TINY)
    with pytest.raises(ValueError, match="shapes-itm"):
        FusionMatcher(fusion, tokenizer, ["yes", "no"])
    m = FusionMatcher(fusion, tokenizer, ITM_LABELS, chunk=3)
    pixels = torch.rand(4, 3, 64, 64) * 2 - 1
    texts = ["a red circle.", "a blue square.", "a small green triangle at top left.", "x"]
    pairs = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1]], dtype=torch.bool)
    g = m.pair_log_match(pixels, texts, pairs)
    assert torch.isnan(g[~pairs]).all() and (g[pairs] <= 0).all()
    direct = m.log_match(pixels[[0, 3]], [texts[3], texts[0]])
    torch.testing.assert_close(g[[0, 3], [3, 0]], direct.float())  # float64 scores, float32 in the matrix


# ---------------------------------------------------------------------------------------- CLIP


def _tiny_clip(folder, tokenizer_files=True):
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())  # byte-level BPE with no merges: one token per character
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    eos = vocab["<|endoftext|>"]
    text = dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=77, bos_token_id=eos - 1, eos_token_id=eos,
                pad_token_id=eos)  # fmt: skip
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                  patch_size=8)  # fmt: skip
    torch.manual_seed(0)
    clip = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=24)).eval()
    clip.save_pretrained(folder, safe_serialization=True)
    if tokenizer_files:
        CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    return clip


def test_a_clip_folder_loads_as_a_dual_encoder_with_our_interface(tmp_path):
    from workbench.models.clip import ClipDualEncoder, load_dual_encoder

    clip = _tiny_clip(tmp_path / "clip")
    ck = load_dual_encoder(tmp_path / "clip")
    assert isinstance(ck.model, ClipDualEncoder) and ck.meta["kind"] == "clip" and ck.image_size == 32
    enc = DualEncoder(ck.model, ck.tokenizer)
    assert enc.embed_dim == 24 and enc.max_length == 77 and enc.image_size == 32
    pixels = torch.rand(2, 3, 64, 64) * 2 - 1  # workbench pixels: [-1, 1], our size; the wrapper resizes
    with torch.no_grad():
        img = enc.image_embeddings(pixels)
        txt = enc.embed_texts(["a red circle.", "two blue squares"])
        x = torch.nn.functional.interpolate((pixels + 1) / 2, size=(32, 32), mode="bicubic").clamp(0, 1)
        mean, std = (
            torch.tensor([0.48145466, 0.4578275, 0.40821073]),
            torch.tensor([0.26862954, 0.26130258, 0.27577711]),
        )
        ref = clip.visual_projection(
            clip.vision_model(pixel_values=(x - mean[:, None, None]) / std[:, None, None]).pooler_output
        )
        ids = ck.tokenizer(["a red circle.", "two blue squares"], padding=True, return_tensors="pt")
        ref_t = clip.text_projection(clip.text_model(**ids).pooler_output)
    torch.testing.assert_close(img, torch.nn.functional.normalize(ref, dim=-1))
    torch.testing.assert_close(txt, torch.nn.functional.normalize(ref_t, dim=-1))
    assert enc.logit_scale().item() == pytest.approx(clip.logit_scale.exp().item())
    m = evaluate_retrieval(enc, load_dataset("shapes-retrieval", "test", 8), timing=False)
    assert m["n_images"] == 8 and m["params"] == sum(p.numel() for p in clip.parameters())


def test_clip_folders_without_safetensors_or_a_tokenizer_are_refused(tmp_path):
    from workbench.models.clip import load_clip

    _tiny_clip(tmp_path / "notok", tokenizer_files=False)
    with pytest.raises(CheckpointError, match="no CLIP tokenizer"):
        load_clip(tmp_path / "notok")
    _tiny_clip(tmp_path / "pickled")
    (tmp_path / "pickled" / "model.safetensors").rename(tmp_path / "pickled" / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_clip(tmp_path / "pickled")
    with pytest.raises(CheckpointError, match="not a CLIP folder"):
        load_clip(tmp_path)


def test_a_clip_folder_is_a_dual_teacher_for_mcad(tmp_path, tokenizer):
    """The CLIP teacher re-tokenizes the captions with its own tokenizer and sees our 64 px images resized."""
    from workbench.data import Collator
    from workbench.data.shapes import ITM_LABELS
    from workbench.methods import get_method
    from workbench.methods.mcad import RetrievalObjective, fit_fused_map
    from workbench.models.clip import load_dual_encoder

    _tiny_clip(tmp_path / "clip")
    ck = load_dual_encoder(tmp_path / "clip")
    fusion = create_model("fusion", len(tokenizer), 2, **TINY)
    dual, matcher = DualEncoder(ck.model, ck.tokenizer), FusionMatcher(fusion, tokenizer, ITM_LABELS)
    fused_map = fit_fused_map(dual, matcher, "shapes-retrieval", 16)  # into the CLIP teacher's space
    assert fused_map.weight.shape == (TINY["hidden_size"] + 1, 24)  # the fusion width (+ intercept) -> CLIP's 24
    recipe = RetrievalObjective("mcad", dual, matcher, get_method("mcad").config(), fused_map)
    student = create_model("dual", len(tokenizer), 0, embed_dim=24, **TINY)
    data = load_dataset("shapes-retrieval", "train", 6)
    batch = Collator(tokenizer, 64)([data[i] for i in range(6)])
    loss, logs = recipe.loss(student, batch)
    loss.backward()
    assert torch.isfinite(loss) and logs["feature"] > 0 and logs["fused_map_r2"] == fused_map.r2
    assert all(p.grad is None for p in ck.model.parameters())
    assert student.image_proj.weight.grad.abs().sum() > 0


def test_retrieval_cli_reads_karpathy_files_from_a_local_path(tmp_path, tokenizer):
    from workbench.cli import main
    from workbench.models.io import save_checkpoint

    model = create_model("dual", len(tokenizer), 0, **TINY)
    save_checkpoint(model, tokenizer, tmp_path / "dual", {"task": "retrieval", "labels": []})
    out = tmp_path / "k.json"
    args = ["retrieval", str(tmp_path / "dual"), "--karpathy", str(_karpathy(tmp_path / "coco")), "--out", str(out)]
    assert main([*args, "--no-progress"]) == 0
    m = json.loads(out.read_text())
    assert m["dataset"] == "coco-karpathy" and m["n_images"] == 4 and m["n_texts"] == 8 and m["query_ms"]["total"] > 0
    # the misses are the queries R@1 counts against the model
    assert len(m["misses"]["t2i"]) == round((1 - m["t2i"]["R@1"]) * 8)
    assert len(m["misses"]["i2t"]) == round((1 - m["i2t"]["R@1"]) * 4)


def test_retrieval_cli_compares_two_models_misses(tmp_path, tokenizer, capsys):
    from workbench.cli import main
    from workbench.models.io import save_checkpoint

    for seed in (0, 1):
        torch.manual_seed(seed)
        model = create_model("dual", len(tokenizer), 0, **TINY)
        save_checkpoint(model, tokenizer, tmp_path / f"dual{seed}", {"task": "retrieval", "labels": []})
    base = ["retrieval", str(tmp_path / "dual0"), "--size", "12", "--no-progress"]
    assert main([*base, "--compare", str(tmp_path / "dual0"), "--out", str(tmp_path / "self.json")]) == 0
    same = json.loads((tmp_path / "self.json").read_text())
    n = len(same["misses"]["t2i"])
    assert n > 0  # an untrained model misses most of 12
    assert same["compared"]["misses"]["t2i"] == {"this": n, "other": n, "both": n, "only_this": 0, "only_other": 0}
    assert "R@1 misses against" in capsys.readouterr().out
    assert main([*base, "--compare", str(tmp_path / "dual1"), "--out", str(tmp_path / "other.json")]) == 0
    other = json.loads((tmp_path / "other.json").read_text())["compared"]["misses"]
    # the second model alone: the comparison must be the set arithmetic of the two models' own miss lists
    assert (
        main(["retrieval", str(tmp_path / "dual1"), "--size", "12", "--no-progress", "--out", str(tmp_path / "1.json")])
        == 0
    )
    own = json.loads((tmp_path / "1.json").read_text())["misses"]
    for d in ("t2i", "i2t"):
        a, b = set(same["misses"][d]), set(own[d])
        assert other[d] == {
            "this": len(a),
            "other": len(b),
            "both": len(a & b),
            "only_this": len(a - b),
            "only_other": len(b - a),
        }
    assert set(same["misses"]["t2i"]) != set(own["t2i"])  # two different random models: the check above is not trivial
    assert main([*base, "--compare", str(tmp_path / "missing")]) == 2  # a wrong folder: a clear error, no work
