"""The app through its API (gradio_client), on tiny models so it does not depend on training."""

import socket

import pytest
from gradio_client import Client, handle_file

import app as app_module
from workbench.api import load_model
from workbench.data.samples import write_samples
from workbench.data.shapes import VE_LABELS, VQA_ANSWERS
from workbench.models import create_model
from workbench.models.io import save_checkpoint


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("app")
    models = {}
    for name, labels in (("vqa", VQA_ANSWERS), ("ve", VE_LABELS)):
        m = create_model("fusion", len(tokenizer), len(labels), hidden_size=32, num_layers=1, num_heads=2)
        save_checkpoint(m, tokenizer, root / name, {"task": name, "labels": list(labels)})
        models[f"tiny {name}"] = load_model(root / name)
    student = create_model("dual", len(tokenizer), len(VQA_ANSWERS), hidden_size=32, num_layers=1, num_heads=2)
    save_checkpoint(student, tokenizer, root / "student", {"task": "vqa", "labels": list(VQA_ANSWERS)})
    models["tiny student"] = load_model(root / "student")
    samples = write_samples(root / "samples", n_shapes=2, n_easy=1)
    for s in samples:
        s["path"] = str(root / "samples" / s["file"])
    demo = app_module.build_app(models, samples)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield Client(f"http://127.0.0.1:{port}/", verbose=False), samples
    demo.close()


def test_ask_endpoint_answers(served):
    client, samples = served
    text, plot = client.predict(
        "tiny vqa", handle_file(samples[0]["path"]), "how many circles are there?", api_name="/ask"
    )
    answer = text.split("**")[1]
    assert answer in VQA_ANSWERS and " ms" in text
    assert plot is not None


def test_ask_endpoint_dual_student(served):
    client, samples = served
    text, _ = client.predict("tiny student", handle_file(samples[0]["path"]), "is there a circle?", api_name="/ask")
    assert text.split("**")[1] in VQA_ANSWERS


def test_ask_endpoint_entailment_model(served):
    client, samples = served
    text, _ = client.predict("tiny ve", handle_file(samples[1]["path"]), "there is a red circle.", api_name="/ask")
    assert text.split("**")[1] in VE_LABELS


@pytest.mark.parametrize("question", ["", "x" * 2000])
def test_bad_questions_give_a_clear_error_and_the_app_stays_up(served, question):
    client, samples = served
    with pytest.raises(Exception, match="empty|limit"):
        client.predict("tiny vqa", handle_file(samples[0]["path"]), question, api_name="/ask")
    text, _ = client.predict("tiny vqa", handle_file(samples[0]["path"]), "is there a circle?", api_name="/ask")
    assert text.split("**")[1] in VQA_ANSWERS


def test_non_image_upload_is_refused(served, tmp_path):
    client, _ = served
    bad = tmp_path / "notes.png"
    bad.write_text("not an image at all")
    with pytest.raises(Exception, match="(?i)error|image"):
        client.predict("tiny vqa", handle_file(str(bad)), "is there a circle?", api_name="/ask")
    text, _ = client.predict("tiny vqa", handle_file(served[1][0]["path"]), "is there a circle?", api_name="/ask")
    assert text.split("**")[1] in VQA_ANSWERS  # still up
