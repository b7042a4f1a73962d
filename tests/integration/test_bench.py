"""Speed work (issue 5) on tiny random models: fast paths give the eager path's answers, the image
cache keys by content, and the benchmark writes the JSON it promises. No timed assertions: speed
targets live in the benchmark output, not in tests."""

import json

import pytest
import torch
from PIL import Image

from workbench.api import ask, ask_cached, load_model
from workbench.bench import (
    PATHS,
    QUICK,
    attention_mode,
    benchmark_pair,
    count_flops,
    peak_memory,
    speed_table,
    write_speed,
)
from workbench.cache import ImageFeatureCache, cache_for, content_key
from workbench.cli import main
from workbench.data.shapes import VQA_ANSWERS
from workbench.models import create_model
from workbench.models.io import save_checkpoint
from workbench.viz import speed_bars

TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 2}


@pytest.fixture(scope="module")
def pair(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("bench")
    meta = {"task": "vqa", "labels": list(VQA_ANSWERS), "dataset": "shapes-vqa"}
    torch.manual_seed(0)
    for kind, name in (("fusion", "teacher"), ("dual", "student")):
        save_checkpoint(create_model(kind, len(tokenizer), len(VQA_ANSWERS), **TINY), tokenizer, root / name, meta)
    return root / "teacher", root / "student"


def _batch(vocab: int, b: int = 3, t: int = 7):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.long)
    mask[0, 4:] = 0  # padding, so the masked path is compared too
    return ids, mask, torch.rand(b, 1, 3, 64, 64, generator=g) * 2 - 1


def test_teacher_fused_attention_matches_eager_and_keeps_qk_and_weights(tokenizer):
    torch.manual_seed(0)
    teacher = create_model("fusion", len(tokenizer), 5, **TINY).eval()
    ids, mask, px = _batch(len(tokenizer))
    with torch.inference_mode():
        with attention_mode(teacher, "eager"):
            eager = teacher(ids, mask, px, qk_layers=(0,))
        assert teacher.attn_implementation == "auto"
        fused = teacher(ids, mask, px, qk_layers=(0,))
        with attention_mode(teacher, "sdpa"):
            weights = teacher(ids, mask, px, output_attentions=True)
    torch.testing.assert_close(fused.logits, eager.logits, atol=1e-5, rtol=0)
    for a, b in zip(fused.qk[0][0], eager.qk[0][0]):  # the q/k hooks fire on the fused path too
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    att = weights.attentions[0][0]  # output_attentions always takes the eager code
    assert att.shape[-1] == att.shape[-2] == ids.shape[1] + 1 + 16
    torch.testing.assert_close(att.sum(-1), torch.ones_like(att.sum(-1)))
    torch.testing.assert_close(weights.logits, eager.logits, atol=1e-5, rtol=0)


def test_student_fused_attention_matches_eager(tokenizer):
    torch.manual_seed(0)
    student = create_model("dual", len(tokenizer), 5, **TINY).eval()
    ids, mask, px = _batch(len(tokenizer))
    assert student.attn_implementation == "sdpa"
    with torch.inference_mode():
        fused = student(ids, mask, px, qk_layers=(0,))
        with attention_mode(student, "eager"):
            eager = student(ids, mask, px, qk_layers=(0,))
    assert student.attn_implementation == "sdpa"
    torch.testing.assert_close(fused.logits, eager.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(fused.qk_text[0][0], eager.qk_text[0][0], atol=1e-6, rtol=0)


def test_cached_image_path_gives_end_to_end_logits(tokenizer):
    torch.manual_seed(0)
    student = create_model("dual", len(tokenizer), 5, **TINY).eval()
    ids, mask, px = _batch(len(tokenizer))
    with torch.inference_mode():
        end_to_end = student(ids, mask, px).logits
        cached = student(ids, mask, image_states=[student.encode_image(px[:, 0])]).logits
    torch.testing.assert_close(cached, end_to_end, atol=1e-6, rtol=0)


def test_image_cache_is_keyed_by_content_and_bounded():
    a = torch.rand(1, 3, 8, 8)
    assert content_key(a) == content_key(a.clone())  # a different object with the same pixels
    changed = a.clone()
    changed[0, 0, 0, 0] += 0.01
    assert content_key(changed) != content_key(a)
    assert content_key(a) != content_key(a.reshape(1, 3, 4, 16))  # same bytes, other shape
    cache = ImageFeatureCache(maxsize=2)
    calls = []

    def encode(px):
        calls.append(1)
        return px.sum().reshape(1)

    assert cache.get_or_compute(a, encode)[1] is False
    assert cache.get_or_compute(a.clone(), encode)[1] is True
    assert cache.get_or_compute(changed, encode)[1] is False
    assert len(calls) == 2
    cache.get_or_compute(a, encode)  # a is now the most recently used
    cache.get_or_compute(torch.zeros(1, 3, 8, 8), encode)  # evicts `changed`, the least recently used
    assert len(cache) == 2 and content_key(changed) not in cache and content_key(a) in cache
    assert cache.stats()["hits"] == 2
    with pytest.raises(ValueError):
        ImageFeatureCache(0)


def test_ask_cached_reuses_image_features_and_answers_like_ask(pair):
    teacher_dir, student_dir = pair
    student = load_model(student_dir, device="cpu")
    image = Image.new("RGB", (64, 64), (250, 250, 250))
    plain = ask(student, image, "is there a red circle?")
    first = ask_cached(student, image, "is there a red circle?")
    second = ask_cached(student, image.copy(), "how many squares are there?")
    assert first["cache_hit"] is False and second["cache_hit"] is True
    assert first["top"][0][0] == plain["top"][0][0]
    assert first["confidence"] == pytest.approx(plain["confidence"], abs=1e-6)
    assert cache_for(student.model).stats()["entries"] == 1
    other = ask_cached(student, Image.new("RGB", (64, 64), (0, 0, 0)), "is there a red circle?")
    assert other["cache_hit"] is False
    teacher = load_model(teacher_dir, device="cpu")
    assert ask_cached(teacher, image, "is there a red circle?")["cache_hit"] is None  # nothing to cache


def test_flops_are_positive_and_the_cached_path_is_cheaper(tokenizer):
    torch.manual_seed(0)
    teacher = create_model("fusion", len(tokenizer), 5, **TINY).eval()
    student = create_model("dual", len(tokenizer), 5, **TINY).eval()
    ids, mask, px = _batch(len(tokenizer))
    with torch.inference_mode():
        states = [student.encode_image(px[:, 0])]
        f_teacher = count_flops(teacher, lambda: teacher(ids, mask, px))
        f_student = count_flops(student, lambda: student(ids, mask, px))
        f_cached = count_flops(student, lambda: student(ids, mask, image_states=states))
    assert min(f_teacher, f_student, f_cached) > 0
    assert f_cached < f_student
    assert teacher.attn_implementation == "auto" and student.attn_implementation == "sdpa"  # restored


def test_peak_memory_counts_live_tensors_not_everything_allocated():
    layer = torch.nn.Linear(256, 256)
    x = torch.randn(64, 256)

    def run():
        y = x
        for _ in range(10):  # each step frees the previous activation
            y = layer(y)
        return y

    with torch.inference_mode():
        peak = peak_memory(run, layer, (x,))
    one = 64 * 256 * 4
    assert one <= peak <= 3 * one  # at most a few activations alive at once, never all ten


def test_benchmark_json_has_every_path_and_flags_extrapolation(pair, tmp_path):
    teacher_dir, student_dir = pair
    messages = []
    results = benchmark_pair(
        teacher_dir,
        student_dir,
        batch_sizes=(1, 2),
        retrieval_sizes=(2, 40),
        min_run_time=0.01,
        budget_s=1e-4,  # nothing beyond the smallest N fits: 40 x 40 is extrapolated
        n_examples=4,
        threads=1,
        progress=messages.append,
    )
    assert set(results) >= {"machine", "settings", "models", "tokens", "paths", "ratios", "retrieval", "methods"}
    assert results["machine"]["threads"] == 1 and results["machine"]["torch"] == torch.__version__
    for name in PATHS:
        for b in ("1", "2"):
            cell = results["paths"][name]["batches"][b]
            assert cell["median_s"] > 0 and cell["iqr_s"] >= 0 and cell["flops_per_example"] > 0
            assert cell["peak_memory_bytes"] > 0 and cell["throughput_per_s"] > 0
    p = results["paths"]
    assert p["student_cached"]["batches"]["2"]["flops_per_example"] < p["student"]["batches"]["2"]["flops_per_example"]
    assert p["student_cached"]["parameters"] < p["student"]["parameters"]
    assert results["ratios"]["2"]["student_cached_flop_ratio"] > 1
    small, large = results["retrieval"]["entries"]
    assert small["teacher"]["extrapolated"] is False and small["teacher"]["runs"] >= 1
    assert large["teacher"]["extrapolated"] is True and large["extrapolated"] is True
    assert large["teacher"]["basis"]["from_n"] == 2
    assert large["teacher"]["median_s"] == pytest.approx(large["teacher"]["basis"]["per_pair_s"] * 40 * 40)
    assert len(messages) == 3 * 2 + 2 * 2
    out = write_speed(results, tmp_path / "results" / "speed.json")
    assert json.loads(out.read_text())["retrieval"]["entries"][1]["teacher"]["extrapolated"] is True
    table = speed_table(results)
    assert "(extrapolated)" in table and "fusion teacher" in table
    fig = speed_bars(results)
    assert any("extrapolated" in (t.name or "") for t in fig.data)


def test_cli_bench_quick_writes_json(pair, tmp_path, capsys):
    teacher_dir, student_dir = pair
    out = tmp_path / "speed.json"
    argv = ["bench", "--teacher", str(teacher_dir), "--student", str(student_dir), "--out", str(out)]
    assert main([*argv, "--quick", "--no-progress", "--threads", "1"]) == 0
    data = json.loads(out.read_text())
    assert data["settings"]["batch_sizes"] == list(QUICK["batch_sizes"])
    assert set(data["paths"]) == set(PATHS)
    assert "wrote" in capsys.readouterr().out


def test_cli_bench_help(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    assert "--quick" in capsys.readouterr().out


@pytest.mark.parametrize("ranker", ["matmul", "faiss"])
def test_student_ranking_returns_the_best_images(ranker):
    from workbench.bench.retrieval_speed import rank

    images = torch.nn.functional.normalize(torch.randn(20, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    texts = images[[3, 7, 11]] + 0.01  # each text sits next to one image
    top = rank(texts, images, k=5, ranker=ranker)
    assert top.shape == (3, 5) and top[:, 0].tolist() == [3, 7, 11]


def test_onnx_runtime_gives_the_eager_logits(pair):
    """The ONNX Runtime path (`workbench bench --runtime onnx`) answers as the eager models do, padding included."""
    from workbench.onnx_runtime import onnx_call

    teacher, student = (load_model(p).model.eval() for p in pair)
    ids, mask, px = _batch(teacher.config.vocab_size)
    with torch.inference_mode():
        cached = student.encode_image(px[:, 0])
        want_t = teacher(ids, mask, px).logits
        want_s = student(ids, mask, image_states=[cached]).logits
    got_t = onnx_call(teacher, lambda m, i, a, p: m(i, a, p).logits, (ids, mask, px))()[0]
    got_s = onnx_call(student, lambda m, i, a, c: m(i, a, image_states=[c]).logits, (ids, mask, cached))()[0]
    assert got_t.shape == tuple(want_t.shape) and got_s.shape == tuple(want_s.shape)
    assert torch.allclose(torch.from_numpy(got_t), want_t, atol=1e-4)
    assert torch.allclose(torch.from_numpy(got_s), want_s, atol=1e-4)
    assert not torch.allclose(want_s[0], want_s[1])  # different questions: a constant graph would not pass


def test_benchmark_times_both_models_in_onnx_runtime(pair):
    results = benchmark_pair(
        *pair, batch_sizes=(1,), retrieval_sizes=(2,), min_run_time=0.01, n_examples=2, threads=1, runtime="onnx"
    )
    assert results["settings"]["runtime"] == "onnx"
    assert all(results["paths"][name]["batches"]["1"]["median_s"] > 0 for name in PATHS)
    with pytest.raises(ValueError, match="runtime"):
        benchmark_pair(*pair, batch_sizes=(1,), runtime="tensorrt")


# -- size presets (`workbench bench --preset`): random weights, labelled as speed-only everywhere


@pytest.mark.parametrize("name", ["vilt-b32", "toy"])
def test_presets_build_the_stated_shapes(name):
    from workbench.bench import UNTRAINED, preset_checkpoints
    from workbench.configs.bench import PRESETS

    p = PRESETS[name]
    size = p["size"]
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        teacher, students = preset_checkpoints(name)
    c = teacher.model.config
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads) == (
        size["hidden_size"], size["num_layers"], size["num_heads"]
    )  # fmt: skip
    assert (c.patch_size, c.image_size, c.vocab_size) == (size["patch_size"], size["image_size"], p["vocab_size"])
    assert teacher.model.classifier[-1].out_features == p["num_labels"] == len(teacher.labels)
    assert set(students) == set(p["students"]) and teacher.meta["weights"] == UNTRAINED
    for s_name, ck in students.items():
        v, t = ck.model.vision_config, ck.model.text_config
        assert v.hidden_size == t.hidden_size == size["hidden_size"] and v.num_attention_heads == size["num_heads"]
        shape = (v.patch_size, v.image_size, v.num_hidden_layers)
        assert shape == (size["patch_size"], size["image_size"], size["num_layers"])
        assert t.num_hidden_layers == p["students"][s_name].get("text_layers", size["num_layers"])
        assert ck.model.classifier[-1].out_features == p["num_labels"] and ck.meta["weights"] == UNTRAINED
    if name == "vilt-b32":  # dandelin/vilt-b32-finetuned-vqa's shape, and a shallower text tower
        assert (c.hidden_size, c.num_hidden_layers, c.patch_size, c.image_size) == (768, 12, 32, 384)
        assert students["student-fast"].model.text_config.num_hidden_layers < 12


def test_cli_bench_preset_toy_runs_end_to_end_and_labels_untrained_weights(tmp_path, capsys):
    from workbench.bench import UNTRAINED, preset_table

    out = tmp_path / "speed.json"
    out.write_text(json.dumps({"kept": 1}))  # the file's other sections survive
    argv = ["bench", "--preset", "toy", "--out", str(out), "--quick", "--no-progress", "--threads", "1"]
    assert main([*argv, "--runtimes", "eager", "--rounds", "5"]) == 0
    data = json.loads(out.read_text())
    section = data["paper_scale"]
    assert data["kept"] == 1 and section["label"] == UNTRAINED and section["preset"] == "toy"
    for entry in section["students"].values():
        run = entry["runs"]["eager"]
        assert run["models"]["teacher"]["weights"] == UNTRAINED and run["settings"]["rounds"] == 5
        ratio = run["ratios"]["1"]
        lo, hi = ratio["student_cached_speedup_range"]
        assert lo <= ratio["student_cached_speedup"] <= hi and ratio["student_cached_speedup_rounds"] == 5
        assert entry["best"]["1"]["student_cached"]["runtime"] == "eager"
        coco = entry["coco5k"]
        assert (coco["n_images"], coco["n_texts"]) == (5000, 25000) and coco["teacher"]["extrapolated"] is True
        assert coco["student"]["search_extrapolated"] is False and coco["student"]["encode_extrapolated"] is True
    assert section["load_average"]["before"]["1min"] >= 0
    table = preset_table(section)
    printed = capsys.readouterr().out
    assert UNTRAINED in table and UNTRAINED in printed and "COCO-5k" in table and "(extrapolated)" in table
    assert "ONNX Runtime: not run at this size" in table


def test_width_curve_labels_untrained_weights(tmp_path):
    from workbench.bench import UNTRAINED, width_table

    out = tmp_path / "speed.json"
    argv = ["bench", "--width-curve", "32", "64", "--rounds", "2", "--threads", "1", "--out", str(out)]
    assert main(argv) == 0
    curve = json.loads(out.read_text())["width_curve"]
    assert [p["width"] for p in curve["points"]] == [32, 64] and curve["label"] == UNTRAINED
    assert all(p["speedup"] > 0 and p["flop_ratio"] > 1 for p in curve["points"])
    assert UNTRAINED in width_table(curve)


def test_a_pair_run_keeps_the_paper_scale_section(tmp_path):
    out = tmp_path / "speed.json"
    write_speed({"paper_scale": {"preset": "toy"}}, out)
    write_speed({"paths": {}}, out)
    assert json.loads(out.read_text()) == {"paths": {}, "paper_scale": {"preset": "toy"}}


def test_a_second_preset_run_adds_its_runtime_to_the_students_it_times(tmp_path):
    """Runtimes measured in separate runs: the second run's runtime joins the first's for the student it times
    (best-runtime ratios recomputed over both), the student it does not time is kept as it was."""
    out = tmp_path / "speed.json"
    argv = ["bench", "--preset", "toy", "--out", str(out), "--quick", "--no-progress", "--threads", "1", "--no-coco"]
    assert main([*argv, "--runtimes", "eager"]) == 0
    first = json.loads(out.read_text())["paper_scale"]
    assert main([*argv, "--runtimes", "bf16", "--students", "student-fast"]) == 0
    section = json.loads(out.read_text())["paper_scale"]
    assert section["students"]["student"] == first["students"]["student"]
    fast = section["students"]["student-fast"]
    assert set(fast["runs"]) == {"eager", "bf16"}
    assert fast["runs"]["bf16"]["settings"]["runtime"] == "bf16"
    for b, row in fast["best"].items():  # each path's fastest median over both runtimes
        for path, key in (("teacher", None), ("student_cached", "student_cached")):
            cells = {rt: r["paths"][path]["batches"][b]["per_example_ms"] for rt, r in fast["runs"].items()}
            best_rt = min(cells, key=cells.get)
            if key is None:
                assert row["teacher_runtime"] == best_rt and row["teacher_ms"] == cells[best_rt]
            else:
                assert row[key]["runtime"] == best_rt and row[key]["ms"] == cells[best_rt]
    assert "bf16" not in section["not_run"] and "eager" not in section["not_run"] and "onnx" in section["not_run"]
    assert len(section["invocations"]) == 2


def test_a_preset_run_with_readme_rewrites_the_published_speed_section(tmp_path):
    """--readme on a --preset run republishes the doc's speed section from the whole JSON: a runtime measured in
    a later run leaves the "not run" line of the published table."""
    from workbench.bench import speed_table

    out, doc = tmp_path / "speed.json", tmp_path / "results.md"
    pair = ["bench", "--teacher", "assets/shapes-vqa-teacher", "--student", "assets/shapes-vqa-student", "--quick"]
    assert main([*pair, "--threads", "1", "--no-progress", "--out", str(out)]) == 0  # the pair's results first
    doc.write_text("# r\n<!-- speed:start -->\nold\n<!-- speed:end -->\n")
    argv = ["bench", "--preset", "toy", "--out", str(out), "--quick", "--no-progress", "--threads", "1", "--no-coco"]
    assert main([*argv, "--runtimes", "eager", "--readme", str(doc)]) == 0
    first = doc.read_text()
    assert "old" not in first and "Paper scale" in first and "eager bf16: not run at this size" in first
    assert speed_table(json.loads(out.read_text())) in first
    assert main([*argv, "--runtimes", "bf16", "--students", "student-fast", "--readme", str(doc)]) == 0
    assert "eager bf16: not run at this size" not in doc.read_text()
    # a later pair run republishes the whole file too: the size section stays in the doc
    assert main([*pair, "--threads", "1", "--no-progress", "--out", str(out), "--readme", str(doc)]) == 0
    assert "Paper scale" in doc.read_text() and speed_table(json.loads(out.read_text())) in doc.read_text()
