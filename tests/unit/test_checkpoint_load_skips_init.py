"""Loading a checkpoint does not spend time on random initialisation its file overwrites (seconds at ViLT-B size),
yet a Hugging Face pre-training head, whose classifier starts fresh, is still initialised."""

import pytest
import torch
from transformers import ViltConfig, ViltForMaskedLM

from workbench.models import create_model
from workbench.models.io import load_checkpoint, save_checkpoint

LABELS = ["no", "yes"]


@pytest.fixture()
def init_calls(monkeypatch):
    """How often torch's initialisers run (Linear and Embedding call these in their constructors)."""
    calls = []
    for name in ("kaiming_uniform_", "normal_", "uniform_", "trunc_normal_"):
        real = getattr(torch.nn.init, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(torch.nn.init, name, counted)
    return calls


@pytest.mark.parametrize("kind", ["fusion", "dual"])
def test_loading_skips_the_random_init_and_gives_the_saved_weights(kind, tokenizer, tiny_size, tmp_path, init_calls):
    torch.manual_seed(0)
    model = create_model(kind, len(tokenizer), len(LABELS), **tiny_size).eval()
    assert init_calls  # the counter sees a constructor's initialisation
    folder = save_checkpoint(model, tokenizer, tmp_path / kind, {"task": "vqa", "labels": LABELS})
    init_calls.clear()
    loaded = load_checkpoint(folder).model
    assert init_calls == []
    saved, got = model.state_dict(), loaded.state_dict()
    assert saved.keys() == got.keys()
    for key, value in saved.items():
        assert torch.equal(value, got[key]), key
    # after loading, a new model initialises as before (the initialisers are restored)
    create_model(kind, len(tokenizer), len(LABELS), **tiny_size)
    assert init_calls


def test_a_pretraining_head_loaded_for_init_gets_an_initialised_classifier(tokenizer, tmp_path, init_calls):
    config = ViltConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=40, image_size=64, patch_size=16,
                        max_image_length=-1)  # fmt: skip
    ViltForMaskedLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    init_calls.clear()
    model = load_checkpoint(tmp_path, for_init=True).model
    assert init_calls  # the fresh classifier and pooler were initialised, not left as uninitialised memory
    for name, p in model.named_parameters():
        if name.startswith("classifier."):
            assert torch.isfinite(p).all(), name
