"""``ttscale serve``: the OpenAI-compatible search proxy, driven by the official ``openai`` client.

Everything is real and on loopback: the proxy (uvicorn) forwards to ttscale's policy server and
PRM server, which run tiny random-init transformers models. Usage is checked against what those
upstream servers themselves counted.
"""

from __future__ import annotations

import httpx
import pytest
from serve_helpers import hf_policy, policy_server, prm_server, token_prm

from ttscale.engines.openai import OpenAIGenerator
from ttscale.serve.common import ServerThread, free_port
from ttscale.serve.proxy import ProxyConfig, create_proxy_app
from ttscale.serve.tasks import ProxyTask
from ttscale.verifiers.http_prm import HTTPPRM

openai = pytest.importorskip("openai")

KEY = "sk-test-123"
QUESTION = "Q:12a+3b*2"


def proxy_config(**kw) -> ProxyConfig:
    base = dict(api_keys=[KEY], default_strategy="weighted-best-of-n", default_budget=2,
                max_budget=8, max_step_tokens=8, default_max_tokens=24, max_tokens_cap=64,
                max_rounds=3, max_prompt_chars=200, max_request_bytes=4096,
                options={"beam_width": 2})
    base.update(kw)
    return ProxyConfig(**base)


@pytest.fixture(scope="module")
def upstream():
    with policy_server(hf_policy()) as pol, prm_server(token_prm()) as prm:
        yield pol, prm


@pytest.fixture(scope="module")
def proxy(upstream):
    pol, prm = upstream
    gen = OpenAIGenerator(pol.url + "/v1")
    scorer = HTTPPRM.for_kind(prm.url, "token-classification", "\n")
    app = create_proxy_app(gen, scorer, ProxyTask("testbed"), proxy_config())
    with ServerThread(app) as server:
        yield server
    gen.close()
    scorer.close()


@pytest.fixture(scope="module")
def client(proxy):
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key=KEY, max_retries=0)


def ask(client, model="ttscale", seed=5, **kw):
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": QUESTION}], seed=seed, **kw)


def counters(upstream):
    pol, prm = upstream
    return httpx.get(pol.url + "/health").json(), httpx.get(prm.url + "/health").json()


def test_chat_answer_reports_every_token_the_upstreams_spent(client, upstream):
    (pol0, prm0) = counters(upstream)
    r = ask(client, model="ttscale@beam:4")
    pol1, prm1 = counters(upstream)
    info = r.model_extra["ttscale"]
    assert info["strategy"] == "beam" and info["budget"] == 4
    assert isinstance(r.choices[0].message.content, str)
    assert r.choices[0].message.role == "assistant"
    cost = info["cost"]
    assert cost["generations"] == 4
    # what the servers counted is what the client is told
    assert r.usage.completion_tokens == pol1["generated_tokens"] - pol0["generated_tokens"]
    assert cost["prm_tokens"] == prm1["tokens"] - prm0["tokens"] > 0
    assert r.usage.prompt_tokens == cost["prompt_tokens"] + cost["prm_tokens"]
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.usage.prompt_tokens_details.cached_tokens == cost["prompt_tokens_cached"]


def test_same_seed_same_answer_and_extra_body_wins_over_the_suffix(client):
    a = ask(client, seed=11)
    b = ask(client, seed=11)
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.model_extra["ttscale"]["strategy"] == "weighted-best-of-n"  # the default
    c = ask(client, model="ttscale@beam:4",
            extra_body={"ttscale": {"strategy": "majority", "budget": 3}})
    assert c.model_extra["ttscale"]["strategy"] == "majority"
    assert c.model_extra["ttscale"]["cost"]["generations"] == 3
    assert c.model_extra["ttscale"]["cost"]["prm_tokens"] == 0


def test_streaming_sends_the_same_answer_and_the_usage(client):
    whole = ask(client, seed=21)
    chunks = list(ask(client, seed=21, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.total_tokens == whole.usage.total_tokens


def test_completions_endpoint_and_model_list(client):
    r = client.completions.create(model="ttscale@dvts:4", prompt=QUESTION, seed=3,
                                  max_tokens=24)
    assert r.model_extra["ttscale"]["strategy"] == "dvts"
    assert isinstance(r.choices[0].text, str)
    names = {m.id for m in client.models.list()}
    assert {"ttscale", "ttscale@beam", "ttscale@majority"} <= names


def test_health_needs_no_key(proxy):
    r = httpx.get(proxy.url + "/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_no_key_or_a_wrong_key_gets_401(proxy):
    for key in ("", "sk-wrong"):
        c = openai.OpenAI(base_url=proxy.url + "/v1", api_key=key or "x", max_retries=0,
                          default_headers={"Authorization": f"Bearer {key}"} if key else
                          {"Authorization": ""})
        with pytest.raises(openai.AuthenticationError):
            ask(c)
    r = httpx.get(proxy.url + "/v1/models")
    assert r.status_code == 401 and "key" in r.json()["error"]["message"]


def post(proxy, body: bytes | dict, **headers):
    h = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json", **headers}
    if isinstance(body, dict):
        return httpx.post(proxy.url + "/v1/chat/completions", json=body, headers=h)
    return httpx.post(proxy.url + "/v1/chat/completions", content=body, headers=h)


def chat(**kw):
    return {"model": "ttscale", "messages": [{"role": "user", "content": QUESTION}], **kw}


BAD = [
    (b'{"model": "ttscale", "messages": [', 400, "malformed JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (b"", 400, "empty"),
    (chat(messages=[{"role": "user", "content": "Q:1" * 100}]), 400, "characters exceeds"),
    (chat(model="ttscale@beam:1000000000"), 400, "exceeds this server's per-request cap"),
    (chat(ttscale={"budget": 10**12}), 400, "per-request cap"),
    (chat(ttscale={"budget": -1}), 400, "budget must be an integer"),
    (chat(ttscale={"budget": "lots"}), 400, "budget must be an integer"),
    (chat(ttscale={"options": {"beam_width": 10**9}}), 400, "cap"),
    (chat(ttscale={"strategy": "nope"}), 400, "unknown strategy"),
    (chat(ttscale={"stratgy": "beam"}), 400, "unknown field"),
    (chat(max_tokens=10**9), 400, "max_tokens"),
    (chat(n=3), 400, "n must be 1"),
    (chat(temperature="hot"), 400, "temperature"),
    (chat(messages=[]), 400, "messages"),
    (chat(messages=[{"role": "system", "content": "hi"}]), 400, "no user message"),
    (chat(model="gpt-4"), 404, "does not exist"),
    ({"messages": [{"role": "user", "content": "x"}]}, 400, "model"),
]


@pytest.mark.parametrize("body,status,words", BAD)
def test_malformed_requests_get_a_clear_4xx_without_a_stack_trace(proxy, body, status, words):
    r = post(proxy, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert words in err["message"]
    assert "Traceback" not in r.text and ".py" not in r.text


def test_an_oversized_body_is_refused_before_it_is_read(proxy):
    r = post(proxy, b'{"model": "ttscale", "pad": "' + b"x" * 10000 + b'"}')
    assert r.status_code == 413 and "exceeds the limit" in r.json()["error"]["message"]


def test_a_dead_upstream_is_a_502_that_reveals_nothing(upstream):
    _, prm = upstream
    dead = OpenAIGenerator(f"http://127.0.0.1:{free_port()}/v1", model="m", retries=1,
                           backoff_s=0.001, backoff_max_s=0.002)
    app = create_proxy_app(dead, None, ProxyTask("testbed"),
                           proxy_config(default_strategy="majority"))
    with ServerThread(app) as server:
        r = post(server, chat())
    assert r.status_code == 502
    assert "127.0.0.1" not in r.text and "Traceback" not in r.text
    dead.close()


class _Broken:
    num_parameters = 1

    def generate(self, prompts, params):
        raise KeyError("secret internal detail")


def test_an_unexpected_error_is_a_generic_500():
    app = create_proxy_app(_Broken(), None, ProxyTask("testbed"),
                           proxy_config(default_strategy="majority"))
    with ServerThread(app) as server:
        r = post(server, chat())
    assert r.status_code == 500
    assert "secret" not in r.text and "Traceback" not in r.text
    assert r.json()["error"]["message"].startswith("internal server error")


def test_a_verifier_strategy_without_a_verifier_is_a_400(upstream):
    pol, _ = upstream
    gen = OpenAIGenerator(pol.url + "/v1")
    app = create_proxy_app(gen, None, ProxyTask("testbed"), proxy_config())
    with ServerThread(app) as server:
        r = post(server, chat(model="ttscale@beam:2"))
        ok = post(server, chat(model="ttscale@majority:2"))
    assert r.status_code == 400 and "verifier" in r.json()["error"]["message"]
    assert ok.status_code == 200
    gen.close()


def test_the_default_is_the_compute_optimal_policy_table(upstream, tmp_path):
    from ttscale.strategies.policy_table import save_table, validate_table

    pol, prm = upstream
    entry = {"strategy": "beam", "options": {"beam_width": 2}}
    table = validate_table({
        "schema_version": 1, "task": "testbed", "bins": {"kind": "predicted",
                                                          "thresholds": [0.3, 0.7]},
        "probe": {"k": 2, "reuse": True}, "budgets": [2, 4],
        "policy": {b: {"2": {"strategy": "majority", "options": {}}, "4": entry}
                   for b in ("1", "2", "3")}}, "test")
    path = str(save_table(table, tmp_path / "policy.json"))
    gen = OpenAIGenerator(pol.url + "/v1")
    scorer = HTTPPRM.for_kind(prm.url, "token-classification", "\n")
    app = create_proxy_app(gen, scorer, ProxyTask("testbed"),
                           proxy_config(default_strategy="majority", default_budget=4,
                                        policy_table=path))
    assert app.state.default_strategy == "compute-optimal"
    with ServerThread(app) as server:
        r = post(server, chat(seed=1))
        sneaky = post(server, chat(ttscale={"options": {"policy_table": "/etc/passwd"}}))
    assert r.status_code == 200, r.text
    info = r.json()["ttscale"]
    assert info["strategy"] == "compute-optimal"
    assert info["cost"]["difficulty_flops"] > 0  # the difficulty probe is paid for
    assert sneaky.status_code == 400 and "set by the server" in sneaky.text
    with pytest.raises(ValueError, match="not found"):
        create_proxy_app(gen, scorer, ProxyTask("testbed"),
                         proxy_config(policy_table=str(tmp_path / "missing.json")))
    gen.close()
    scorer.close()


def test_bad_server_settings_fail_at_start():
    with pytest.raises(ValueError, match="unknown"):
        create_proxy_app(_Broken(), None, ProxyTask("testbed"),
                         proxy_config(default_strategy="nope"))
    with pytest.raises(ValueError, match="format"):
        ProxyTask("html")


class _Counted:
    """A revision model stand-in that forwards to a real engine and counts its calls."""

    def __init__(self, inner):
        self.inner, self.prompts = inner, []

    @property
    def num_parameters(self) -> int:
        return self.inner.num_parameters

    def generate(self, prompts, params):
        self.prompts.extend(prompts)
        return self.inner.generate(prompts, params)


def test_revisions_over_the_api_use_the_configured_revision_model(upstream):
    """The proxy builds its search context through the session: revisions and combined revise
    with the configured revision model, not with the policy."""
    pol, prm = upstream
    gen = _Counted(OpenAIGenerator(pol.url + "/v1"))
    reviser = _Counted(OpenAIGenerator(pol.url + "/v1"))
    scorer = HTTPPRM.for_kind(prm.url, "token-classification", "\n")
    app = create_proxy_app(gen, scorer, ProxyTask("testbed"), proxy_config(), reviser=reviser)
    with ServerThread(app) as server:
        r = post(server, chat(model="ttscale@revisions:4", seed=3,
                              ttscale={"options": {"chain_length": 2}}))
        n_policy = len(gen.prompts)
        combined = post(server, chat(model="ttscale@combined:4", seed=3,
                                     ttscale={"options": {"chain_length": 2}}))
        typo = post(server, chat(model="ttscale@beam:4", ttscale={"options": {"beam_widht": 2}}))
    assert r.status_code == 200, r.text
    assert r.json()["ttscale"]["candidates"] == 4
    assert n_policy == 0 and len(reviser.prompts) >= 4  # all 4 attempts by the revision model
    assert combined.status_code == 200, combined.text
    assert len(gen.prompts) > 0  # combined's beam search is the policy's ...
    # ... and its revision chains are the revision model's
    assert any("P:" in p or p.count("\n") > 1 for p in reviser.prompts[4:])
    assert typo.status_code == 400 and "beam_widht" in typo.json()["error"]["message"]
    gen.inner.close()
    reviser.inner.close()
    scorer.close()
