#!/usr/bin/env python3
"""Benchmark (not a test) of `woolly-run serve`'s continuous batching.

    python3 woolly-run/tests/serve_bench.py --bin target/release/woolly-run \
        --model ~/.cache/woolly/models/SmolLM2-135M-Instruct.Q4_1.gguf [--threads 2] \
        [--tokens 64] [--requests 64] [--rounds 3] [--client raw|openai] [--loads both|eight]

Measures, over loopback, aggregate generated tokens/s
with 1 stream and with 8 concurrent streams (each request generates exactly --tokens
tokens: ignore_eos), and the p50/p99 time to first token and time between tokens under
the 8-stream load. The two loads alternate for --rounds rounds on one server, so drift
of the machine falls on both; the figures are each load's median round, the ratio that
of the medians. Prints one JSON object at the end. `--loads eight` runs only the 8-stream
load, each round's figure printed, for comparing two builds on it (alternate the builds).

The client shares the machine's cores with the server. `--client raw` (the default) is
a lean asyncio client, one thread, that reads the server-sent events off the socket and
parses each chunk with `json.loads`; `--client openai` uses the official `openai` client,
whose per-chunk cost (httpx, pydantic, a thread per stream) takes CPU time the server
would otherwise use: on a 2-core machine it lowers the 8-stream figure more than the
single-stream one.
"""

import asyncio

import argparse
import concurrent.futures
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from openai_client import KEY, Server  # noqa: E402


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def one(c, model, i, n):
    t0 = time.perf_counter()
    ttft, last, gaps, tokens = None, None, [], 0
    stream = c.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": f"Write a long story about a cat named {i}."}],
        max_tokens=n,
        seed=i,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    for chunk in stream:
        now = time.perf_counter()
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
        for ch in chunk.choices:
            if ch.delta.content:
                if ttft is None:
                    ttft = now - t0
                else:
                    gaps.append(now - last)
                last = now
    return ttft, gaps, tokens


async def one_raw(host, port, model, i, n):
    """(ttft, gaps, completion tokens) of one streamed chat request, over a raw socket."""
    body = json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": f"Write a long story about a cat named {i}."}],
            "max_tokens": n,
            "seed": i,
            "stream": True,
            "stream_options": {"include_usage": True},
            "ignore_eos": True,
        }
    ).encode()
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        + body
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1]
    if status != b"200":
        raise RuntimeError(f"status {status.decode()}: {head.decode()}")
    chunked = b"transfer-encoding: chunked" in head.lower()
    ttft, last, gaps, tokens, buf, done = None, None, [], 0, b"", False
    while not done:
        if chunked:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            buf += data[:-2]
        else:
            data = await reader.read(65536)
            if not data:
                break
            buf += data
        now = time.perf_counter()
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            if not event.startswith(b"data: "):
                continue
            payload = event[6:]
            if payload == b"[DONE]":
                done = True
                break
            chunk = json.loads(payload)
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for ch in chunk["choices"]:
                if ch["delta"].get("content"):
                    if ttft is None:
                        ttft = now - t0
                    else:
                        gaps.append(now - last)
                    last = now
    writer.close()
    return ttft, gaps, tokens


async def run_raw_async(s, model, streams, requests, n):
    todo = iter(range(requests))
    res = []

    async def worker():
        for i in todo:
            res.append(await one_raw(s.host, int(s.port), model, i, n))

    await asyncio.gather(*(worker() for _ in range(streams)))
    return res


def run(s, streams, requests, n, client):
    c = s.client()
    model = c.models.list().data[0].id
    t0 = time.perf_counter()
    if client == "raw":
        res = asyncio.run(run_raw_async(s, model, streams, requests, n))
    else:
        with concurrent.futures.ThreadPoolExecutor(streams) as pool:
            res = list(pool.map(lambda i: one(c, model, i, n), range(requests)))
    wall = time.perf_counter() - t0
    tokens = sum(r[2] for r in res)
    ttft = [r[0] for r in res if r[0] is not None]
    gaps = [g for r in res for g in r[1]]
    return {
        "streams": streams,
        "requests": requests,
        "tokens": tokens,
        "wall_s": round(wall, 2),
        "tok_per_s": round(tokens / wall, 2),
        "ttft_p50_ms": round(pct(ttft, 50) * 1e3, 1),
        "ttft_p99_ms": round(pct(ttft, 99) * 1e3, 1),
        "itl_p50_ms": round(pct(gaps, 50) * 1e3, 1),
        "itl_p99_ms": round(pct(gaps, 99) * 1e3, 1),
        "itl_mean_ms": round(statistics.mean(gaps) * 1e3, 1),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", default="2")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--requests", type=int, default=64, help="requests in each 8-stream round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of (1 stream, 8 streams)")
    ap.add_argument("--client", choices=("raw", "openai"), default="raw")
    ap.add_argument(
        "--loads",
        choices=("both", "eight"),
        default="both",
        help="eight: only the 8-stream load, to compare two builds on it alone",
    )
    a = ap.parse_args()
    s = Server(a.bin, a.model, ["--ctx", "1024", "--parallel", "8", "--threads", a.threads])
    singles, eights = [], []
    try:
        run(s, 1, 1, 8, a.client)  # warm-up
        for _ in range(a.rounds):
            if a.loads == "both":
                singles.append(run(s, 1, 8, a.tokens, a.client))
            eights.append(run(s, 8, a.requests, a.tokens, a.client))
    finally:
        s.stop()

    if not singles:
        out = {"client": a.client, "eight_rounds_tok_per_s": [r["tok_per_s"] for r in eights]}
        for r in eights:
            print("eight", r, file=sys.stderr)
        print(json.dumps(out))
        return

    def median(rounds):
        return sorted(rounds, key=lambda r: r["tok_per_s"])[len(rounds) // 2]

    single, eight = median(singles), median(eights)
    out = {
        "client": a.client,
        "single": single,
        "eight": eight,
        "ratio": round(eight["tok_per_s"] / single["tok_per_s"], 2),
        "single_rounds_tok_per_s": [r["tok_per_s"] for r in singles],
        "eight_rounds_tok_per_s": [r["tok_per_s"] for r in eights],
    }
    for k in ("single", "eight"):
        print(k, out[k], file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
