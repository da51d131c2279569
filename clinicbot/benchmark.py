"""`make benchmark`: triage time per message, cold start, REST latency (p50/p95 over sequential messages) and throughput.

Starts its own stack on spare ports with a fresh SQLite database, so it measures what `make run` runs.
Traffic goes only to localhost; every loop is bounded.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List

import httpx

from clinicbot.run import Ports, start_stack

MESSAGES = [
    "why does my back hurt after sex",
    "what is vaginismus",
    "how do I prevent back pain during sex",
    "do you offer virtual sessions",
    "hello",
    "is it normal that sex hurts after having a baby",
    "no numbness or tingling, just a sore back after sex",
    "what happens in pelvic floor therapy",
]


def percentile(values: List[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def triage_timing() -> List[str]:
    """Time of the red-flag triage alone per message, word list only and with the semantic detector.

    Over the development half of the blind triage set (patients' own wording, 3 to 120 words), in-process.
    """
    import yaml

    from clinicbot.offline_models import load_english
    from clinicbot.settings import PROJECT_ROOT
    from clinicbot.triage import RedFlagTriage

    texts = [item["text"] for item in yaml.safe_load(
        (PROJECT_ROOT / "tests" / "triage" / "blind" / "dev_messages.yml").read_text(encoding="utf-8"))]
    rows = []
    nlp = load_english()
    for label, semantic in (("word list only", False), ("word list + semantic detector", True)):
        triage = RedFlagTriage.load(nlp=nlp, semantic=semantic)
        triage.assess("warm up the graph")
        times = []
        for text in texts:
            start = time.perf_counter()
            triage.assess(text)
            times.append((time.perf_counter() - start) * 1000)
        rows.append(f"| triage per message, {label} ({len(texts)} messages): p50 / p95 | "
                    f"{statistics.median(times):.0f} ms / {percentile(times, 0.95):.0f} ms |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    triage_rows = triage_timing()

    with tempfile.TemporaryDirectory() as folder:
        env = {"DATABASE_URL": f"sqlite:///{Path(folder) / 'bench.db'}", "BOOKING_OUTBOX_DIR": str(Path(folder) / "outbox")}
        began = time.perf_counter()
        stack = start_stack(ports=Ports(rasa=5205, actions=5255, web=8280), env=env, log_dir=Path(folder), with_web=False)
        cold_start = time.perf_counter() - began
        url = f"{stack.rasa_url}/webhooks/rest/webhook"
        try:
            with httpx.Client(timeout=60) as client:
                client.post(url, json={"sender": "warm-up", "message": "hello"})
                latencies = []
                for i in range(args.messages):
                    sender = f"bench-{i // 8}"  # conversations of 8 turns, like a patient's
                    start = time.perf_counter()
                    reply = client.post(url, json={"sender": sender, "message": MESSAGES[i % len(MESSAGES)]})
                    latencies.append((time.perf_counter() - start) * 1000)
                    reply.raise_for_status()

            def one(i: int) -> None:
                with httpx.Client(timeout=60) as client:
                    client.post(url, json={"sender": f"load-{uuid.uuid4().hex[:6]}", "message": MESSAGES[i % len(MESSAGES)]}).raise_for_status()

            load_start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
                list(pool.map(one, range(args.messages)))
            throughput = args.messages / (time.perf_counter() - load_start)
        finally:
            stack.stop()

    print("| measure | value |")
    print("|---|---|")
    for row in triage_rows:
        print(row)
    print(f"| cold start, `rasa run` + action server to ready | {cold_start:.1f} s |")
    print(f"| REST latency p50 ({args.messages} sequential messages) | {statistics.median(latencies):.0f} ms |")
    print(f"| REST latency p95 | {percentile(latencies, 0.95):.0f} ms |")
    print(f"| REST latency max | {max(latencies):.0f} ms |")
    print(f"| throughput, {args.concurrency} concurrent clients, {args.messages} messages | {throughput:.1f} messages/s |")


if __name__ == "__main__":
    main()
