"""PRM over HTTP: the pooling-API client against ``ttscale serve-prm``'s app on loopback, which
serves real (tiny, random-init) transformers PRMs. Scores must equal the in-process PRM's."""

from __future__ import annotations

import httpx
import pytest
from serve_helpers import prm_server, qwen_prm, token_prm

from ttscale.net.pool import ClientError, ServerError
from ttscale.verifiers import load_verifier
from ttscale.verifiers.base import StepScorer
from ttscale.verifiers.http_prm import HTTPPRM, chatml_user_turn, render_chatml

PROMPTS = ["Q:12a+3b*2\n", "Q:50a-1\n", "Q:50a-1\n"]
SOLUTIONS = [["a:12+3=15", "b:15*2=30", "A:30"], ["a:50-1=49"], []]


def assert_close(got, want):
    assert [len(s) for s in got] == [len(s) for s in want]
    assert [x for s in got for x in s] == pytest.approx([x for s in want for x in s], abs=1e-6)


@pytest.fixture(scope="module")
def tc():
    return token_prm()


@pytest.fixture(scope="module")
def qwen():
    return qwen_prm()


@pytest.fixture(scope="module")
def tc_server(tc):
    with prm_server(tc, model_name="tiny-prm", api_keys=["k1"]) as s:
        yield s


@pytest.fixture(scope="module")
def qwen_server(qwen):
    with prm_server(qwen, kind="qwen-prm") as s:
        yield s


def test_token_classification_scores_over_http_equal_in_process(tc, tc_server):
    client = load_verifier(tc_server.url + "/v1", kind="token-classification",
                           step_delimiter="\n", device="cpu", api_key="k1")
    assert isinstance(client, StepScorer)
    got = client.score(PROMPTS, SOLUTIONS)
    want = tc.score(PROMPTS, SOLUTIONS)
    assert_close(got.scores, want.scores)
    assert got.tokens == want.tokens
    assert client.num_parameters == tc.num_parameters
    assert client.model == "tiny-prm"
    client.close()


@pytest.mark.parametrize("fmt", ["chat", "chatml"])
def test_qwen_style_scores_over_http_equal_in_process(qwen, qwen_server, fmt):
    client = HTTPPRM(qwen_server.url, input_format=fmt, batch_size=2)
    prompts = [p.strip() for p in PROMPTS]
    got = client.score(prompts, SOLUTIONS)
    want = qwen.score(prompts, SOLUTIONS)
    assert_close(got.scores, want.scores)
    assert got.tokens == want.tokens
    client.close()


def test_the_user_turn_of_a_chatml_prompt_is_the_question():
    prompt = render_chatml("sys", "What is 2+2?", [], "<extra_0>").rsplit("<|im_start|>", 1)[0]
    assert chatml_user_turn(prompt + "<|im_start|>assistant\n") == "What is 2+2?"
    assert chatml_user_turn("plain question") == "plain question"


def test_without_the_key_the_prm_server_answers_401(tc_server):
    r = httpx.post(tc_server.url + "/pooling", json={"input": "Q:1\na:1\n"})
    assert r.status_code == 401
    client = HTTPPRM(tc_server.url, input_format="text", step_tag="\n", retries=0)
    with pytest.raises(ClientError, match="401"):
        client.score(PROMPTS[:1], SOLUTIONS[:1])
    client.close()


def test_a_step_containing_the_tag_is_refused(tc_server):
    client = HTTPPRM(tc_server.url, input_format="text", step_tag="\n", api_key="k1")
    with pytest.raises(ValueError, match="step tag"):
        client.score(["Q:1\n"], [["a:1\nb:2"]])
    client.close()


def test_a_server_with_another_step_tag_is_a_clear_error(tc_server):
    client = HTTPPRM(tc_server.url, input_format="text", step_tag="<extra_0>", api_key="k1")
    with pytest.raises(ServerError, match="step tags"):
        client.score(PROMPTS[:1], SOLUTIONS[:1])
    client.close()


@pytest.mark.parametrize("body,code", [
    (b"{not json", 400),
    (b'{"input": "x", "messages": [{"role": "user", "content": "x"}]}', 400),
    (b'{"input": []}', 400),
    (b'{"input": "x", "task": "embed"}', 400),
    (b'{"model": "other", "input": "x"}', 404),
])
def test_malformed_pooling_requests_get_a_4xx_without_internals(qwen_server, body, code):
    r = httpx.post(qwen_server.url + "/pooling", content=body,
                   headers={"content-type": "application/json"})
    assert r.status_code == code
    msg = r.json()["error"]["message"]
    assert msg and "Traceback" not in r.text and ".py" not in r.text


def test_scores_are_rows_per_step_tag_like_vllm(qwen_server):
    text = render_chatml("s", "q", ["one", "two"], "<extra_0>")
    r = httpx.post(qwen_server.url + "/pooling", json={"input": [text, text]})
    data = r.json()
    assert r.status_code == 200 and data["object"] == "list"
    rows = data["data"][0]["data"]
    assert len(rows) == 2 and all(len(row) == 2 for row in rows)
    assert all(abs(sum(row) - 1) < 1e-6 for row in rows)
    assert data["usage"]["prompt_tokens"] > 0
