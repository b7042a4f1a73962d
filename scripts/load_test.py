"""Loopback load test of the app's API: C concurrent clients x Q /ask queries each, bounded in time.

    python scripts/load_test.py --launch          # start `python app.py`, 20 clients x 10 queries
    python scripts/load_test.py --url http://127.0.0.1:7860/ --clients 20 --queries 10 --deadline 120
    python scripts/load_test.py --launch --assets DIR   # the app on another assets directory

Every client is its own `gradio_client.Client` (its own session) in its own thread; each query
uploads a sample image and asks a question. Reports failures and p50 / p95 / max latency; exits 1
on any failure or if the whole run does not finish within --deadline seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

from app_client import LaunchedApp, ask, cpu_seconds, queries, summary


def client_run(
    url: str, pair: str, n: int, offset: int, stop: threading.Event, assets: str | None = None
) -> tuple[list[float], list[str]]:
    from gradio_client import Client

    work = queries(pair, assets)
    times, failures = [], []
    try:
        client = Client(url, verbose=False)
    except Exception as e:  # noqa: BLE001 - reported as failures
        return times, [f"connect: {e.__class__.__name__}: {e}"] * n
    for i in range(n):
        if stop.is_set():
            failures.append("deadline")
            continue
        try:
            wall, _, _ = ask(client, pair, *work[(offset + i) % len(work)])
            times.append(wall)
        except Exception as e:  # noqa: BLE001
            failures.append(f"{e.__class__.__name__}: {str(e)[:200]}")
    return times, failures


def run(url: str, clients: int, n: int, pair: str, deadline: float, assets: str | None = None) -> dict:
    stop = threading.Event()
    started = time.perf_counter()
    pool = ThreadPoolExecutor(max_workers=clients)
    futures = [pool.submit(client_run, url, pair, n, 7 * c, stop, assets) for c in range(clients)]
    done, pending = wait(futures, timeout=deadline)
    stop.set()
    pool.shutdown(wait=True, cancel_futures=True)
    elapsed = time.perf_counter() - started
    times, failures = [], []
    for f in futures:
        t, fl = f.result()
        times += t
        failures += fl
    return {
        "clients": clients,
        "queries_per_client": n,
        "ok": len(times),
        "failures": len(failures),
        "failure_examples": sorted(set(failures))[:5],
        "within_deadline": not pending,
        "elapsed_s": round(elapsed, 1),
        "throughput_per_s": round(len(times) / elapsed, 1),
        "latency": summary(times),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:7860/")
    p.add_argument("--launch", action="store_true", help="start `python app.py` on a free port first")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--queries", type=int, default=10)
    p.add_argument("--deadline", type=float, default=120.0, help="seconds the whole run may take")
    p.add_argument("--pair", default="shapes VQA")
    p.add_argument(
        "--assets",
        help="assets directory of the app (with --launch) and of the sample images "
        "(default: $WORKBENCH_ASSETS, else the repo's assets/)",
    )
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    load = round(os.getloadavg()[0], 2)
    if args.launch:
        with LaunchedApp(pair=args.pair, assets=args.assets) as app:
            cpu = cpu_seconds(app.proc.pid)
            result = run(app.url, args.clients, args.queries, args.pair, args.deadline, args.assets)
            cpu = cpu_seconds(app.proc.pid) - cpu
            result["app_cpu_ms_per_query"] = round(1000 * cpu / max(result["ok"], 1), 1)
    else:
        result = run(args.url, args.clients, args.queries, args.pair, args.deadline, args.assets)
    result["load_average_1min"] = load
    lat = result["latency"]
    print(
        f"{args.clients} clients x {args.queries} queries: {result['ok']} ok, {result['failures']} failed, "
        f"{result['elapsed_s']} s ({result['throughput_per_s']} queries/s); latency p50 {lat['p50_ms']:.0f} ms, "
        f"p95 {lat['p95_ms']:.0f} ms, max {lat['max_ms']:.0f} ms; load average at start {load}"
    )
    if "app_cpu_ms_per_query" in result:
        print(f"the app used {result['app_cpu_ms_per_query']} ms of CPU per query")
    for f in result["failure_examples"]:
        print("  failure:", f)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0 if result["failures"] == 0 and result["within_deadline"] else 1


if __name__ == "__main__":
    sys.exit(main())
