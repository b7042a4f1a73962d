"""Shared fixtures. Tests live in three tiers, one folder each (and a marker of the same name):
`unit` (pure functions, tiny models, seconds: `make test-fast`), `integration` (tiny training runs, the CLI,
experiments) and `e2e` (notebooks, the browser, distributed runs, the shipped checkpoints). `make test` runs all."""

import os
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import settings

ROOT = Path(__file__).resolve().parent.parent
# pytest works from any directory: paths such as `assets/...` are the repository's
os.chdir(ROOT)
os.environ.setdefault("WORKBENCH_ASSETS", str(ROOT / "assets"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# Hypothesis draws the same examples on every run ("workbench": derandomised, no example database on disk), so a
# red run is red again on rerun and CI cannot fail on a draw it never made before. A fuzzing campaign opts in
# to fresh random draws: HYPOTHESIS_PROFILE=explore (docs/testing.md).
settings.register_profile("workbench", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("explore", derandomize=False, database=None, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "workbench"))

# per-test time limits (pytest-timeout; the default, `timeout` in pyproject.toml, is 600 s): a hang fails with
# the test's name instead of stalling the run. Tests known to take longer get more, by file.
LONG_TIMEOUTS = {"test_notebooks.py": 1800, "test_browser.py": 900, "test_distributed.py": 900}


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
        path = Path(str(item.fspath))
        tier = path.parent.name
        if tier in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, tier))
        if path.name in LONG_TIMEOUTS and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(LONG_TIMEOUTS[path.name]))


# ---------------------------------------------------------------------------------------------- ports

# what a server or launcher says when the port it was given was taken in the meantime
PORT_TAKEN = ("address already in use", "eaddrinuse", "errno 98", "cannot find empty port")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now: bound to port 0, read back, released. Another process can take
    it before the caller binds it, so start servers with `start_on_free_port` / `run_on_free_port`, which
    retry on such a collision."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_taken(text: str) -> bool:
    return any(words in text.lower() for words in PORT_TAKEN)


def start_on_free_port(start: Callable[[int], object], attempts: int = 5) -> tuple[object, int]:
    """`start(port)` on a free port; when it raises because the port was taken meanwhile (an OSError saying
    so), again on another one. Returns (what `start` returned, the port). Other errors are raised at once."""
    for attempt in range(attempts):
        port = free_port()
        try:
            return start(port), port
        except OSError as e:
            if attempt == attempts - 1 or not _port_taken(str(e)):
                raise
    raise AssertionError("unreachable")


def run_on_free_port(command: Callable[[int], list[str]], attempts: int = 3, **kwargs) -> subprocess.CompletedProcess:
    """`subprocess.run(command(port), capture_output=True, text=True, **kwargs)` on a free port, run again on
    another port when it failed because the port was taken meanwhile (its stderr says so)."""
    for attempt in range(attempts):
        proc = subprocess.run(command(free_port()), capture_output=True, text=True, **kwargs)
        if proc.returncode == 0 or attempt == attempts - 1 or not _port_taken(proc.stderr or ""):
            return proc
    raise AssertionError("unreachable")


@pytest.fixture(name="free_port")
def free_port_fixture() -> int:
    """A port free when the test starts (see `free_port`)."""
    return free_port()


@pytest.fixture(name="start_on_free_port")
def start_on_free_port_fixture():
    """`start_on_free_port(start)`: the server-starting helper, as a fixture (tests do not import conftest)."""
    return start_on_free_port


@pytest.fixture(name="run_on_free_port")
def run_on_free_port_fixture():
    """`run_on_free_port(command)`: the launcher-running helper, as a fixture."""
    return run_on_free_port
