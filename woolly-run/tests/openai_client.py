#!/usr/bin/env python3
"""`woolly-run serve` as a user sees it: the official `openai` Python client against the
live server on loopback.

    python3 woolly-run/tests/openai_client.py --bin target/.../woolly-run --model M.gguf [--load]

Starts the server itself (a free loopback port, an API key), runs every check, stops it
with SIGTERM (it must exit 0) and ends with a line `N passed, N failed`. With --load it
also runs the bounded load test (8 concurrent streaming clients, 200 requests in all).
Run by the Rust test `serve_openai_client.rs`, so `cargo test` (and `cargo xtask ci`)
covers it.
"""

import argparse
import concurrent.futures
import http.client
import json
import signal
import subprocess
import sys
import threading
import time
import traceback

import openai

KEY = "test-key-123"
RESULTS = []


class Server:
    """A `woolly-run serve` process on a free loopback port."""

    def __init__(self, binary, model, extra=()):
        self.proc = subprocess.Popen(
            [binary, "serve", "-m", model, "--port", "0", "--api-key", KEY, *extra],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines = []
        self.addr = None
        deadline = time.time() + 60
        while self.addr is None:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError("the server exited before listening: " + "".join(self.lines))
            self.lines.append(line)
            if "listening on http://" in line:
                self.addr = line.split("listening on http://")[1].split()[0]
            if time.time() > deadline:
                raise RuntimeError("no 'listening on' notice within 60 s")
        threading.Thread(target=self._drain, daemon=True).start()
        self.host, self.port = self.addr.rsplit(":", 1)
        while self.raw("GET", "/health")[0] != 200:
            if time.time() > deadline + 60:
                raise RuntimeError("the server never became ready")
            time.sleep(0.05)

    def _drain(self):
        for line in self.proc.stderr:
            self.lines.append(line)

    def raw(self, method, path, body=None, headers=None):
        """(status, body text) of one request over a fresh connection."""
        conn = http.client.HTTPConnection(self.host, int(self.port), timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    def metric(self, name):
        _, text = self.raw("GET", "/metrics")
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"metric {name} missing")

    def client(self, key=KEY):
        return openai.OpenAI(base_url=f"http://{self.addr}/v1", api_key=key, max_retries=0, timeout=120)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def check(name):
    def wrap(fn):
        def run(*a):
            t0 = time.time()
            try:
                fn(*a)
                RESULTS.append((name, True))
                print(f"ok    {name} ({time.time() - t0:.1f} s)", flush=True)
            except Exception:
                RESULTS.append((name, False))
                print(f"FAIL  {name}\n{traceback.format_exc()}", flush=True)

        return run

    return wrap


def model_id(server):
    return server.client().models.list().data[0].id


@check("completion")
def t_completion(s):
    c = s.client()
    r = c.completions.create(model=model_id(s), prompt="Once upon a time", max_tokens=8, seed=1)
    assert isinstance(r.choices[0].text, str)
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 8 and r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


@check("chat")
def t_chat(s):
    r = s.client().chat.completions.create(
        model=model_id(s),
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}],
        max_tokens=8,
        seed=2,
        logprobs=True,
        top_logprobs=3,
    )
    m = r.choices[0].message
    assert m.role == "assistant" and isinstance(m.content, str)
    lp = r.choices[0].logprobs.content
    assert len(lp) == r.usage.completion_tokens and len(lp[0].top_logprobs) == 3


@check("chat streaming with include_usage equals the whole response")
def t_stream(s):
    c = s.client()
    args = dict(model=model_id(s), messages=[{"role": "user", "content": "Tell me a story"}], max_tokens=12, seed=3)
    text, usage, finish = "", None, None
    for chunk in c.chat.completions.create(stream=True, stream_options={"include_usage": True}, **args):
        if chunk.usage is not None:
            usage = chunk.usage
        for ch in chunk.choices:
            text += ch.delta.content or ""
            finish = ch.finish_reason or finish
    whole = c.chat.completions.create(**args)
    assert finish in ("stop", "length")
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens
    assert text == whole.choices[0].message.content, (text, whole.choices[0].message.content)


@check("completion streaming")
def t_stream_completion(s):
    pieces = list(s.client().completions.create(model=model_id(s), prompt="1, 2, 3,", max_tokens=6, stream=True, seed=4))
    assert pieces[-1].choices[0].finish_reason in ("stop", "length")


@check("seed reproducibility, and the same text as woolly-run generate")
def t_seed(s, binary, model):
    c = s.client()
    prompt = "The little robot"
    args = dict(model=model_id(s), prompt=prompt, max_tokens=16, seed=1234, temperature=0.7)
    a = c.completions.create(**args).choices[0].text
    b = c.completions.create(**args).choices[0].text
    assert a == b, (a, b)
    out = subprocess.run(
        [binary, "generate", "-m", model, "-t", "2", "-p", prompt, "--seed", "1234", "--temp", "0.7", "-n", "16", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    g = json.loads(out.stdout)["text"]
    assert a == g, (a, g)


@check("a wrong key is refused with 401")
def t_wrong_key(s):
    try:
        s.client(key="wrong").chat.completions.create(model=model_id(s), messages=[{"role": "user", "content": "hi"}])
    except openai.AuthenticationError as e:
        assert e.status_code == 401
        return
    raise AssertionError("no error")


@check("an oversized prompt is refused with 400")
def t_oversized(s):
    try:
        s.client().completions.create(model=model_id(s), prompt="word " * 5000, max_tokens=4)
    except openai.BadRequestError as e:
        assert e.status_code == 400
        assert e.code == "context_length_exceeded", e.body
        return
    raise AssertionError("no error")


@check("unsupported fields (n, tools) and an unknown model are refused by name")
def t_unsupported(s):
    c = s.client()
    msgs = [{"role": "user", "content": "hi"}]
    for kwargs, field in [
        (dict(n=2), "n"),
        (dict(tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}]), "tools"),
    ]:
        try:
            c.chat.completions.create(model=model_id(s), messages=msgs, **kwargs)
            raise AssertionError(f"{field} accepted")
        except openai.BadRequestError as e:
            assert e.body["param"] == field, e.body
    try:
        c.chat.completions.create(model="gpt-nothing", messages=msgs)
        raise AssertionError("unknown model accepted")
    except openai.NotFoundError as e:
        assert e.status_code == 404


@check("malformed JSON gets 400 in OpenAI's error shape")
def t_malformed(s):
    status, body = s.raw(
        "POST", "/v1/chat/completions", body="{\"messages\": [", headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    )
    assert status == 400, (status, body)
    err = json.loads(body)["error"]
    assert err["message"] and err["type"] and err["code"]


@check("a body over the limit gets 413")
def t_too_large(s):
    body = json.dumps({"prompt": "x" * (2 << 20)})
    status, text = s.raw("POST", "/v1/completions", body=body, headers={"Authorization": f"Bearer {KEY}"})
    assert status == 413, (status, text)


@check("a client that disconnects mid-stream: the server stays healthy, the slot comes back")
def t_disconnect(s):
    c = s.client()
    stream = c.completions.create(
        model=model_id(s), prompt="Count:", max_tokens=3000, stream=True, extra_body={"ignore_eos": True}
    )
    got = 0
    for _ in stream:
        got += 1
        if got == 3:
            break
    assert s.metric("woolly_slots_busy") >= 1
    stream.close()
    deadline = time.time() + 30
    while s.metric("woolly_slots_busy") != 0:
        assert time.time() < deadline, "the slot never came back"
        time.sleep(0.05)
    assert s.metric("woolly_requests_cancelled_total") >= 1
    assert s.raw("GET", "/health")[0] == 200
    r = c.completions.create(model=model_id(s), prompt="Hi", max_tokens=2)
    assert r.usage.completion_tokens <= 2


def stream_one(c, model, i, max_tokens):
    """One streaming chat request; returns (ttft, gaps between tokens, tokens, ok)."""
    t0 = time.perf_counter()
    ttft, last, gaps, text, finish, usage = None, None, [], "", None, None
    stream = c.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": f"Request {i}: write about the number {i}."}],
        max_tokens=max_tokens,
        seed=i,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        now = time.perf_counter()
        if chunk.usage is not None:
            usage = chunk.usage
        for ch in chunk.choices:
            if ch.delta.content:
                if ttft is None:
                    ttft = now - t0
                else:
                    gaps.append(now - last)
                last = now
                text += ch.delta.content
            finish = ch.finish_reason or finish
    ok = finish in ("stop", "length") and usage is not None and usage.completion_tokens <= max_tokens
    ok = ok and (finish != "length" or usage.completion_tokens == max_tokens)
    return ttft, gaps, usage.completion_tokens if usage else 0, ok


@check("load: 8 concurrent streaming clients, 200 requests, all complete and well formed")
def t_load(s):
    c = s.client()
    model = model_id(s)
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: stream_one(c, model, i, 16), range(200)))
    bad = [i for i, r in enumerate(results) if not r[3]]
    assert not bad, f"malformed or incomplete responses: {bad}"
    tokens = sum(r[2] for r in results)
    print(f"      200 requests, {tokens} tokens in {time.time() - t0:.1f} s", flush=True)
    assert s.raw("GET", "/health")[0] == 200
    deadline = time.time() + 10
    while s.metric("woolly_slots_busy") != 0:
        assert time.time() < deadline
        time.sleep(0.05)
    assert s.metric("woolly_queue_depth") == 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--load", action="store_true", help="also run the load test")
    a = ap.parse_args()
    s = Server(a.bin, a.model, ["--ctx", "512", "--parallel", "8", "--threads", "2", "--max-body", str(1 << 20)])
    try:
        t_completion(s)
        t_chat(s)
        t_stream(s)
        t_stream_completion(s)
        t_seed(s, a.bin, a.model)
        t_wrong_key(s)
        t_oversized(s)
        t_unsupported(s)
        t_malformed(s)
        t_too_large(s)
        t_disconnect(s)
        if a.load:
            t_load(s)
    finally:
        code = s.stop()
    RESULTS.append(("SIGTERM exits 0", code == 0))
    print(("ok    " if code == 0 else "FAIL  ") + f"SIGTERM exits 0 (exit code {code})")
    passed = sum(1 for _, ok in RESULTS if ok)
    failed = len(RESULTS) - passed
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
