"""The OpenAI-compatible engine against a real server on loopback (ttscale's policy server over a
tiny random-init transformers model), plus unit tests of its response parsing."""

from __future__ import annotations

from dataclasses import replace

import pytest
from serve_helpers import hf_policy, policy_server, prm_server, token_prm

from ttscale.engines.base import Generator, SamplingParams
from ttscale.engines.openai import (
    OpenAIGenerator,
    guess_parameters,
    parse_completion,
    prompt_seed,
    sample_seed,
)
from ttscale.engines.openai_wire import _split
from ttscale.net.pool import ClientError, ServerError
from ttscale.serve.common import free_port
from ttscale.testing.faults import FaultyRelay

PROMPTS = ["Q:12a+3b*2\n", "Q:50a-1\n", "Q:12a+3b*2\n"]
STEP = SamplingParams(n=3, temperature=1.0, max_tokens=12, stop=("\n",), seed=7)
FAST = {"retries": 8, "backoff_s": 0.005, "backoff_max_s": 0.02}


@pytest.fixture(scope="module")
def hf():
    return hf_policy()


@pytest.fixture(scope="module")
def server(hf):
    with policy_server(hf) as s:
        yield s


@pytest.fixture(scope="module")
def llamacpp_like(hf):
    with policy_server(hf, emulate="llamacpp") as s:
        yield s


def texts(rows):
    return [[c.text for c in row] for row in rows]


# ---- unit: parsing and helpers -------------------------------------------------------------


def test_sample_seed_keeps_the_first_seed_and_spreads_the_others():
    assert sample_seed(42, 0) == 42
    seeds = {sample_seed(42, i) for i in range(1, 50)}
    assert len(seeds) == 49 and 42 not in seeds
    assert sample_seed(42, 3) == sample_seed(42, 3)


def test_guess_parameters_from_served_names():
    assert guess_parameters("Qwen/Qwen2.5-Math-1.5B-Instruct") == 1_500_000_000
    assert guess_parameters("HuggingFaceTB/SmolLM2-135M-Instruct") == 135_000_000
    assert guess_parameters("Qwen2.5-Math-PRM-7B") == 7_000_000_000
    assert guess_parameters("ttscale-policy") == 0


def test_split_keeps_the_total():
    assert _split(10, [1, 1]) == [5, 5]
    assert sum(_split(17, [3, 0, 8, 2])) == 17
    assert _split(5, [4]) == [5]


def test_finish_reasons_follow_stop_reason_when_the_server_gives_it():
    data = {"choices": [
        {"index": 1, "text": "b", "finish_reason": "stop", "stop_reason": None},
        {"index": 0, "text": "a", "finish_reason": "stop", "stop_reason": "\n"},
        {"index": 2, "text": "c", "finish_reason": "length", "stop_reason": None}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 9,
                  "prompt_tokens_details": {"cached_tokens": 2}}}
    out = [s.completion for s in parse_completion(data, True, "srv")]
    assert [c.text for c in out] == ["a", "b", "c"]
    assert [c.finish_reason for c in out] == ["stop", "eos", "length"]
    assert sum(c.generated_tokens for c in out) == 9
    assert [c.prompt_tokens for c in out] == [5, 5, 5]
    assert [c.prompt_tokens_cached for c in out] == [2, 5, 5]


def test_without_stop_reason_a_stop_is_a_step_end_only_when_stops_were_asked():
    data = {"choices": [{"index": 0, "text": "x", "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
    assert parse_completion(data, True, "srv")[0].completion.finish_reason == "stop"
    assert parse_completion(data, False, "srv")[0].completion.finish_reason == "eos"


@pytest.mark.parametrize("bad", [{}, {"choices": "x"}, {"choices": [{"index": 0}]}, []])
def test_a_malformed_answer_is_a_clear_error(bad):
    with pytest.raises(ServerError, match="srv"):
        parse_completion(bad, False, "srv")


def test_bad_arguments_fail_before_any_request():
    with pytest.raises(ValueError, match="http"):
        OpenAIGenerator("localhost:8000")
    with pytest.raises(ValueError, match="n_mode"):
        OpenAIGenerator("http://127.0.0.1:1/v1", n_mode="many")
    gen = OpenAIGenerator("http://127.0.0.1:1/v1", model="m")
    with pytest.raises(ValueError, match="max_tokens"):
        gen.generate(["x"], SamplingParams(max_tokens=0))
    with pytest.raises(ValueError, match="list of strings"):
        gen.generate("x", SamplingParams())
    gen.close()


# ---- against a real server -----------------------------------------------------------------


def test_completions_match_the_engine_behind_the_server(server, hf):
    gen = OpenAIGenerator(server.url + "/v1")
    assert isinstance(gen, Generator)
    out = gen.generate(PROMPTS, STEP)
    assert gen.model == "ttscale-policy"
    assert gen.num_parameters == hf.num_parameters
    assert gen.n_supported is True
    assert [len(r) for r in out] == [3, 3, 3]
    # each prompt of a call gets its own seed (prompt 0 keeps it): a repeated prompt draws
    # other samples, exactly the engine's samples under that prompt's seed
    assert texts(out)[0] != texts(out)[2]
    again = hf.generate([PROMPTS[2]], replace(STEP, seed=prompt_seed(STEP.seed, 2)))[0]
    assert texts(out)[2] == [c.text for c in again]
    direct = hf.generate([PROMPTS[0]], STEP)[0]
    assert texts(out)[0] == [c.text for c in direct]
    assert [c.finish_reason for c in out[0]] == [c.finish_reason for c in direct]
    assert sum(c.generated_tokens for c in out[0]) == sum(c.generated_tokens for c in direct)
    assert [c.prompt_tokens for c in out[0]] == [c.prompt_tokens for c in direct]
    assert [c.prompt_tokens_cached for c in out[0]] == [c.prompt_tokens_cached for c in direct]
    assert texts(gen.generate(PROMPTS, STEP)) == texts(out)  # same seed, same samples
    gen.close()


def test_the_async_api_gives_the_same_samples(server):
    import asyncio

    gen = OpenAIGenerator(server.url + "/v1")

    async def both():  # prompt 1 of a call is seeded prompt_seed(seed, 1)
        second = replace(STEP, seed=prompt_seed(STEP.seed, 1))
        return await asyncio.gather(gen.agenerate(PROMPTS[:1], STEP),
                                    gen.agenerate(PROMPTS[1:2], second))

    a, b = asyncio.run(both())
    assert texts(a + b) == texts(gen.generate(PROMPTS[:2], STEP))
    gen.close()


def test_logprobs_give_exact_per_sample_token_counts(server, hf):
    gen = OpenAIGenerator(server.url + "/v1", logprobs=2)
    params = SamplingParams(n=4, max_tokens=10, seed=3)
    rows = gen.sample(["Q:33a*4\n"], params)[0]
    direct = hf.generate(["Q:33a*4\n"], params)[0]
    assert [s.completion.generated_tokens for s in rows] == [c.generated_tokens for c in direct]
    for s in rows:
        assert len(s.token_logprobs) == s.completion.generated_tokens
        assert all(v <= 0 for v in s.token_logprobs)
    gen.close()


def test_a_server_without_n_is_detected_and_sampled_one_by_one(llamacpp_like, server):
    auto = OpenAIGenerator(llamacpp_like.url + "/v1")
    out = auto.generate(PROMPTS[:2], STEP)
    assert auto.n_supported is False
    assert [len(r) for r in out] == [3, 3]
    assert len(set(texts(out)[0])) > 1, "samples of one prompt must differ"
    single = OpenAIGenerator(server.url + "/v1", n_mode="single")
    assert texts(single.generate(PROMPTS[:2], STEP)) == texts(out)
    # no stop_reason from this server: with stop strings asked, a stop is a step end
    assert {c.finish_reason for r in out for c in r} <= {"stop", "length"}
    native = OpenAIGenerator(llamacpp_like.url + "/v1", n_mode="native")
    with pytest.raises(ServerError, match="n_mode='single'"):
        native.generate(PROMPTS[:1], STEP)
    for g in (auto, single, native):
        g.close()


def test_replicas_share_the_load_and_give_the_same_samples(server, hf):
    with policy_server(hf) as second:
        gen = OpenAIGenerator([server.url + "/v1", second.url + "/v1"], max_concurrency=2)
        prompts = [f"Q:{10 + i}a+{i % 9 + 1}\n" for i in range(8)]
        out = gen.generate(prompts, STEP)
        used = gen.pool.stats.per_replica
        assert all(v > 0 for v in used.values()), used
        one = OpenAIGenerator(server.url + "/v1")
        assert texts(one.generate(prompts, STEP)) == texts(out)
        gen.close()
        one.close()


def test_retries_through_a_faulty_relay_lose_nothing(server):
    clean = OpenAIGenerator(server.url + "/v1")
    prompts = [f"Q:{20 + i}a*{i % 8 + 2}\n" for i in range(12)]
    want = texts(clean.generate(prompts, STEP))
    with FaultyRelay(server.url, fault_rate=0.3, seed=1) as relay:
        gen = OpenAIGenerator(relay.url + "/v1", **FAST)
        got = texts(gen.generate(prompts, STEP))
        assert relay.faults > 0 and gen.pool.stats.retries > 0
        gen.close()
    assert got == want
    clean.close()


def test_the_last_failure_is_a_clear_error_naming_the_server():
    port = free_port()
    gen = OpenAIGenerator(f"http://127.0.0.1:{port}/v1", model="m", retries=2, backoff_s=0.001,
                          backoff_max_s=0.002)
    with pytest.raises(ServerError, match=rf"127\.0\.0\.1:{port}.*3 attempt"):
        gen.generate(["x"], SamplingParams())
    gen.close()


def test_a_refusal_is_not_retried(server):
    gen = OpenAIGenerator(server.url + "/v1", model="no-such-model", **FAST)
    with pytest.raises(ClientError, match="404"):
        gen.generate(["x"], SamplingParams())
    assert gen.pool.stats.retries == 0
    gen.close()


def test_a_prompt_longer_than_the_context_is_refused_with_the_server_message(server):
    gen = OpenAIGenerator(server.url + "/v1")
    with pytest.raises(ClientError, match="context"):
        gen.generate(["Q:1" * 200], SamplingParams(max_tokens=4))
    gen.close()


def test_ttscale_run_drives_the_openai_engine_and_a_prm_server(server, tmp_path):
    from ttscale.config import build_config
    from ttscale.runner import run

    with prm_server(token_prm()) as prm:
        cfg = build_config(None, {
            "task": "testbed", "strategy": "beam", "budget": 4, "limit": 2, "out": str(tmp_path),
            "engine": "openai", "base_url": server.url + "/v1", "policy": "ttscale-policy",
            "prm": prm.url + "/v1", "max_step_tokens": 8, "max_solution_tokens": 24,
            "max_rounds": 3, "options.beam_width": 2}, ())
        summary = run(cfg, progress=False)
    assert summary.n_problems == 2 and summary.computed == 2
    cost = summary.cost
    assert cost["generations"] == 8
    assert cost["generated_tokens"] > 0 and cost["prm_tokens"] > 0
    assert cost["policy_flops"] > 0 and cost["prm_flops"] > 0


def test_policy_params_sets_the_flops_of_a_served_policy(server, tmp_path):
    """Servers such as llama.cpp do not report a parameter count and an alias may not name the
    size: ``policy_params`` then gives FLOPs = 2 x params x tokens."""
    from ttscale.config import build_config
    from ttscale.runner import run

    cfg = build_config(None, {
        "task": "testbed", "strategy": "majority", "budget": 2, "limit": 1,
        "out": str(tmp_path), "engine": "openai", "base_url": server.url + "/v1",
        "policy": "ttscale-policy", "policy_params": 1000, "max_solution_tokens": 16}, ())
    cost = run(cfg, progress=False).cost
    tokens = cost["prompt_tokens"] + cost["generated_tokens"] - cost["prompt_tokens_cached"]
    assert tokens > 0 and cost["policy_flops"] == 2 * 1000 * tokens
