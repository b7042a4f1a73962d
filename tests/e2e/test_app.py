"""The app through its API (gradio_client), every public endpoint, on tiny random models so it does
not depend on training: a VQA pair, an entailment teacher with no student, a two-image NLVR pair, and for
the Retrieval tab a dual student and an image-text matching fusion teacher. The app is the package
`workbench.app`; `app.py` at the root builds it on an assets directory."""

import csv
import importlib.util
import json
import re
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image, ImageDraw

import workbench.app as app_module
from workbench.api import load_model
from workbench.coverage import vocabulary_record, write_train_vocab
from workbench.data import load_dataset
from workbench.data.samples import write_samples
from workbench.data.shapes import ITM_LABELS, NLVR_LABELS, SHAPES, VE_LABELS, VQA_ANSWERS, VQA_TYPES
from workbench.models import create_model
from workbench.models.io import save_checkpoint

VQA, VE, NLVR = "tiny VQA", "tiny entailment", "tiny NLVR"
ENDPOINTS = {
    "/ask",
    "/random_example",
    "/load_sample",
    "/pick_example",
    "/set_pair",
    "/explain",
    "/speed",
    "/errors",
    "/open_example",
    "/retrieve",
}
GALLERY = 40  # the Retrieval tab's gallery in these tests
STUDENT_GALLERY = "shapes-retrieval"  # what the tests' retrieval student records as its data
TINY_BENCH = {
    "quick": dict(batch_sizes=(1, 2), retrieval_sizes=(4,), min_run_time=0.01, budget_s=0.5, n_examples=4),
    "onnx": dict(batch_sizes=(1,), retrieval_sizes=(4,), min_run_time=0.01, budget_s=0.5, n_examples=4, runtime="onnx"),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(demo, attempts: int = 5) -> int:
    """Serve `demo` on a free port (Gradio refuses port 0), trying another if one is taken before the launch."""
    for attempt in range(attempts):
        port = _free_port()
        try:
            app_module.serve(demo, port=port, prevent_thread_lock=True, quiet=True)
            return port
        except OSError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _tiny(root: Path, tokenizer, name: str, kind: str, labels, task: str, num_images: int = 1):
    size = dict(hidden_size=32, num_layers=2, num_heads=2)
    model = create_model(kind, len(tokenizer), len(labels), num_images, **size)
    meta = {"task": task, "labels": list(labels), "dataset": f"shapes-{task}"}
    meta["qtypes"] = list(VQA_TYPES) if task == "vqa" else []
    save_checkpoint(model, tokenizer, root / name, meta)
    if task == "vqa":  # the VQA pair knows the words of 300 training questions; the others record no vocabulary
        write_train_vocab(root / name, vocabulary_record(load_dataset("shapes-vqa", "train", 300), {}))
    return load_model(root / name)


def _tiny_retrieval(root: Path, tokenizer) -> "app_module.RetrievalModels":
    """A random dual student and a random image-text matching fusion teacher, saved and loaded back as the
    app loads shipped ones."""
    student = create_model("dual", len(tokenizer), 0, hidden_size=32, num_layers=2, num_heads=2, embed_dim=16)
    # the random-scene gallery, not the default: the app must serve the gallery its student records
    meta = {"task": "retrieval", "labels": [], "dataset": STUDENT_GALLERY}
    save_checkpoint(student, tokenizer, root / "retrieval-student", meta)
    _tiny(root, tokenizer, "itm-teacher", "fusion", ITM_LABELS, "itm")
    models = app_module.load_retrieval(root / "retrieval-student", root / "itm-teacher")
    assert models.student is not None and models.fusion is not None and not models.note
    return models


@pytest.fixture(scope="module")
def served(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("app")
    pairs = {
        VQA: (
            _tiny(root, tokenizer, "vqa-teacher", "fusion", VQA_ANSWERS, "vqa"),
            _tiny(root, tokenizer, "vqa-student", "dual", VQA_ANSWERS, "vqa"),
        ),
        VE: (_tiny(root, tokenizer, "ve-teacher", "fusion", VE_LABELS, "ve"), None),
        NLVR: (
            _tiny(root, tokenizer, "nlvr-teacher", "fusion", NLVR_LABELS, "nlvr", 2),
            _tiny(root, tokenizer, "nlvr-student", "dual", NLVR_LABELS, "nlvr", 2),
        ),
    }
    samples = write_samples(root / "samples", n_shapes=2, n_easy=1)
    for s in samples:
        s["path"] = str(root / "samples" / s["file"])
    retrieval = _tiny_retrieval(root, tokenizer)
    demo = app_module.build_app(
        pairs, samples, errors_n=24, bench_settings=TINY_BENCH, retrieval=retrieval, gallery_size=GALLERY
    )
    port = _launch(demo)
    APP["demo"] = demo
    yield Client(f"http://127.0.0.1:{port}/", verbose=False), samples
    demo.close()


APP = {}  # the served app, for its private page events (called directly: API clients cannot)


def _ask(client, image, question="is there a circle?", pair=VQA, image2=None):
    files = [handle_file(str(x)) if x is not None else None for x in (image, image2)]
    return client.predict(pair, files[0], files[1], question, api_name="/ask")


def _answer(text: str) -> str:
    return text.split("**")[1]


ROOT = Path(__file__).resolve().parents[2]


def test_defining_the_app_writes_no_stub_file_into_the_repository():
    from workbench.app import ui  # defines the app's component subclass

    assert not Path(ui.__file__).with_suffix(".pyi").exists()  # Gradio's per-component .pyi
    assert not list(Path(app_module.__file__).parent.glob("*.pyi")) and not (ROOT / "app.pyi").exists()


def test_every_function_is_an_api_endpoint(served):
    client, _ = served
    assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == ENDPOINTS


def test_ask_answers_with_teacher_and_student_and_reuses_image_features(served):
    client, samples = served
    t_text, t_plot, s_text, s_plot, notes, download = _ask(client, samples[0]["path"], "how many circles are there?")
    assert _answer(t_text) in VQA_ANSWERS and _answer(s_text) in VQA_ANSWERS
    assert " ms" in t_text and " ms" in s_text and t_plot is not None and s_plot is not None
    assert notes == "" and json.loads(Path(download).read_text())["question"] == "how many circles are there?"
    again = _ask(client, samples[0]["path"], "is there a red square?")[2]
    assert "image features cached" in again  # same pixels: the student's image tower did not run


def test_teacher_without_a_student(served):
    client, samples = served
    t_text, _, s_text, s_plot, _, _ = _ask(client, samples[1]["path"], "there is a red circle.", pair=VE)
    assert _answer(t_text) in VE_LABELS and "no student" in s_text and s_plot is None


def test_two_image_pair_needs_both_images(served):
    client, samples = served
    with pytest.raises(Exception, match="two images"):
        _ask(client, samples[0]["path"], "both images contain a red circle.", pair=NLVR)
    t_text, _, s_text, *_ = _ask(client, samples[0]["path"], "both images contain a circle.", NLVR, samples[1]["path"])
    assert _answer(t_text) in NLVR_LABELS and _answer(s_text) in NLVR_LABELS


@pytest.mark.parametrize("pair", [VQA, NLVR])
def test_random_example_is_a_rendered_scene_with_a_question(served, pair):
    client, _ = served
    image, image2, question, info, examples = client.predict(pair, api_name="/random_example")
    assert Image.open(image).size == (64, 64) and question and "answer" in info
    assert (image2 is not None) == (pair == NLVR)


def test_gallery_sample_and_example_question(served):
    client, samples = served
    image, _, question, examples, info = client.predict(VQA, 1, "", api_name="/load_sample")
    assert Path(image).name == samples[1]["file"] and question == samples[1]["questions"][0]
    assert [q for [q] in examples["samples"]] == samples[1]["questions"]
    assert client.predict(0, api_name="/pick_example") == samples[1]["questions"][0]  # this session's examples
    with pytest.raises(Exception, match="No sample"):
        client.predict(VQA, 99, "", api_name="/load_sample")


def test_set_pair_resets_the_inputs_to_the_pairs_own(served):
    client, samples = served
    out = client.predict(NLVR, samples[0]["questions"][0], api_name="/set_pair")
    # the API leaves out the button update: 0 gallery, 1 examples, 2 image, 3 image2, 4 question, 5 caption,
    # 6-7 headers, 8-13 answers, 14-21 Attention (layer, head, word, plots, text, notes, files), 22-25 Errors
    shapes = [x for x in samples if x["source"] == "shapes"]
    assert Path(out[2]["value"]).name == shapes[0]["file"] and out[2]["label"] == "left image"
    assert out[3]["visible"] is True and Path(out[3]["value"]).name == shapes[1]["file"]  # NLVR: both images
    assert out[5] == f"sample `{shapes[0]['file']}`"
    assert [q for [q] in out[1]["samples"]][0] == out[4]["value"]  # the question is the pair's first example
    assert out[4]["label"].startswith("statement") and out[4]["value"] not in samples[0]["questions"]
    assert list(out[8:14]) == ["", None, "", None, "", None]  # no stale answer, notes or download
    assert out[14]["maximum"] == 2  # layers both models have
    assert out[18]["visible"] is True  # the maps over the right image
    own = client.predict(VE, "my own question?", api_name="/set_pair")
    assert own[3]["visible"] is False and own[3]["value"] is None and own[18]["visible"] is False
    assert own[4]["value"] == "my own question?"  # typed by the user: kept
    back = client.predict(VQA, "my own question?", api_name="/set_pair")
    assert Path(back[2]["value"]).name == shapes[0]["file"] and back[2]["label"] == "image"


@pytest.mark.parametrize("method", ["attention", "rollout", "relevancy", "ig"])
def test_explain_draws_teacher_and_student_maps(served, method):
    client, samples = served
    args = (VQA, handle_file(samples[0]["path"]), None, "is there a red circle?", method, 2, "mean", "all")
    plot, plot2, text, notes, files, word, layer, head = client.predict(*args, api_name="/explain")
    assert plot is not None and "Teacher vs student map" in text
    assert [label for label, _ in word["choices"]][1:] == ["1: is", "2: there", "3: a", "4: red", "5: circle", "6: ?"]
    assert layer["interactive"] is (method == "attention")


def test_explain_one_word_and_head_and_the_limits(served):
    client, samples = served
    image = handle_file(samples[0]["path"])
    _, _, text, _, _, word, _, _ = client.predict(
        VQA, image, None, "is there a red circle?", "attention", 1, "2", "4:red", api_name="/explain"
    )
    assert word["value"] == "4:red"
    for method in ("attention", "rollout", "relevancy"):  # two images: maps over the left one
        plot, plot2, text, *_ = client.predict(
            NLVR, image, image, "both images contain a circle.", method, 2, "mean", "all", api_name="/explain"
        )
        assert plot is not None and "left image" in text
    with pytest.raises(Exception, match="one-image"):
        client.predict(NLVR, image, image, "both images contain a circle.", "ig", 2, "mean", "all", api_name="/explain")
    with pytest.raises(Exception, match="empty"):
        client.predict(VQA, image, None, "  ", "attention", 2, "mean", "all", api_name="/explain")  # fmt: skip


def test_speed_runs_the_benchmark(served):
    client, _ = served
    plot, table, csv_file = client.predict(VQA, "quick", api_name="/speed")
    assert plot is not None and "fusion teacher" in table and "image features cached" in table
    rows = list(csv.DictReader(Path(csv_file).open()))
    latency = [r for r in rows if r["section"] == "latency"]
    assert {(r["path"], r["batch_size"]) for r in latency} == {
        (p, b) for p in ("teacher", "student", "student_cached") for b in ("1", "2")
    }  # the three paths at TINY_BENCH's batch sizes, then the retrieval timings at its one gallery size
    assert [(r["path"], r["n_images"]) for r in rows if r["section"] == "retrieval"] == [
        ("teacher", "4"),
        ("student", "4"),
    ]
    assert all(float(r["median_s"]) > 0 for r in rows)
    assert "in eager PyTorch" in table
    plot, table, _ = client.predict(VQA, "onnx", api_name="/speed")
    assert plot is not None and "both models run in ONNX Runtime" in table
    with pytest.raises(Exception, match="No student"):
        client.predict(VE, "quick", api_name="/speed")


def test_errors_lists_disagreements_and_opens_one(served):
    client, _ = served
    summary, plot, table, csv, qtypes = client.predict(VQA, "all", "any", api_name="/errors")
    assert "24 test examples" in summary and plot is not None
    assert table["headers"] == app_module.ERROR_HEADERS and Path(csv).read_text().startswith("index,")
    counting, *_ = client.predict(VQA, "counting", "student", api_name="/errors")
    assert "disagreements" in counting
    image, image2, question, info = client.predict(VQA, 5, "Attention", api_name="/open_example")
    assert Image.open(image).size == (64, 64) and image2 is None and question and "gold answer" in info
    with pytest.raises(Exception, match="No test example"):
        client.predict(VQA, 24, "Ask", api_name="/open_example")
    with pytest.raises(Exception, match="No student"):
        client.predict(VE, "all", "any", api_name="/errors")


# ---------------------------------------------------------------------------------------- bad input


def _scene(size=64) -> Image.Image:
    im = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(im)
    draw.ellipse((size // 8, size // 8, size // 2, size // 2), fill=(220, 40, 40))
    draw.rectangle((size // 2, size // 2, size - size // 8, size - size // 8), fill=(40, 80, 220))
    return im


IMAGES = {
    "grayscale": lambda: _scene().convert("L"),
    "rgba": lambda: _scene().convert("RGBA"),
    "palette": lambda: _scene().convert("P"),
    "16-bit": lambda: Image.fromarray(np.asarray(_scene().convert("L"), dtype=np.uint16) * 257),
    "4000x4000": lambda: _scene(4000),
}


@pytest.mark.parametrize("kind", list(IMAGES))
def test_any_image_mode_and_size_is_answered(served, tmp_path, kind):
    client, _ = served
    path = tmp_path / f"{kind}.png"
    IMAGES[kind]().save(path)
    t_text, _, s_text, *_ = _ask(client, path)
    assert _answer(t_text) in VQA_ANSWERS and _answer(s_text) in VQA_ANSWERS


def test_non_image_upload_gets_a_clear_message_and_the_app_stays_up(served, tmp_path):
    client, samples = served
    bad = tmp_path / "notes.png"
    bad.write_text("not an image at all")
    with pytest.raises(Exception, match="notes.png is not an image"):
        _ask(client, bad)
    assert _answer(_ask(client, samples[0]["path"])[0]) in VQA_ANSWERS


@pytest.mark.parametrize("question", ["", "   ", "x" * 2000], ids=["empty", "blank", "2000-chars"])
def test_bad_questions_give_a_clear_message_and_the_app_stays_up(served, question):
    client, samples = served
    with pytest.raises(Exception, match="question is empty|the limit is"):
        _ask(client, samples[0]["path"], question)
    assert _answer(_ask(client, samples[0]["path"])[0]) in VQA_ANSWERS


def test_non_ascii_question_is_answered(served):
    client, samples = served
    t_text, _, s_text, *_ = _ask(client, samples[0]["path"], "¿cuántos círculos hay? 有几个圆? 🟥")
    assert _answer(t_text) in VQA_ANSWERS and _answer(s_text) in VQA_ANSWERS


def test_no_image_gets_a_clear_message(served):
    client, _ = served
    with pytest.raises(Exception, match="Pick a sample image"):
        client.predict(VQA, None, None, "is there a circle?", api_name="/ask")


# ---------------------------------------------------------------------------------------- retrieval


def _retrieve(client, query: str, k: int = 8, rerank: bool = False):
    return client.predict(query, k, rerank, api_name="/retrieve")


@pytest.fixture(scope="module")
def captions():
    from workbench.retrieval import gallery_from

    return gallery_from(load_dataset(STUDENT_GALLERY, "test", GALLERY)).texts


def test_retrieval_gallery_is_the_one_the_student_records():
    from workbench.data import RETRIEVAL_DATASETS

    name = app_module.retrieval_gallery_name
    assert name(SimpleNamespace(meta={"dataset": "shapes-retrieval"})) == "shapes-retrieval"
    for meta in ({}, {"dataset": "shapes-vqa"}, {"dataset": None}):  # CLIP folders, odd checkpoints: the default
        assert name(SimpleNamespace(meta=meta)) == RETRIEVAL_DATASETS[0] == "shapes-retrieval-hard"
    assert name(None) == "shapes-retrieval-hard"


def test_retrieve_ranks_gallery_images_by_descending_score_with_timings(served, captions):
    client, _ = served
    first, info, plot, data = _retrieve(client, "a large red circle at top left.", k=8)
    again = _retrieve(client, "a small blue square at bottom right.", k=8)[3]
    for out in (data, again):
        results = out["results"]
        assert [r["rank"] for r in results] == list(range(1, 9)) and not out["reranked"]
        scores = [r["score"] for r in results]
        assert scores == sorted(scores, reverse=True) and scores == [r["similarity"] for r in results]
        images = [r["image"] for r in results]
        assert len(set(images)) == 8 and all(0 <= j < GALLERY for j in images)
        assert all(r["caption"] == captions[r["image"]] for r in results)  # shapes: one caption per image
        assert set(out["timings_ms"]) == {"index", "encode", "search"} and min(out["timings_ms"].values()) > 0
        assert out["models"]["student"]["params"] > 0 and out["models"]["student"]["size_mb"] > 0
        assert out["index"]["n_images"] == GALLERY
    # the index is built once: the second query reuses it (same build time, not rebuilt)
    assert not again["index"]["built_now"] and again["timings_ms"]["index"] == data["timings_ms"]["index"]
    assert len(first) == 8 and all(Path(item["image"]).exists() for item in first)
    assert first[0]["caption"].startswith("#1 · cos")
    assert "**Index**" in info and "This query" in info and "Models" in info and plot is not None


def test_fusion_reranking_reorders_only_within_the_top_k(served):
    client, _ = served
    query = "a small green triangle at upper middle left, a large yellow circle at bottom right."
    plain = _retrieve(client, query, k=10)[3]["results"]
    gallery, info, _, data = _retrieve(client, query, k=10, rerank=True)
    reranked = data["results"]
    assert data["reranked"] and [r["image"] for r in reranked] != [] and len(gallery) == 10
    assert {r["image"] for r in reranked} == {r["image"] for r in plain}  # the same top k, re-ordered
    scores = [r["score"] for r in reranked]  # log P(match) of the fusion teacher, best first
    assert scores == sorted(scores, reverse=True)
    assert all(abs(r["match_prob"] - np.exp(r["score"])) < 1e-5 for r in reranked)
    for r in reranked:  # each image keeps its index rank and cosine
        assert plain[r["dual_rank"] - 1]["image"] == r["image"]
        assert abs(plain[r["dual_rank"] - 1]["similarity"] - r["similarity"]) < 1e-5
    assert data["timings_ms"]["rerank"] > 0 and "fusion" in data["models"]
    assert "re-rank of the top 10" in info and gallery[0]["caption"].startswith("#1 · P(match)")


def test_a_gallery_caption_as_query_reports_where_its_image_ranks(served, captions):
    client, _ = served
    for rerank in (False, True):
        data = _retrieve(client, captions[3], k=GALLERY // 2, rerank=rerank)[3]
        assert data["gold"]["image"] == 3 and 1 <= data["gold"]["rank"] <= GALLERY
        ranked = [r["image"] for r in data["results"]]
        if 3 in ranked:
            assert ranked.index(3) + 1 == data["gold"]["rank"]
        else:
            assert data["gold"]["rank"] > GALLERY // 2
    assert _retrieve(client, "not a caption of any image")[3]["gold"] is None


@pytest.mark.parametrize("query", ["", "   ", "x" * 2000], ids=["empty", "blank", "2000-chars"])
def test_bad_queries_give_a_clear_message_and_search_still_works(served, query):
    client, _ = served
    with pytest.raises(Exception, match="the query is empty|the query has 2000 characters; the limit is"):
        _retrieve(client, query)
    assert len(_retrieve(client, "a red circle.")[3]["results"]) == 8


@pytest.mark.parametrize("k", [0, 999])
def test_k_out_of_range_gives_a_clear_message(served, k):
    client, _ = served
    with pytest.raises(Exception, match="(less|greater) than (minimum|maximum) value"):  # Gradio's slider check
        _retrieve(client, "a red circle.", k=k)


def _endpoint(demo, api_name: str):
    return next(f.fn for f in demo.fns.values() if f.api_name == api_name)


def _markdown(demo, elem_id: str) -> str:
    return next(b.value for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id)


def test_without_retrieval_models_the_tab_says_how_to_build_them(tmp_path, tokenizer):
    import gradio as gr

    pair = {VQA: (_tiny(tmp_path, tokenizer, "t", "fusion", VQA_ANSWERS, "vqa"), None)}
    empty = app_module.load_retrieval(assets=tmp_path / "nothing-shipped")
    assert empty.student is None and empty.fusion is None
    demo = app_module.build_app(pair, [], retrieval=empty, gallery_size=4)
    header = _markdown(demo, "retrieval-models")
    assert "No retrieval student is loaded" in header and "workbench experiment mcad" in header
    assert app_module.RETRIEVAL_STUDENT in header and app_module.RETRIEVAL_FUSION in header
    with pytest.raises(gr.Error, match="No retrieval student.*workbench experiment mcad"):
        _endpoint(demo, "retrieve")("a red circle.", 5, False)
    # a student without a fusion teacher: search works, re-ranking says what is missing
    student_only = app_module.RetrievalModels(student=_tiny_retrieval(tmp_path, tokenizer).student)
    demo = app_module.build_app(pair, [], retrieval=student_only, gallery_size=6)
    assert "re-ranking is off" in _markdown(demo, "retrieval-models")
    retrieve = _endpoint(demo, "retrieve")
    items, _, _, data = retrieve("a red circle.", 5, False)
    assert len(items) == 5 and data["index"]["n_images"] == 6
    assert len(retrieve("a red circle.", 24, False)[0]) == 6  # k beyond the gallery: the whole gallery
    with pytest.raises(gr.Error, match="k must be from 1 to"):
        retrieve("a red circle.", 0, False)
    with pytest.raises(gr.Error, match="No fusion teacher"):
        retrieve("a red circle.", 5, True)


def test_load_retrieval_reports_a_fusion_teacher_without_a_matching_head(tmp_path, tokenizer):
    _tiny(tmp_path, tokenizer, "vqa-teacher", "fusion", VQA_ANSWERS, "vqa")
    models = app_module.load_retrieval(tmp_path / "missing-student", tmp_path / "vqa-teacher")
    assert models.student is None and models.fusion is None and "no image-text matching head" in models.note


def test_retrieval_teachers_are_not_offered_as_ask_pairs(tmp_path):
    for name in ("shapes-vqa-teacher", "shapes-itm-teacher", app_module.RETRIEVAL_STUDENT):
        (tmp_path / name).mkdir()
    assert list(app_module.shipped_pairs(tmp_path)) == ["shapes VQA"]


def test_an_earlier_stage_of_a_shipped_teacher_is_not_offered_as_a_pair(tmp_path):
    """shapes-vqa-base-teacher (a shapes-vqa teacher the shipped one was fine-tuned from) is no pair of its own;
    a teacher of another dataset, or one whose dataset has no shipped teacher, still is."""
    import json

    datasets = {"shapes-vqa": "shapes-vqa", "shapes-vqa-base": "shapes-vqa", "vqav2": "vqav2", "mine": "easy-vqa"}
    for task, dataset in datasets.items():
        (tmp_path / f"{task}-teacher").mkdir()
        (tmp_path / f"{task}-teacher" / "workbench.json").write_text(json.dumps({"dataset": dataset}))
    assert sorted(app_module.shipped_pairs(tmp_path)) == ["mine", "shapes VQA", "vqav2"]


def _shipped_layout(tmp_path: Path, tokenizer) -> Path:
    """An assets directory laid out as the repository's: one VQA pair and the samples, no retrieval models."""
    assets = tmp_path / "assets"
    _tiny(assets, tokenizer, "shapes-vqa-teacher", "fusion", VQA_ANSWERS, "vqa")
    _tiny(assets, tokenizer, "shapes-vqa-student", "dual", VQA_ANSWERS, "vqa")
    write_samples(assets / "samples", n_shapes=2, n_easy=0)
    return assets


def test_app_py_defines_a_module_level_demo_on_the_assets_directory(tmp_path, tokenizer, monkeypatch):
    """`gradio app.py` (reload mode) serves the module-level `demo`; imported, app.py builds it on
    $WORKBENCH_ASSETS (what `python app.py --assets DIR` sets)."""
    import gradio as gr

    monkeypatch.setenv("WORKBENCH_ASSETS", str(_shipped_layout(tmp_path, tokenizer)))
    spec = importlib.util.spec_from_file_location("app_under_test", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert isinstance(module.demo, gr.Blocks)
    pair = next(b for b in module.demo.blocks.values() if getattr(b, "elem_id", None) == "pair")
    assert [value for _, value in pair.choices] == ["shapes VQA"]
    assert "No retrieval student is loaded" in _markdown(module.demo, "retrieval-models")
    assert module.parse_args(["--assets", "elsewhere", "--port", "1"]).assets == "elsewhere"


# ---------------------------------------------------------------------------------------- what the models cannot read


def test_ask_says_what_the_models_cannot_read_and_still_answers(served, tmp_path):
    client, samples = served
    t_text, _, s_text, _, notes, download = _ask(client, samples[0]["path"], "qwerty zxcv?")
    assert _answer(t_text) in VQA_ANSWERS and _answer(s_text) in VQA_ANSWERS
    assert "Words never seen in training: `qwerty`, `zxcv`" in notes and "2 of its 2 content words" in notes
    data = json.loads(Path(download).read_text())
    assert data["question"] == "qwerty zxcv?" and data["pair"] == VQA and set(data["models"]) == {"teacher", "student"}
    teacher = data["models"]["teacher"]
    assert teacher["checkpoint"] == "vqa-teacher" and teacher["unknown_words"] == ["qwerty", "zxcv"]
    assert teacher["answer"] == _answer(t_text) and len(teacher["top"]) == 5 and teacher["warnings"]
    for question in ("🟥🟦🔺", "这是什么颜色？"):
        notes = _ask(client, samples[0]["path"], question)[4]
        assert "every token of it is [UNK]" in notes
    one = tmp_path / "one.png"
    Image.new("RGB", (1, 1), (200, 30, 30)).save(one)
    t_text, _, _, _, notes, _ = _ask(client, one, "how many circles are there?")
    assert _answer(t_text) in VQA_ANSWERS and "1×1 pixels, smaller than the model's 4×4 patch grid" in notes
    assert _ask(client, samples[0]["path"], "how many circles are there?")[4] == ""  # nothing to say


def test_a_pair_without_a_vocabulary_still_flags_unreadable_text(served):
    client, samples = served
    notes = _ask(client, samples[1]["path"], "🟥🟦", pair=VE)[4]
    assert "[UNK]" in notes and "never seen" not in notes  # no recorded vocabulary: no word list


def _figure(plot) -> dict:
    return json.loads(plot["plot"]) if isinstance(plot, dict) and "plot" in plot else json.loads(plot.plot)


def test_each_model_keeps_its_colour_in_every_tab(served):
    from workbench.viz import MODEL_COLOURS, SPEED_COLOURS

    client, samples = served
    _, t_plot, _, s_plot, _, _ = _ask(client, samples[0]["path"], "is there a red circle?")
    assert _figure(t_plot)["data"][0]["marker"]["color"] == MODEL_COLOURS["teacher"] == SPEED_COLOURS["teacher"]
    assert _figure(s_plot)["data"][0]["marker"]["color"] == MODEL_COLOURS["student"] == SPEED_COLOURS["student"]
    _, plot, *_ = client.predict(VQA, "all", "any", api_name="/errors")
    colours = {t["name"]: t["marker"]["color"] for t in _figure(plot)["data"]}
    assert colours["teacher"] == MODEL_COLOURS["teacher"] and colours["student"] == MODEL_COLOURS["student"]


def test_random_scene_examples_are_about_that_scene(served):
    client, _ = served
    data = load_dataset("shapes-vqa", "test", 1_000_000)
    named = 0
    for _ in range(3):
        _, _, question, info, examples = client.predict(VQA, api_name="/random_example")
        texts = [q for [q] in examples["samples"]]
        assert texts[0] == question and len(texts) > 2 and len(set(texts)) == len(texts)
        scene = data[int(re.search(r"#(\d+)", info).group(1))].meta["scene"]
        present = {(o.colour, o.shape) for o in scene.objects}
        for text in texts:  # every object a question names with "the <colour> <shape>" is in the scene
            for colour, shape in re.findall(rf"the (\w+) ({'|'.join(SHAPES)})", text):
                assert (colour, shape) in present, (text, present)
                named += 1
    assert named > 0


def test_an_opened_test_example_brings_its_own_examples():
    opened = _endpoint(APP["demo"], "open_on_click")(VQA, 5, "Ask")
    image, image2, question, info, tabs, examples, message = opened
    texts = [q for [q] in _samples(examples)]
    assert texts[0] == question and len(texts) > 2 and message == "" and "test example #5" in info
    scene = load_dataset("shapes-vqa", "test", 24)[5].meta["scene"]
    present = {(o.colour, o.shape) for o in scene.objects}
    for text in texts:
        for colour, shape in re.findall(rf"the (\w+) ({'|'.join(SHAPES)})", text):
            assert (colour, shape) in present, (text, present)


def _samples(dataset) -> list:
    return dataset["samples"] if isinstance(dataset, dict) else dataset.raw_samples


def test_nlvr_maps_cover_both_images_and_download(served):
    from workbench.app.exports import PNG_EXPORT

    client, samples = served
    image, image2 = handle_file(samples[0]["path"]), handle_file(samples[1]["path"])
    for method in ("attention", "rollout", "relevancy"):
        plot, plot2, text, notes, files, *_ = client.predict(
            NLVR, image, image2, "both images contain a circle.", method, 2, "mean", "all", api_name="/explain"
        )
        assert plot is not None and plot2 is not None
        assert "Teacher vs student map (left image)" in text and "Teacher vs student map (right image)" in text
        npz = np.load(next(f for f in files if f.endswith(".npz")))
        labels = list(npz["labels"])
        assert (
            len(labels) == 4 and sum("left image" in x for x in labels) == 2 and sum("right" in x for x in labels) == 2
        )
        assert all(npz[f"map_{k}"].shape == (4, 4) for k in range(4))  # 64-pixel images, 16-pixel patches
        info = json.loads(Path(next(f for f in files if f.endswith(".json"))).read_text())
        assert info["method"] == method and info["images"] == ["left", "right"] and len(info["maps"]) == 4
        assert ("kaleido is not installed" in text) is not PNG_EXPORT
        assert any(f.endswith(".png") for f in files) is PNG_EXPORT


def test_page_errors_go_to_the_message_area_and_clear_stale_results(served):
    _, samples = served
    page_ask = _endpoint(APP["demo"], "ask_on_click")
    good = page_ask(VQA, samples[0]["path"], None, "is there a circle?")
    assert _answer(good[0]) in VQA_ANSWERS and good[6] == ""
    bad = page_ask(VQA, None, None, "is there a circle?")
    assert list(bad[:6]) == ["", None, "", None, "", None] and "Pick a sample image" in bad[6]  # no stale answer
    assert "Pick a sample image" in page_ask(NLVR, samples[0]["path"], None, "x.")[6].replace(
        "two images", "Pick a sample image"
    )
    page_explain = _endpoint(APP["demo"], "explain_on_click")
    out = page_explain(
        NLVR, samples[0]["path"], samples[1]["path"], "both images contain a circle.", "ig", 2, "mean", "all"
    )
    assert out[0] is None and out[1] is None and "one-image models only" in out[8]
    assert all(u == {"__type__": "update"} for u in out[5:8])  # word, layer, head untouched: no badge on a control
    speed = _endpoint(APP["demo"], "speed_on_click")(VE, "quick", progress=lambda *a, **k: None)
    assert speed[:3] == (None, "", None) and "No student" in speed[3]


def _block(demo, elem_id: str):
    return next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id)


def test_attention_tab_shows_the_shipped_agreement_of_every_student(served):
    """A collapsed accordion on the Attention tab holds the shipped agreement.json's mean Spearman ρ of each student
    per map and the paired p-values, read when the page is built (nothing is run)."""
    from workbench.explain.results import AGREEMENT_LABELS, TRAINED_MAP

    shipped = json.loads((ROOT / "assets" / "results" / "agreement.json").read_text())
    box, text = _block(APP["demo"], "attention-agreement-box"), _markdown(APP["demo"], "attention-agreement")
    parents, node = [], box
    while node is not None:
        parents.append(getattr(node, "elem_id", None) or getattr(node, "id", None))
        node = getattr(node, "parent", None)
    assert "attention" in parents[1:]  # inside the Attention tab (gr.Tab(id="attention"))
    assert box.open is False and f"({shipped['settings']['n']} test examples)" in box.label
    rows = {
        cells[0]: cells[1:]
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith("| map")
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    assert len(rows) == len(shipped["settings"]["maps"]) == 4
    for method in shipped["settings"]["maps"]:
        label = next(k for k in rows if k.startswith(AGREEMENT_LABELS[method]))
        assert ("†" in label) is (method == TRAINED_MAP)
        rhos = [st["maps"][method]["overall"]["spearman"] for st in shipped["students"].values()]
        ps = [pair["maps"][method]["spearman_p_value"] for pair in shipped["paired"].values()]
        assert rows[label] == [f"{r:.3f}" for r in rhos] + ["< 0.001" if p < 0.001 else f"{p:.3f}" for p in ps]
    assert "ρ `none`" in text and "p, `dide vs none`" in text  # the label-only baseline and its paired test
    assert "takes no part in the student's answer" in text
