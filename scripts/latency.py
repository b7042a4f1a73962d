"""Ask-query latency through the app's API: p50 / p95 over N sequential /ask calls.

    python scripts/latency.py --launch            # start `python app.py`, time start-up, then 100 queries
    python scripts/latency.py --url http://127.0.0.1:7860/ --n 100

Each query uploads a shipped sample image and asks one of its example questions (teacher and
student both answer; the student reuses its cached image features after the first round). Wall
time is measured in the client, end to end: upload, queue, both models, plots, response.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from app_client import LaunchedApp, ask, queries, summary


def run(url: str, n: int, pair: str) -> dict:
    from gradio_client import Client

    client = Client(url, verbose=False)
    work = queries(pair)
    ask(client, pair, *work[0])  # connection and first-call costs are not part of the figure
    walls, teacher, student = [], [], []
    for i in range(n):
        wall, t_ms, s_ms = ask(client, pair, *work[i % len(work)])
        walls.append(wall)
        teacher.append(t_ms / 1000)
        student.append(s_ms / 1000)
    return {"wall": summary(walls), "teacher_forward": summary(teacher), "student_forward": summary(student)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:7860/")
    p.add_argument("--launch", action="store_true", help="start `python app.py` on a free port and time its start-up")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--pair", default="shapes VQA")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    result = {"n": args.n, "pair": args.pair, "load_average_1min": round(os.getloadavg()[0], 2)}
    started = time.perf_counter()
    if args.launch:
        with LaunchedApp(pair=args.pair) as app:
            result["startup_s"] = round(app.startup_s, 2)
            result["startup_cpu_s"] = round(app.startup_cpu_s, 2)
            print(
                f"start-up (python app.py -> first successful /ask): {app.startup_s:.1f} s wall, "
                f"{app.startup_cpu_s:.1f} s of CPU (load average {os.getloadavg()[0]:.1f})"
            )
            result.update(run(app.url, args.n, args.pair))
    else:
        result.update(run(args.url, args.n, args.pair))
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    w = result["wall"]
    print(f"{args.n} /ask queries: p50 {w['p50_ms']:.0f} ms, p95 {w['p95_ms']:.0f} ms, max {w['max_ms']:.0f} ms (wall)")
    print(
        f"model forward (as reported): teacher p50 {result['teacher_forward']['p50_ms']:.1f} ms, "
        f"student p50 {result['student_forward']['p50_ms']:.1f} ms; load average {result['load_average_1min']}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
