"""The workbench app (Gradio): teacher and student side by side, live. A face over the library: every
computation is a library call (`workbench.api`, `workbench.explain`, `workbench.bench`, `workbench.evaluate`,
`workbench.retrieval`, `workbench.viz`); the library never imports this package.

One module per job:

  loading     the shipped assets: task / model pairs, the Retrieval tab's models, warm-up
  state       what the tabs share, explicit: the loaded pairs and their analysis copies, the test-split
              cache, the texts the app suggested, the examples about a scene, the downloads' folder; the
              Retrieval tab's models and index
  ui          shared UI pieces: the image input, checkpoint labels, what the models could not read, turning
              library errors into messages, an endpoint wired for API clients and for the page (`endpoint`)
  exports     the downloads: answers (JSON), maps (NPZ, JSON, PNG with kaleido), speed (CSV)
  glossary    the page's short glossary
  ask, attention, speed, errors, retrieval
              one module per tab: its layout, its callbacks and its events (`build(...)`)
  blocks      `build_app`: the page, the message area, the glossary, the tabs in order, the pair selector
              that resets them all
  launch      `shipped_demo` (the app on the shipped checkpoints) and `serve`

Every event has an `api_name`, so each function can be called with `gradio_client`; the public
endpoints are /ask, /random_example, /load_sample, /pick_example, /set_pair, /explain, /speed,
/errors, /open_example and /retrieve, on hidden triggers: through the API an error is raised. The page's
own events (private) run the same functions but show an error in the page's one message area and clear the
result it replaces, so no control is covered by Gradio's error badge and no stale answer stays beside it.
Events that only repeat one of them for the UI (e.g. Ask again after a random scene) are private too.
docs/app.md describes the page's rules.

Models are loaded once at start-up. Three sets of weights, so that nothing one event does to a model
(Captum's and the q/k captures' forward hooks, the benchmark's attention switch) can touch another
event's forward pass: the serving copies answer Ask (thread-safe: plain forward passes); the analysis
copies serve Attention and Errors, one event at a time; the benchmark copies its own at each run.
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no telemetry calls
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# a server has no display: saying so spares every Gradio event's backend check an import of pyplot
# (about a second, paid by the first request)
os.environ.setdefault("MPLBACKEND", "agg")

from workbench.app.blocks import build_app  # noqa: E402
from workbench.app.errors import ERROR_HEADERS, ERRORS_N  # noqa: E402
from workbench.app.launch import preload, serve, shipped_demo, start_preload  # noqa: E402
from workbench.app.loading import (  # noqa: E402
    RETRIEVAL_FUSION,
    RETRIEVAL_GALLERY,
    RETRIEVAL_STUDENT,
    TASK_NAMES,
    Pair,
    RetrievalModels,
    assets_dir,
    load_pairs,
    load_retrieval,
    retrieval_gallery_name,
    shipped_pairs,
    warm_up,
)
from workbench.app.speed import BENCH_SETTINGS  # noqa: E402
from workbench.app.state import AppState, RetrievalState  # noqa: E402

__all__ = [
    "BENCH_SETTINGS",
    "ERRORS_N",
    "ERROR_HEADERS",
    "RETRIEVAL_FUSION",
    "RETRIEVAL_GALLERY",
    "RETRIEVAL_STUDENT",
    "TASK_NAMES",
    "AppState",
    "Pair",
    "RetrievalModels",
    "RetrievalState",
    "assets_dir",
    "build_app",
    "load_pairs",
    "load_retrieval",
    "preload",
    "retrieval_gallery_name",
    "serve",
    "shipped_demo",
    "shipped_pairs",
    "start_preload",
    "warm_up",
]
