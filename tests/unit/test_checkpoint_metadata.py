"""What a checkpoint folder says about its model, read and written exactly (`workbench.models.io`): a Hugging Face
ViLT folder's metadata by head, the files `save_checkpoint` writes and their modes, the aspect-ratio image spec
round trip, and the message of each refusal (the folder and the field it names)."""

import json
import os
import re
import stat

import pytest
import torch
from safetensors import safe_open
from torch import nn

from workbench.errors import CheckpointError
from workbench.models import create_model
from workbench.models.io import (
    _hf_vilt_meta,
    image_normalisation,
    load_checkpoint,
    read_tokenizer,
    save_checkpoint,
)
from workbench.models.preprocess import ViltImageSpec, preprocess

LABELS = ["no", "yes"]


@pytest.fixture()
def fusion(tokenizer, tiny_size):
    torch.manual_seed(0)
    return create_model("fusion", len(tokenizer), len(LABELS), **tiny_size)


# ---------------------------------------------------------------------------------------------- HF ViLT metadata


def test_a_hf_vilt_question_answering_config_gives_its_labels_in_index_order():
    id2label = {str(i): f"a{i}" for i in (10, 2, 0, 1, 9, 3, 4, 5, 6, 7, 8)}  # "10" sorts before "2" as text
    meta = _hf_vilt_meta({"architectures": ["ViltForQuestionAnswering"], "id2label": id2label})
    assert meta == {"kind": "fusion", "task": "vqa", "labels": [f"a{i}" for i in range(11)], "num_images": 1,
                    "source": "huggingface-vilt"}  # fmt: skip
    assert _hf_vilt_meta({"id2label": {"0": "x"}})["task"] == "vqa"  # no architectures: question answering


def test_a_hf_vilt_nlvr_config_takes_two_images_unless_it_says_otherwise():
    arch = {"architectures": ["ViltForImagesAndTextClassification"], "id2label": {"0": "False", "1": "True"}}
    meta = _hf_vilt_meta(arch)
    assert meta == {"kind": "fusion", "task": "nlvr", "labels": ["False", "True"], "num_images": 2,
                    "source": "huggingface-vilt"}  # fmt: skip
    assert _hf_vilt_meta({**arch, "num_images": 3})["num_images"] == 3


def test_a_pretraining_head_is_a_starting_point_only():
    config = {"architectures": ["ViltForMaskedLM"]}
    assert _hf_vilt_meta(config, any_head=True) == {
        "kind": "fusion", "task": "pretraining", "labels": [], "num_images": 1, "source": "huggingface-vilt",
        "head": "ViltForMaskedLM",
    }  # fmt: skip
    with pytest.raises(
        CheckpointError,
        match=r"^a ViltForMaskedLM checkpoint cannot be used as a teacher; .*"
        r"ViltForImagesAndTextClassification \(to fine-tune from it on a task, use it as --init-from\)$",
    ):
        _hf_vilt_meta(config)
    with pytest.raises(CheckpointError, match=r"a ViltForSomethingElse checkpoint cannot be .*Classification$"):
        _hf_vilt_meta({"architectures": ["ViltForSomethingElse"]})  # not a pre-training head: no --init-from hint


@pytest.mark.parametrize("id2label", [["a", "b"], {"x": "a"}, 5])
def test_an_id2label_that_is_not_an_index_mapping_is_refused(id2label):
    with pytest.raises(CheckpointError, match=r"^config.json: id2label is not an \{index: label\} mapping \(.+\)$"):
        _hf_vilt_meta({"id2label": id2label})


# ---------------------------------------------------------------------------------------------- what save writes


class Wrapped(nn.Module):
    """A model inside a wrapper that keeps it as `.module` (as DDP does)."""

    def __init__(self, model):
        super().__init__()
        self.module = model


def test_save_writes_the_unwrapped_weights_shareable_files_and_creates_parent_folders(fusion, tokenizer, tmp_path):
    folder = save_checkpoint(Wrapped(fusion), tokenizer, tmp_path / "a" / "b" / "ck", {"task": "vqa", "labels": LABELS})
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o755
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["ck"]  # no temporary folder left
    with safe_open(folder / "model.safetensors", "pt") as f:
        assert f.metadata() == {"format": "pt"} and set(f.keys()) == set(fusion.state_dict())
    meta = json.loads((folder / "workbench.json").read_text())
    assert meta == {"format_version": 1, "kind": "fusion", "num_images": 1, "task": "vqa", "labels": LABELS}
    ck = load_checkpoint(folder)
    for k, v in fusion.state_dict().items():
        assert torch.equal(ck.model.state_dict()[k], v), k
    assert not (folder / "preprocessor_config.json").exists() and ck.image_spec is None


def test_a_dual_student_folder_records_both_towers_and_its_embedding_width(tokenizer, tiny_size, tmp_path):
    dual = create_model("dual", len(tokenizer), len(LABELS), embed_dim=24, **tiny_size)
    folder = save_checkpoint(dual, tokenizer, tmp_path / "dual", {"task": "vqa", "labels": LABELS})
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "workbench-dual" and config["embed_dim"] == 24
    assert config["vision"]["hidden_size"] == config["text"]["hidden_size"] == tiny_size["hidden_size"]
    assert load_checkpoint(folder).model.image_proj.out_features == 24
    with pytest.raises(TypeError, match="^cannot save a Linear$"):
        save_checkpoint(nn.Linear(2, 2), tokenizer, tmp_path / "linear", {"task": "vqa", "labels": LABELS})


def test_a_two_image_model_and_a_labelless_model_load_as_they_were_saved(tokenizer, tiny_size, tmp_path):
    two = create_model("fusion", len(tokenizer), len(LABELS), num_images=2, **tiny_size)
    folder = save_checkpoint(two, tokenizer, tmp_path / "two", {"task": "nlvr", "labels": LABELS})
    assert load_checkpoint(folder).model.num_images == 2
    one = create_model("fusion", len(tokenizer), len(LABELS), **tiny_size)
    folder = save_checkpoint(one, tokenizer, tmp_path / "one", {"task": "vqa", "labels": LABELS})
    meta = json.loads((folder / "workbench.json").read_text())
    del meta["num_images"]  # a folder from before the field: one image
    (folder / "workbench.json").write_text(json.dumps(meta))
    assert load_checkpoint(folder).model.num_images == 1
    headless = create_model("fusion", len(tokenizer), 1, **tiny_size)  # no labels: a one-output placeholder head
    labelless = save_checkpoint(headless, tokenizer, tmp_path / "labelless", {"task": "pretraining", "labels": []})
    assert load_checkpoint(labelless).model.classifier[3].out_features == 1


def test_the_aspect_ratio_image_spec_is_written_as_hf_reads_it_and_read_back(fusion, tokenizer, tmp_path):
    spec = ViltImageSpec(shortest_edge=96, size_divisor=16, image_mean=(0.1, 0.2, 0.3), image_std=(0.4, 0.5, 0.6))
    folder = save_checkpoint(fusion, tokenizer, tmp_path / "ck", {"task": "vqa", "labels": LABELS}, image_spec=spec)
    written = json.loads((folder / "preprocessor_config.json").read_text())
    assert written["image_processor_type"] == "ViltImageProcessor" and written["size"] == {"shortest_edge": 96}
    assert "shortest_edge" not in written and written["size_divisor"] == 16
    assert list(written["image_mean"]) == [0.1, 0.2, 0.3] and list(written["image_std"]) == [0.4, 0.5, 0.6]
    assert load_checkpoint(folder).image_spec == spec
    assert image_normalisation(folder, (0.0,), (1.0,)) == ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6))


def test_image_normalisation_defaults_field_by_field(tmp_path):
    assert image_normalisation(tmp_path, (0.5,), (0.25,)) == ((0.5,), (0.25,))  # no preprocessor config
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_std": [0.2, 0.2, 0.2]}))
    assert image_normalisation(tmp_path, (0.5,), (0.25,)) == ((0.5,), (0.2, 0.2, 0.2))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.3]}))
    assert image_normalisation(tmp_path, (0.5,), (0.25,)) == ((0.3,), (0.25,))


# ---------------------------------------------------------------------------------------------- refusals, exactly


@pytest.fixture()
def good(fusion, tokenizer, tmp_path):
    return save_checkpoint(fusion, tokenizer, tmp_path / "good", {"task": "vqa", "labels": LABELS})


def test_each_refusal_names_the_folder_and_what_is_wrong(good, tmp_path):
    (good / "model.safetensors").rename(tmp_path / "weights")
    with pytest.raises(CheckpointError, match=rf"^{good} has no model.safetensors \(nor a sharded "
                       r"model.safetensors.index.json\); is this a checkpoint folder\?$"):  # fmt: skip
        load_checkpoint(good)
    (tmp_path / "weights").rename(good / "model.safetensors")
    (good / "config.json").rename(tmp_path / "config.json")
    with pytest.raises(CheckpointError, match=rf"^{good} has no config.json$"):
        load_checkpoint(good)
    (tmp_path / "config.json").rename(good / "config.json")
    meta = json.loads((good / "workbench.json").read_text())
    (good / "workbench.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "task"}))
    with pytest.raises(CheckpointError, match=rf"^{good / 'workbench.json'} lacks the field 'task'$"):
        load_checkpoint(good)
    (good / "workbench.json").write_text(json.dumps({**meta, "task": 3}))
    with pytest.raises(
        CheckpointError, match=rf"^{good / 'workbench.json'}: the field 'task' is '3', expected a string$"
    ):
        load_checkpoint(good)
    (good / "workbench.json").write_text(json.dumps({**meta, "image_size": 99}))
    with pytest.raises(CheckpointError, match=rf"^{good / 'workbench.json'} gives image_size 99; the model in "
                       r"config.json takes 64$"):  # fmt: skip
        load_checkpoint(good)
    (good / "workbench.json").unlink()
    config = json.loads((good / "config.json").read_text())
    (good / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    with pytest.raises(CheckpointError, match=rf"^{good} has neither workbench.json nor a ViLT config.json "
                       r"\(model_type: vilt\)$"):  # fmt: skip
        load_checkpoint(good)


def test_a_hf_folder_with_a_bad_field_names_its_config_json(good):
    config = json.loads((good / "config.json").read_text())
    (good / "workbench.json").unlink()
    nlvr = {**config, "model_type": "vilt", "num_images": 5, "architectures": ["ViltForImagesAndTextClassification"]}
    (good / "config.json").write_text(json.dumps(nlvr))
    with pytest.raises(
        CheckpointError, match=rf"^{good / 'config.json'}: the field 'num_images' is '5', expected 1 or 2$"
    ):
        load_checkpoint(good)


def test_weights_that_do_not_fit_name_the_first_five_keys_and_say_there_are_more(good, tokenizer, tiny_size, tmp_path):
    other = create_model("fusion", len(tokenizer), len(LABELS), **{**tiny_size, "num_layers": 1})
    save_checkpoint(other, tokenizer, tmp_path / "shallow", {"task": "vqa", "labels": LABELS})
    (good / "model.safetensors").write_bytes((tmp_path / "shallow" / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(good)
    message = str(info.value)
    assert message.startswith(f"{good / 'model.safetensors'} does not fit the fusion model in config.json: missing [")
    missing = message.split("missing [", 1)[1].split("]..., unexpected", 1)[0]
    assert missing.count("', '") == 4 and message.endswith("]..., unexpected []")  # 5 named, and more
    deep = create_model("fusion", len(tokenizer), len(LABELS), **{**tiny_size, "num_layers": 3})
    save_checkpoint(deep, tokenizer, tmp_path / "deep", {"task": "vqa", "labels": LABELS})
    (good / "model.safetensors").write_bytes((tmp_path / "deep" / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match=r"missing \[\], unexpected \[.*\]\.\.\.$"):
        load_checkpoint(good)


def test_a_tokenizer_that_cannot_load_is_named(good):
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        (good / name).unlink(missing_ok=True)
    (good / "tokenizer.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=rf"^could not load the tokenizer in {good}: "):
        read_tokenizer(good)
    with pytest.raises(CheckpointError, match=rf"^could not load the tokenizer in {good}: "):
        load_checkpoint(good)


def test_read_tokenizer_reads_the_folders_tokenizer_and_none_without_one(good, tmp_path):
    assert read_tokenizer(tmp_path) is None
    assert read_tokenizer(good).convert_tokens_to_ids("[CLS]") == load_checkpoint(good).tokenizer.cls_token_id


def test_the_training_vocabulary_file_is_read_as_a_set_of_words_or_refused_when_damaged(tmp_path):
    from workbench.models.io import TRAIN_VOCAB, read_train_vocab

    assert read_train_vocab(tmp_path) is None  # no file
    (tmp_path / TRAIN_VOCAB).write_text(json.dumps({"words": ["red", "circle", "red"], "n_texts": 2}))
    assert read_train_vocab(tmp_path) == frozenset({"red", "circle"})
    for words in ("red circle", ["red", 3], None):
        (tmp_path / TRAIN_VOCAB).write_text(json.dumps({"words": words}))
        with pytest.raises(CheckpointError, match=rf"^{tmp_path / TRAIN_VOCAB}: the field 'words' is not a list of "
                           r"strings; the file is damaged$"):  # fmt: skip
            read_train_vocab(tmp_path)


# ---------------------------------------------------------------------------------------------- more of the folder


def test_json_is_written_whole_shareable_and_replaces_the_old_file(tmp_path):
    from workbench.models.io import write_json_atomic

    target = tmp_path / "probe.json"
    target.write_text("old")
    write_json_atomic(target, {"a": [1, 2], "b": "x"})
    assert json.loads(target.read_text()) == {"a": [1, 2], "b": "x"}
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644 and sorted(p.name for p in tmp_path.iterdir()) == [
        "probe.json"
    ]


def test_the_weights_fingerprint_is_the_weights_files_sha256(good, tmp_path):
    import hashlib

    from workbench.models.io import weights_fingerprint

    want = hashlib.sha256((good / "model.safetensors").read_bytes()).hexdigest()[:16]
    assert weights_fingerprint(good) == want and weights_fingerprint(tmp_path) is None


def test_a_two_image_dual_student_and_an_old_dual_folder_without_its_embedding_width(tokenizer, tiny_size, tmp_path):
    two = create_model("dual", len(tokenizer), len(LABELS), num_images=2, **tiny_size)
    assert (
        load_checkpoint(
            save_checkpoint(two, tokenizer, tmp_path / "two", {"task": "nlvr", "labels": LABELS})
        ).model.num_images
        == 2
    )
    old = create_model("dual", len(tokenizer), len(LABELS), embed_dim=128, **tiny_size)
    folder = save_checkpoint(old, tokenizer, tmp_path / "old", {"task": "vqa", "labels": LABELS})
    config = json.loads((folder / "config.json").read_text())
    del config["embed_dim"]  # written before the field existed: 128, the width every dual student had then
    (folder / "config.json").write_text(json.dumps(config))
    assert load_checkpoint(folder).model.image_proj.out_features == 128


def test_more_refusals_name_the_field_the_value_and_what_was_expected(good):
    meta = json.loads((good / "workbench.json").read_text())
    where = good / "workbench.json"
    for field, value, message in (
        ("kind", 5, f"{where}: the field 'kind' is '5', expected a string"),
        ("labels", "yes", f"{where}: the field 'labels' is 'yes', expected a list of strings"),
        ("task", "t" * 100, f"{where}: the field 'task' is '{'t' * 80}', expected a string"),
    ):
        if field == "task":
            meta_bad = {**meta, "task": ["t" * 100]}  # not a string; shown cut to 80 characters
            message = f"{where}: the field 'task' is " + repr(str(["t" * 100])[:80]) + ", expected a string"
        else:
            meta_bad = {**meta, field: value}
        (good / "workbench.json").write_text(json.dumps(meta_bad))
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(good)
        assert str(info.value) == message
    (good / "workbench.json").write_text(json.dumps({**meta, "kind": "triple"}))
    with pytest.raises(CheckpointError, match=r"^unknown model kind 'triple' in workbench.json$"):
        load_checkpoint(good)
    (good / "workbench.json").write_text(json.dumps({**meta, "labels": LABELS + ["red"]}))
    with pytest.raises(
        CheckpointError, match=rf"^{good}: the classifier has 2 outputs but workbench.json lists 3 labels$"
    ):
        load_checkpoint(good)


def _resave(folder, state):
    from safetensors.torch import save_file

    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})


def _listed(message: str, which: str) -> tuple[int, bool]:
    """(how many keys the message lists after `which`, whether it says there are more)."""
    listed = re.search(rf"{which} \[(.*?)\](\.\.\.)?(, |$)", message)
    return (listed.group(1).count("', '") + 1 if listed.group(1) else 0), listed.group(2) is not None


@pytest.mark.parametrize("n", [5, 6])
def test_a_mismatch_names_up_to_five_keys_and_says_when_there_are_more(good, n):
    from safetensors.torch import load_file

    state = load_file(good / "model.safetensors")
    dropped = sorted(k for k in state if ".encoder.layer.1." in k)[:n]
    _resave(good, {k: v for k, v in state.items() if k not in dropped})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(good)
    assert _listed(str(info.value), "missing") == (5, n > 5) and _listed(str(info.value), "unexpected") == (0, False)
    _resave(good, {**state, **{f"extra.{i}": torch.zeros(1) for i in range(n)}})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(good)
    assert _listed(str(info.value), "missing") == (0, False) and _listed(str(info.value), "unexpected") == (5, n > 5)


def test_weights_of_the_wrong_shape_name_the_weights_file_and_torchs_reason(good, tokenizer, tiny_size, tmp_path):
    wide = create_model("fusion", len(tokenizer), len(LABELS), **{**tiny_size, "hidden_size": 48})
    save_checkpoint(wide, tokenizer, tmp_path / "wide", {"task": "vqa", "labels": LABELS})
    (good / "model.safetensors").write_bytes((tmp_path / "wide" / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match=rf"^{good / 'model.safetensors'} does not fit the fusion model in "
                       r"config.json: Error\(s\) in loading state_dict for FusionTeacher"):  # fmt: skip
        load_checkpoint(good)


def test_a_config_that_describes_no_model_names_the_config(good):
    config = json.loads((good / "config.json").read_text())
    (good / "config.json").write_text(json.dumps({**config, "hidden_size": "wide"}))
    with pytest.raises(CheckpointError, match=rf"^{good / 'config.json'} does not describe a fusion model \("):
        load_checkpoint(good)


def test_the_pickle_refusal_says_how_to_re_save(good, tmp_path):
    (good / "model.safetensors").unlink()
    (good / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(CheckpointError, match=r"\(they can run code\)\. Re-save the model with safetensors: "
                       r"save_pretrained\(folder\)\.$"):  # fmt: skip
        load_checkpoint(good)


def test_the_tokenizer_is_read_with_the_class_its_config_names(good, tokenizer):
    from transformers import BertTokenizer, PreTrainedTokenizerFast

    assert type(load_checkpoint(good).tokenizer) is BertTokenizer  # tokenizer_config.json: BertTokenizer
    config = json.loads((good / "tokenizer_config.json").read_text())
    (good / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "PreTrainedTokenizerFast"}))
    assert type(load_checkpoint(good).tokenizer) is PreTrainedTokenizerFast  # any other class: AutoTokenizer's


def test_any_one_of_the_tokenizer_files_makes_a_tokenizer_folder(good, tokenizer, tmp_path):
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    (good / "vocab.txt").write_text("\n".join(token for token, _ in vocab) + "\n")  # vocab.txt beside the others
    (good / "tokenizer.json").unlink()
    assert load_checkpoint(good).tokenizer.convert_tokens_to_ids("[CLS]") == tokenizer.cls_token_id  # vocab.txt
    assert read_tokenizer(good) is not None
    (good / "vocab.txt").unlink()  # only a broken tokenizer_config.json left: a tokenizer folder that cannot load
    (good / "tokenizer_config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="^could not load the tokenizer in"):
        load_checkpoint(good)
    with pytest.raises(CheckpointError, match="^could not load the tokenizer in"):
        read_tokenizer(good)


def test_saving_over_a_folder_with_a_stale_old_copy_leaves_only_the_new_folder(fusion, tokenizer, good):
    stale = good.with_name(f".{good.name}.old")
    stale.mkdir()
    (stale / "junk").write_text("from a crash")
    save_checkpoint(fusion, tokenizer, good, {"task": "vqa", "labels": LABELS})
    assert sorted(p.name for p in good.parent.iterdir()) == [good.name] and load_checkpoint(good).labels == LABELS


def test_the_image_pipeline_reads_images_with_the_folders_own_spec(fusion, tokenizer, tmp_path):
    from PIL import Image

    spec = ViltImageSpec(shortest_edge=96, size_divisor=16)
    folder = save_checkpoint(fusion, tokenizer, tmp_path / "ck", {"task": "vqa", "labels": LABELS}, image_spec=spec)
    image = Image.new("RGB", (128, 64), "white")
    pixels, mask = load_checkpoint(folder).image_pipeline([[image]])
    own, default = preprocess([image], spec)[0], preprocess([image], ViltImageSpec())[0]
    assert pixels.shape[-2:] == own.shape[-2:] != default.shape[-2:] and mask.shape[-2:] == own.shape[-2:]
