"""Shared fixtures. Tests live in three tiers, one folder each (and a marker of the same name):
`unit` (pure functions, tiny models, seconds: `make test-fast`), `integration` (tiny training runs, the CLI,
experiments) and `e2e` (notebooks, the browser, distributed runs, the shipped checkpoints). `make test` runs all."""

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
# pytest works from any directory: paths such as `assets/...` are the repository's
os.chdir(ROOT)
os.environ.setdefault("WORKBENCH_ASSETS", str(ROOT / "assets"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tokenizer():
    from workbench.data.vocab import build_tokenizer

    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_size():
    """A model size small enough for unit tests."""
    return {"hidden_size": 32, "num_layers": 2, "num_heads": 2}


@pytest.fixture(scope="session")
def real_fixtures(tmp_path_factory) -> dict[str, Path]:
    """Tiny VQAv2, SNLI-VE, NLVR2 and COCO-Karpathy trees in their releases' formats ({name: data root}),
    built once per session from shapes scenes (`workbench.data.fixtures.build_fixtures`; no download)."""
    from workbench.data.fixtures import build_fixtures

    return build_fixtures(tmp_path_factory.mktemp("real-data"))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: a second thread only adds contention. Modules opt in with `pytestmark`."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, tier))
