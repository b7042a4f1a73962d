"""The Python API on good and bad inputs: every failure is an InputError with a clear message."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workbench.api import ask, assets_dir, load_model, shipped
from workbench.data.shapes import VQA_ANSWERS
from workbench.errors import InputError
from workbench.inputs import check_question, read_image
from workbench.models import create_model
from workbench.models.io import save_checkpoint


@pytest.fixture(scope="module")
def model(tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp("api") / "teacher"
    m = create_model("fusion", len(tokenizer), len(VQA_ANSWERS), hidden_size=32, num_layers=1, num_heads=2)
    save_checkpoint(m, tokenizer, folder, {"task": "vqa", "labels": list(VQA_ANSWERS), "dataset": "shapes-vqa"})
    return load_model(folder)


def _rgb(size=64):
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    "image",
    [
        _rgb(),
        _rgb().convert("L"),
        _rgb().convert("RGBA"),
        _rgb().convert("P"),
        Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16),  # 16-bit greyscale
        np.zeros((20, 30), dtype=np.float32),
        np.ones((64, 64, 4), dtype=np.uint8) * 200,
        _rgb(1000),
    ],
    ids=["rgb", "grey", "rgba", "palette", "16bit", "float-array", "rgba-array", "1000px"],
)
def test_any_reasonable_image_is_answered(model, image):
    out = ask(model, image, "how many circles are there?")
    assert out["answer"] in VQA_ANSWERS
    probs = [p for _, p in out["top"]]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
    assert len(out["top"]) == 5 and 0 < out["confidence"] <= 1


def test_image_file_paths(model, tmp_path):
    _rgb().save(tmp_path / "a.png")
    assert ask(model, tmp_path / "a.png", "is there a red circle?")["answer"] in VQA_ANSWERS
    (tmp_path / "not.png").write_text("this is not an image")
    with pytest.raises(InputError, match="not a readable image"):
        read_image(tmp_path / "not.png")
    with pytest.raises(InputError, match="does not exist"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(InputError, match="expected an image"):
        read_image(42)
    with pytest.raises(InputError, match="array must be"):
        read_image(np.zeros((4, 4, 7)))


@pytest.mark.parametrize(
    "question,match", [("", "empty"), ("   \n\t ", "empty"), ("x" * 2000, "limit"), (None, "must be text")]
)
def test_bad_questions(model, question, match):
    with pytest.raises(InputError, match=match):
        ask(model, _rgb(), question)


def test_unicode_and_long_but_allowed_questions(model):
    assert check_question("  what   colour\nis it?  ") == "what colour is it?"
    out = ask(model, _rgb(), "¿qué color tiene el círculo? 🔴 " * 5)
    assert out["answer"] in VQA_ANSWERS
    out = ask(model, _rgb(), "x " * 140)  # 140 words: within the character limit, beyond the 64 tokens
    assert out["truncated"]


def test_wrong_number_of_images(model):
    with pytest.raises(InputError, match="needs 1 image"):
        ask(model, _rgb(), "is there a circle?", second_image=_rgb())


def test_unknown_shipped_name():
    with pytest.raises(InputError, match="no shipped asset"):
        load_model("no-such-teacher")


def test_shipped_assets_follow_the_argument_then_the_environment_variable(model, tmp_path, monkeypatch):
    """The shipped-asset lookup takes a directory (argument), else $WORKBENCH_ASSETS, else the repo's assets/."""
    import workbench.api as api

    mine = tmp_path / "mine"
    (mine / "my-teacher").mkdir(parents=True)
    monkeypatch.delenv("WORKBENCH_ASSETS", raising=False)
    assert assets_dir() == api.REPO_ASSETS == Path(api.__file__).resolve().parent.parent / "assets"
    monkeypatch.setenv("WORKBENCH_ASSETS", str(mine))
    assert assets_dir() == mine and shipped("my-teacher") == mine / "my-teacher"
    assert assets_dir(tmp_path) == tmp_path  # an argument wins over the variable
    with pytest.raises(InputError, match="no shipped asset 'my-teacher'"):
        shipped("my-teacher", tmp_path)
    monkeypatch.setenv("WORKBENCH_ASSETS", "")  # set but empty: the default
    assert assets_dir() == api.REPO_ASSETS


def test_load_model_finds_a_shipped_name_in_the_assets_directory(model, tmp_path, monkeypatch):
    import shutil

    shutil.copytree(model.path, tmp_path / "tiny-teacher")
    monkeypatch.chdir(tmp_path.parent)  # the bare name is not a folder here
    monkeypatch.setenv("WORKBENCH_ASSETS", str(tmp_path))
    assert load_model("tiny-teacher", device="cpu").labels == list(VQA_ANSWERS)
    monkeypatch.setenv("WORKBENCH_ASSETS", str(tmp_path / "elsewhere"))
    with pytest.raises(InputError, match="no shipped asset"):
        load_model("tiny-teacher")
    assert load_model("tiny-teacher", device="cpu", assets=tmp_path).labels == list(VQA_ANSWERS)
