"""The red-team probes of issue 14, each as a test: compute caps that cannot be bypassed, load
shedding, cancellation on disconnect, backend timeouts and deadlines, keys, bad input.

Servers are real (uvicorn on loopback, the tiny transformers models behind ttscale's own policy
and PRM servers). Where a test needs a search that is slow enough to abandon, the real in-process
policy is wrapped in ``Slow`` (a fixed delay per call, and a log of when each call started); where
it needs a backend that stalls, ``stalling_backend`` is a real HTTP server that answers late.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

import httpx
import pytest
from fastapi import FastAPI, Request
from serve_helpers import hf_policy, policy_server, prm_server, token_prm

from ttscale.engines.openai import OpenAIGenerator
from ttscale.serve.common import ServerThread, server_keys
from ttscale.serve.guard import ComputeLimitExceeded, GuardedGenerator, RequestGuard
from ttscale.serve.proxy import ProxyConfig, Serialized, create_proxy_app
from ttscale.serve.tasks import ProxyTask
from ttscale.verifiers.http_prm import HTTPPRM

KEY = "sk-abuse"
QUESTION = "Q:12a+3b*2"


def config(**kw) -> ProxyConfig:
    base = dict(api_keys=[KEY], default_strategy="majority", default_budget=2, max_budget=8,
                max_step_tokens=8, default_max_tokens=24, max_tokens_cap=64, max_rounds=3,
                max_prompt_chars=200, max_request_bytes=4096)
    base.update(kw)
    return ProxyConfig(**base)


def chat(**kw) -> dict:
    return {"model": "ttscale", "messages": [{"role": "user", "content": QUESTION}], **kw}


def post(url: str, body: dict | bytes, path: str = "/v1/chat/completions",
         timeout: float = 60.0, key: str | None = KEY) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if isinstance(body, dict):
        return httpx.post(url + path, json=body, headers=headers, timeout=timeout)
    return httpx.post(url + path, content=body, headers=headers, timeout=timeout)


class Slow:
    """The real in-process policy, ``delay_s`` slower per call; records when each call began."""

    def __init__(self, inner, delay_s: float) -> None:
        self.inner, self.delay_s = inner, delay_s
        self.calls: list[float] = []
        self.num_parameters = inner.num_parameters

    def generate(self, prompts, params):
        self.calls.append(time.monotonic())
        time.sleep(self.delay_s)
        return self.inner.generate(prompts, params)


@pytest.fixture(scope="module")
def upstream():
    with policy_server(hf_policy()) as pol, prm_server(token_prm()) as prm:
        yield pol, prm


@pytest.fixture(scope="module")
def proxy(upstream):
    pol, prm = upstream
    gen = OpenAIGenerator(pol.url + "/v1")
    scorer = HTTPPRM.for_kind(prm.url, "token-classification", "\n")
    app = create_proxy_app(gen, scorer, ProxyTask("testbed"),
                           config(default_strategy="weighted-best-of-n",
                                  max_request_bytes=2**20))
    with ServerThread(app) as server:
        yield server
    gen.close()
    scorer.close()


# ---- 1. compute caps -------------------------------------------------------------------------


def test_a_number_sent_as_a_string_cannot_bypass_the_option_cap(upstream, tmp_path):
    from ttscale.strategies.policy_table import save_table, validate_table

    pol, prm = upstream
    table = validate_table({
        "schema_version": 1, "task": "testbed", "bins": {"kind": "predicted",
                                                          "thresholds": [0.3, 0.7]},
        "probe": {"k": 2, "reuse": True}, "budgets": [2],
        "policy": {b: {"2": {"strategy": "majority", "options": {}}} for b in ("1", "2", "3")}},
        "test")
    path = str(save_table(table, tmp_path / "policy.json"))
    gen = OpenAIGenerator(pol.url + "/v1")
    app = create_proxy_app(gen, None, ProxyTask("testbed"),
                           config(default_budget=2, policy_table=path))
    with ServerThread(app) as server:
        before = httpx.get(pol.url + "/health").json()["completions"]
        for value in ("20000", " 20000", "2e4", "٢٠٠٠٠"):
            r = post(server.url, chat(ttscale={"options": {"probe_k": value}}))
            assert r.status_code == 400, r.text
            assert "probe_k" in r.json()["error"]["message"]
        assert httpx.get(pol.url + "/health").json()["completions"] == before
        big = post(server.url, chat(ttscale={"options": {"probe_k": 20000}}))
        assert big.status_code == 400 and "cap" in big.json()["error"]["message"]
    gen.close()


def test_the_guard_bounds_what_any_strategy_spends():
    """Whatever a strategy asks for, the guard refuses the call that would pass the cap."""
    inner = Serialized(hf_policy())
    guard = RequestGuard(max_samples=5, max_tokens=10**6)
    gen = GuardedGenerator(inner, guard)
    from ttscale.engines.base import SamplingParams

    gen.generate(["Q:1+1\n"], SamplingParams(n=4, max_tokens=4, seed=1))
    with pytest.raises(ComputeLimitExceeded, match="5 engine samples"):
        gen.generate(["Q:1+1\n"], SamplingParams(n=2, max_tokens=4, seed=1))
    assert guard.samples == 4  # the refused call was never made


def test_a_request_past_the_compute_allowance_is_stopped_with_a_400(upstream):
    pol, _ = upstream
    gen = OpenAIGenerator(pol.url + "/v1")
    app = create_proxy_app(gen, None, ProxyTask("testbed"), config(max_request_samples=3))
    with ServerThread(app) as server:
        before = httpx.get(pol.url + "/health").json()["completions"]
        r = post(server.url, chat(model="ttscale@majority:4"))
        ok = post(server.url, chat(model="ttscale@majority:3"))
        spent = httpx.get(pol.url + "/health").json()["completions"] - before
    assert r.status_code == 400 and r.json()["error"]["code"] == "compute_limit_exceeded"
    assert ok.status_code == 200 and spent == 3  # the refused request spent nothing
    gen.close()


# ---- 2. load shedding and cancellation -------------------------------------------------------


def test_a_burst_past_slots_and_queue_gets_429_with_retry_after():
    slow = Slow(Serialized(hf_policy()), 0.3)
    app = create_proxy_app(slow, None, ProxyTask("testbed"),
                           config(max_concurrent=1, max_queue=1, default_budget=1))
    results: list[httpx.Response] = []
    with ServerThread(app) as server:
        threads = [threading.Thread(target=lambda: results.append(post(server.url, chat())))
                   for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = httpx.get(server.url + "/health").json()
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) >= 2 and set(codes) <= {200, 429}, codes
    busy = [r for r in results if r.status_code == 429]
    assert busy and all(int(r.headers["Retry-After"]) >= 1 for r in busy)
    assert busy[0].json()["error"]["type"] == "rate_limit_error"
    # never more requests held than slots + queue (a request whose slot just freed may still
    # count as waiting for a moment, so the bound is on both together)
    assert stats["max_admitted"] <= 2 and stats["rejected_busy"] == len(busy)


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_disconnects_cancels_its_search(stream):
    slow = Slow(Serialized(hf_policy()), 1.5)
    # beam search over 2-token steps: one engine call per round, up to 32 rounds
    app = create_proxy_app(slow, Serialized(token_prm()), ProxyTask("testbed"),
                           config(max_rounds=40, max_step_tokens=2, max_tokens_cap=64))
    with ServerThread(app) as server:
        body = chat(model="ttscale@beam:2", stream=stream, max_tokens=64,
                    ttscale={"options": {"beam_width": 1}})
        with pytest.raises(httpx.ReadTimeout):
            post(server.url, body, timeout=0.5)
        gone = time.monotonic()
        time.sleep(4.0)
        stats = httpx.get(server.url + "/health").json()
    after = [t for t in slow.calls if t > gone]
    assert len(after) <= 1, f"{len(after)} engine calls after the client went away"
    assert stats["cancelled"] == 1 and stats["engine_calls_after_cancel"] <= 1


def stalling_backend(delay_s: float, seen: dict) -> ServerThread:
    """A real HTTP server whose completions answer after ``delay_s`` unless the caller hangs up
    first (it records whether it saw the caller disconnect)."""
    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> dict:
        return {"data": [{"id": "m", "ttscale": {"num_parameters": 1}}]}

    @app.post("/v1/completions")
    async def completions(request: Request) -> dict:
        seen["started"] = seen.get("started", 0) + 1
        end = time.monotonic() + delay_s
        while time.monotonic() < end:
            if await request.is_disconnected():
                seen["aborted"] = seen.get("aborted", 0) + 1
                return {}
            await asyncio.sleep(0.05)
        return {"choices": [{"index": 0, "text": "1\nA:1", "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 3}}

    return ServerThread(app)


def test_a_disconnect_aborts_the_backend_call_in_flight():
    seen: dict = {}
    with stalling_backend(30.0, seen) as backend:
        gen = OpenAIGenerator(backend.url + "/v1", model="m", num_parameters=1, retries=0)
        app = create_proxy_app(gen, None, ProxyTask("testbed"), config())
        with ServerThread(app) as server:
            with pytest.raises(httpx.ReadTimeout):
                post(server.url, chat(), timeout=1.0)
            for _ in range(100):
                if seen.get("aborted"):
                    break
                time.sleep(0.05)
        gen.close()
    assert seen.get("started") and seen.get("aborted") == seen["started"]


def test_a_stalled_backend_is_a_clean_504_at_the_deadline(caplog):
    seen: dict = {}
    with stalling_backend(30.0, seen) as backend:
        gen = OpenAIGenerator(backend.url + "/v1", model="m", num_parameters=1, retries=0)
        app = create_proxy_app(gen, None, ProxyTask("testbed"), config(request_timeout_s=1.0))
        with ServerThread(app) as server, caplog.at_level(logging.INFO):
            r = post(server.url, chat(), timeout=20.0)
        gen.close()
    assert r.status_code == 504, r.text
    err = r.json()["error"]
    assert err["code"] == "timeout" and err["type"] == "upstream_error"
    assert not any(rec.exc_info for rec in caplog.records)


def test_a_backend_read_timeout_is_a_502_without_retrying_forever():
    seen: dict = {}
    with stalling_backend(30.0, seen) as backend:
        gen = OpenAIGenerator(backend.url + "/v1", model="m", num_parameters=1, retries=1,
                              timeout_s=0.5, backoff_s=0.01, backoff_max_s=0.02)
        app = create_proxy_app(gen, None, ProxyTask("testbed"), config())
        with ServerThread(app) as server:
            r = post(server.url, chat(), timeout=20.0)
        gen.close()
    assert r.status_code == 502 and seen["started"] == 2  # first try + 1 retry


# ---- 4. keys ---------------------------------------------------------------------------------


def test_server_keys_come_from_env_or_file_and_open_servers_stay_on_loopback(tmp_path,
                                                                             monkeypatch):
    monkeypatch.delenv("TTSCALE_API_KEY", raising=False)
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    assert server_keys("s", "127.0.0.1", key_file=str(key_file)) == ["from-file"]
    monkeypatch.setenv("TTSCALE_API_KEY", "from-env")
    assert server_keys("s", "0.0.0.0") == ["from-env"]
    monkeypatch.delenv("TTSCALE_API_KEY")
    with pytest.raises(ValueError, match="needs an API key"):
        server_keys("s", "0.0.0.0", required_on_loopback=False)
    with pytest.raises(ValueError, match="--insecure-no-auth"):
        server_keys("s", "0.0.0.0", no_auth=True)
    assert server_keys("s", "0.0.0.0", insecure=True) is None
    assert server_keys("s", "::1", no_auth=True) is None
    assert server_keys("s", "127.0.0.1", required_on_loopback=False) is None
    with pytest.raises(ValueError, match="empty"):
        (tmp_path / "empty").write_text("\n")
        server_keys("s", "127.0.0.1", key_file=str(tmp_path / "empty"))


def test_the_proxy_sends_its_own_key_to_a_keyed_prm_server():
    with policy_server(hf_policy(), api_keys=["pol-key"]) as pol, \
            prm_server(token_prm(), api_keys=["prm-key"]) as prm:
        gen = OpenAIGenerator(pol.url + "/v1", api_key="pol-key")
        good = HTTPPRM.for_kind(prm.url, "token-classification", "\n", api_key="prm-key")
        bad = HTTPPRM.for_kind(prm.url, "token-classification", "\n", api_key="wrong")
        with ServerThread(create_proxy_app(gen, good, ProxyTask("testbed"), config())) as s1, \
                ServerThread(create_proxy_app(gen, bad, ProxyTask("testbed"), config())) as s2:
            ok = post(s1.url, chat(model="ttscale@weighted-best-of-n:2"))
            refused = post(s2.url, chat(model="ttscale@weighted-best-of-n:2"))
        gen.close()
        good.close()
        bad.close()
    assert ok.status_code == 200, ok.text
    # the server's own credentials are wrong: not the client's fault, so not a 4xx
    assert refused.status_code == 502 and refused.json()["error"]["code"] == "upstream_auth"


# ---- 5. bad input ----------------------------------------------------------------------------

DEEP = b'{"model": "ttscale", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
HUGE_INT = b'{"model": "ttscale", "seed": 1' + b"0" * 5000 + b"}"
SURROGATE = (b'{"model": "ttscale", "messages": [{"role": "user", "content": "Q:1\\ud800"}]}')

PROXY_BAD = [
    (DEEP, "nested"),
    (HUGE_INT, "JSON"),
    (SURROGATE, "surrogate"),
    (chat(model="ttscale@beam:\u00b2"), "ASCII digits"),
    (chat(model="ttscale@majority:\u0661\u0666"), "ASCII digits"),
    (b'{"model": "ttscale\\ud800", "messages": []}', "surrogate"),
    (chat(stream="yes"), "stream"),
    (chat(max_tokens="20"), "max_tokens"),
    (chat(seed="1"), "seed"),
    (chat(temperature="0"), "temperature"),
    (chat(ttscale={"budget": "4"}), "budget"),
    (chat(logprobs=True), "'logprobs' is not supported"),
    (chat(top_logprobs=3), "'top_logprobs' is not supported"),
    (chat(tools=[{"type": "function", "function": {"name": "f"}}]), "'tools' is not supported"),
    (chat(response_format={"type": "json_object"}), "'response_format' is not supported"),
    (chat(stop=[""]), "stop"),
    (chat(stop=["a"] * 40), "stop"),
    (chat(seed=2**70), "seed"),
]


@pytest.mark.parametrize("body,words", PROXY_BAD, ids=range(len(PROXY_BAD)))
def test_bad_input_to_the_proxy_is_a_4xx_in_the_openai_shape(proxy, caplog, body, words):
    with caplog.at_level(logging.WARNING):
        r = post(proxy.url, body)
    assert 400 <= r.status_code < 500, r.text
    err = r.json()["error"]
    assert words in err["message"] and set(err) >= {"message", "type", "code"}
    assert "Traceback" not in r.text
    assert not any(rec.exc_info for rec in caplog.records), "a traceback was logged"


def test_neutral_values_of_unsupported_parameters_are_accepted(proxy):
    r = post(proxy.url, chat(logprobs=False, tools=[], response_format={"type": "text"},
                             presence_penalty=0, seed=3))
    assert r.status_code == 200, r.text


def test_stop_cuts_the_searched_solution_like_the_openai_api(proxy):
    whole = post(proxy.url, chat(seed=4)).json()
    text = whole["choices"][0]["message"]["content"]
    assert "\n" in text  # a testbed solution has several steps
    cut = post(proxy.url, chat(seed=4, stop=["\n"])).json()
    assert cut["choices"][0]["message"]["content"] == text.split("\n")[0]
    assert cut["ttscale"]["cut_at_stop"] is True


BACKEND_BAD = [DEEP, HUGE_INT, SURROGATE,
               {"model": "m\u0661", "prompt": "x", "input": "x"},
               {"prompt": "x", "input": "x", "n": "2", "max_tokens": "20", "messages": "hi"},
               {"prompt": "x", "input": "x", "stream": "yes", "task": 5}]


@pytest.mark.parametrize("body", BACKEND_BAD, ids=range(len(BACKEND_BAD)))
def test_bad_input_to_the_backend_servers_is_a_4xx(upstream, caplog, body):
    pol, prm = upstream
    with caplog.at_level(logging.WARNING):
        rs = [post(pol.url, body, "/v1/completions", key=None),
              post(prm.url, body, "/pooling", key=None)]
    for r in rs:
        assert 400 <= r.status_code < 500, r.text
        assert "message" in r.json()["error"]
    assert not any(rec.exc_info for rec in caplog.records)


def test_the_prm_server_checks_sizes_before_tokenizing():
    class Counting:
        def __init__(self, inner):
            self.inner, self.calls = inner, 0
            self.num_parameters = inner.num_parameters
            self.step_delimiter = inner.step_delimiter

        def score(self, prompts, solutions):
            self.calls += 1
            return self.inner.score(prompts, solutions)

    scorer = Counting(token_prm())
    with prm_server(scorer, max_input_chars=1000, max_total_chars=3000) as prm:
        one = post(prm.url, {"input": "x\n" * 1000}, "/pooling", key=None)
        many = post(prm.url, {"input": ["x\n" * 400] * 5}, "/pooling", key=None)
        ok = post(prm.url, {"input": "1+1=2\n"}, "/pooling", key=None)
    assert one.status_code == 400 and "characters" in one.json()["error"]["message"]
    assert many.status_code == 400 and "in all" in many.json()["error"]["message"]
    assert ok.status_code == 200 and scorer.calls == 1


def _closed_by_server(sock: socket.socket, wait_s: float) -> bool:
    sock.settimeout(wait_s)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False


@pytest.mark.parametrize("sent", [b"", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"],
                         ids=["nothing", "partial"])
def test_connections_that_never_finish_their_headers_are_closed(sent):
    app = create_proxy_app(Serialized(hf_policy()), None, ProxyTask("testbed"), config())
    with ServerThread(app, header_timeout_s=0.5) as server:
        with socket.create_connection((server.host, server.port)) as sock:
            if sent:
                sock.sendall(sent)
            assert _closed_by_server(sock, 10.0)
        # a normal request on another connection is unaffected
        assert httpx.get(server.url + "/health").status_code == 200


def test_a_body_that_never_arrives_is_a_408():
    app = create_proxy_app(Serialized(hf_policy()), None, ProxyTask("testbed"),
                           config(body_timeout_s=0.5))
    with ServerThread(app) as server, \
            socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: "
                     b"Bearer " + KEY.encode() + b"\r\nContent-Length: 100\r\n\r\n{")
        sock.settimeout(10.0)
        answer = b""
        while b"did not arrive" not in answer and (chunk := sock.recv(4096)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive" in answer


# ---- 6. sampling semantics -------------------------------------------------------------------


def test_temperature_zero_is_a_deterministic_answer_not_n_greedy_samples(proxy):
    a = post(proxy.url, chat(model="ttscale@majority:4", temperature=0)).json()
    b = post(proxy.url, chat(model="ttscale@majority:4", temperature=0)).json()
    assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]
    s = a["ttscale"]["sampling"]
    assert s["deterministic"] and s["seed"] == 0 and s["temperature"] == 0.8
    assert s["client_temperature"] == 0.0 and s["source"] == "server"
    assert a["ttscale"]["budget"] == 4 and a["ttscale"]["cost"]["generations"] == 4


def test_a_greedy_server_spends_one_sample_not_n(upstream):
    pol, _ = upstream
    gen = OpenAIGenerator(pol.url + "/v1")
    app = create_proxy_app(gen, None, ProxyTask("testbed"), config(temperature=0.0))
    with ServerThread(app) as server:
        r = post(server.url, chat(model="ttscale@majority:8")).json()
    gen.close()
    assert r["ttscale"]["budget"] == 1 and r["ttscale"]["budget_requested"] == 8
    assert r["ttscale"]["cost"]["generations"] == 1 and "note" in r["ttscale"]["sampling"]
