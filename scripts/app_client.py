"""Shared by scripts/latency.py and scripts/load_test.py: start `python app.py` (optional), ask it
through `gradio_client`, summarise timings. The sample images are those of the assets directory the app
serves: `assets` where a function takes it, else $WORKBENCH_ASSETS, else the repository's assets/."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def assets_dir(assets: str | Path | None = None) -> Path:
    """The assets directory the app serves (as `python app.py --assets` and $WORKBENCH_ASSETS choose it)."""
    return Path(assets or os.environ.get("WORKBENCH_ASSETS") or ROOT / "assets")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def queries(pair: str = "shapes VQA", assets: str | Path | None = None) -> list[tuple[str, str]]:
    """(image path, question) for every shipped sample of the pair's kind, each question."""
    samples = assets_dir(assets) / "samples"
    entries = json.loads((samples / "samples.json").read_text())
    source = "easy-vqa" if pair.startswith("easy") else "shapes"
    key = "hypotheses" if "entailment" in pair else "questions"
    return [(str(samples / e["file"]), q) for e in entries if e["source"] == source for q in e[key]]


def ask(client, pair: str, image: str, question: str, timeout: float = 60.0) -> tuple[float, float, float]:
    """One /ask through the API: (wall seconds, teacher ms, student ms as the app reports them)."""
    from gradio_client import handle_file

    start = time.perf_counter()
    job = client.submit(pair, handle_file(image), None, question, api_name="/ask")
    teacher, _, student, _ = job.result(timeout=timeout)
    wall = time.perf_counter() - start
    return wall, _model_ms(teacher), _model_ms(student)


def _model_ms(text: str) -> float:
    m = re.search(r"· ([0-9.]+) ms", text or "")
    return float(m.group(1)) if m else float("nan")


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile `q` (0-100) of `values`."""
    v = sorted(x for x in values if x == x)
    if not v:
        return float("nan")
    k = (len(v) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def summary(values_s: list[float]) -> dict:
    ms = [1000 * x for x in values_s]
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "mean_ms": sum(ms) / len(ms) if ms else float("nan"),
        "max_ms": max(ms) if ms else float("nan"),
    }


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process `pid` has used so far; NaN where /proc is missing. On a busy
    machine the wall-clock start-up stretches with the load; this does not."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    except (OSError, ValueError, IndexError):
        return float("nan")


class LaunchedApp:
    """`python app.py --port P [--assets DIR]` in a subprocess, stopped (by its own pid) on exit;
    `startup_s` is the time from starting the process to the first successful /ask, `startup_cpu_s` the
    CPU time the app used until then."""

    def __init__(
        self, port: int | None = None, pair: str = "shapes VQA", timeout: float = 120.0, assets: str | None = None
    ):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.pair, self.timeout, self.assets = pair, timeout, assets

    def __enter__(self) -> LaunchedApp:
        from gradio_client import Client

        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
        self.log = tempfile.TemporaryFile("w+")  # not a pipe: a full pipe would block the app
        start = time.perf_counter()
        command = [sys.executable, str(ROOT / "app.py"), "--port", str(self.port)]
        if self.assets:
            command += ["--assets", str(self.assets)]
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        image, question = queries(self.pair, self.assets)[0]
        while True:  # a cheap poll of the port (a gradio Client per attempt would take CPU from the app)
            self._check(start)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.05)
        while True:
            self._check(start)
            try:
                ask(Client(self.url, verbose=False), self.pair, image, question)
                break
            except Exception:  # noqa: BLE001 - listening, not serving yet
                time.sleep(0.1)
        self.startup_s = time.perf_counter() - start
        self.startup_cpu_s = cpu_seconds(self.proc.pid)
        return self

    def _check(self, start: float) -> None:
        if self.proc.poll() is not None:
            self.log.seek(0)
            raise RuntimeError(f"app.py exited with {self.proc.returncode}:\n{self.log.read()[-4000:]}")
        if time.perf_counter() - start > self.timeout:
            self.__exit__(None, None, None)
            raise TimeoutError(f"app.py did not answer within {self.timeout} s")

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
