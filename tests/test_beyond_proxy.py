"""The proxy serves the issue-12 strategies as ``ttscale@<name>:N``: real loopback servers (the
proxy, ttscale's policy server with log-probabilities, its PRM server) on tiny random-init
models, driven by the official openai client."""

from __future__ import annotations

import pytest
from serve_helpers import hf_policy, policy_server, prm_server, token_prm

from ttscale.engines.openai import OpenAIGenerator
from ttscale.serve.common import ServerThread
from ttscale.serve.proxy import ProxyConfig, create_proxy_app
from ttscale.serve.tasks import ProxyTask
from ttscale.verifiers.http_prm import HTTPPRM

openai = pytest.importorskip("openai")

KEY = "sk-test-123"
QUESTION = "Q:12a+3b*2"


@pytest.fixture(scope="module")
def client():
    with policy_server(hf_policy()) as pol, prm_server(token_prm()) as prm:
        gen = OpenAIGenerator(pol.url + "/v1")
        scorer = HTTPPRM.for_kind(prm.url, "token-classification", "\n")
        cfg = ProxyConfig(api_keys=[KEY], default_strategy="majority", default_budget=2,
                          max_budget=8, max_step_tokens=8, default_max_tokens=24,
                          max_tokens_cap=64, max_rounds=3, max_prompt_chars=200,
                          max_request_bytes=4096, options={})
        app = create_proxy_app(gen, scorer, ProxyTask("testbed"), cfg)
        with ServerThread(app) as server:
            yield openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)
        gen.close()
        scorer.close()


@pytest.mark.parametrize("model", ["ttscale@particle-filtering:4", "ttscale@adaptive:4",
                                   "ttscale@adaptive-prm:4", "ttscale@confidence-vote:4",
                                   "ttscale@deepconf-online:4"])
def test_the_proxy_serves_the_new_strategies(client, model):
    r = client.chat.completions.create(model=model, seed=5,
                                       messages=[{"role": "user", "content": QUESTION}])
    assert r.choices[0].message.content is not None
    assert r.usage.completion_tokens > 0
    again = client.chat.completions.create(model=model, seed=5,
                                           messages=[{"role": "user", "content": QUESTION}])
    assert again.choices[0].message.content == r.choices[0].message.content


def test_a_bad_option_is_a_400(client):
    with pytest.raises(openai.BadRequestError, match="resampling"):
        client.chat.completions.create(
            model="ttscale@particle-filtering:4", seed=1,
            messages=[{"role": "user", "content": QUESTION}],
            extra_body={"ttscale": {"options": {"resampling": "best"}}})
