"""The HTTP engine against loopback fakes of llama-server, vLLM and SGLang (tests/fake_servers.py):
``n`` above the server's limit, exact per-choice token counts, explicit sampling on the wire,
per-prompt seeds, SGLang's quirks, log-probabilities and context limits. The real llama-server
checks the same behaviours in tests/test_serve_llamacpp.py."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")

from fake_servers import fake_server  # noqa: E402

from ttscale.engines.base import SamplingParams  # noqa: E402
from ttscale.engines.openai import (  # noqa: E402
    OpenAIGenerator,
    parse_completion,
    prompt_seed,
    sample_seed,
)
from ttscale.errors import ProblemError  # noqa: E402
from ttscale.net.pool import RequestRefused  # noqa: E402

PARAMS = SamplingParams(n=5, temperature=0.7, top_p=0.9, max_tokens=40, stop=("\n\n",), seed=11)


def sampling_on_the_wire(body: dict) -> dict:
    """One flavour-independent view of the sampling fields a request carried."""
    off_k = body["top_k"] in (0, -1)
    return {"temperature": body["temperature"], "top_p": body["top_p"],
            "top_k": None if off_k else body["top_k"], "min_p": body["min_p"],
            "repetition": body.get("repetition_penalty", body.get("repeat_penalty")),
            "presence": body["presence_penalty"], "frequency": body["frequency_penalty"],
            "seed": body.get("seed"), "max_tokens": body["max_tokens"], "stop": body["stop"]}


def test_n_above_llama_servers_slots_is_split_with_exact_tokens_per_choice():
    with fake_server("llama-server", slots=2) as (url, app):
        gen = OpenAIGenerator(url)
        out = gen.generate(["Question: 1+1?\n"], PARAMS)[0]
        assert gen.flavour == "llama-server" and gen.max_n == 2  # from /props, no refusal
        bodies = [b for path, b in app.state.bodies]
        assert all(path == "/completion" for path, _ in app.state.bodies)
        assert sorted(b["n_cmpl"] for b in bodies) == [1, 2, 2]
        assert sorted(b["seed"] for b in bodies) == sorted(sample_seed(11, i) for i in (0, 2, 4))
        assert len(out) == 5 and len({c.text for c in out}) > 1
        for c in out:  # the native route's per-choice counts (1 token per character here)
            assert c.generated_tokens == len(c.text) + (c.finish_reason == "stop")
            assert c.finish_reason in ("stop", "eos", "length")
            assert c.prompt_tokens == len("Question: 1+1?\n")
        assert [c.prompt_tokens_cached for c in out] == [3] + [c.prompt_tokens for c in out[1:]]
        gen.close()


def test_the_limit_on_n_is_learnt_from_the_servers_refusal_and_remembered():
    with fake_server("llama-server", slots=3, props=False) as (url, app):
        gen = OpenAIGenerator(url)
        assert len(gen.generate(["a\n"], PARAMS)[0]) == 5
        assert gen.max_n == 3 and gen.n_supported is True
        first = [b["n_cmpl"] for _, b in app.state.bodies]
        assert first[0] == 5 and sorted(first[1:]) == [2, 3]  # refused once, then split
        app.state.bodies.clear()
        gen.generate(["b\n"], PARAMS)
        assert sorted(b["n_cmpl"] for _, b in app.state.bodies) == [2, 3]  # no second refusal
        gen.close()


def test_the_same_recipe_sends_the_same_sampling_parameters_to_every_flavour():
    views = {}
    for flavour in ("vllm", "llama-server", "sglang"):
        with fake_server(flavour, slots=8) as (url, app):
            gen = OpenAIGenerator(url)
            gen.generate(["p\n"], SamplingParams(n=1, temperature=0.6, top_p=0.95, top_k=0,
                                                 max_tokens=30, stop=("\n\n",), seed=3))
            (path, body), = app.state.bodies
            print(flavour, path, body)
            views[flavour] = sampling_on_the_wire(body)
            if flavour == "llama-server":
                # only the named samplers, temperature first as in vLLM and transformers
                assert body["samplers"] == ["penalties", "temperature", "top_k", "top_p", "min_p"]
                assert body["top_k"] == 0 and body["repeat_penalty"] == 1.0
            else:
                assert body["top_k"] == -1 and body["repetition_penalty"] == 1.0
            gen.close()
    assert views["vllm"] == views["llama-server"] == views["sglang"]
    assert views["vllm"]["min_p"] == 0.0 and views["vllm"]["presence"] == 0.0


def test_each_prompt_of_a_call_gets_its_own_seed():
    with fake_server("vllm") as (url, app):
        gen = OpenAIGenerator(url)
        out = gen.generate(["same\n", "same\n", "same\n"], SamplingParams(n=2, seed=5))
        seeds = [b["seed"] for _, b in app.state.bodies]
        assert sorted(seeds) == sorted(prompt_seed(5, j) for j in range(3))
        assert prompt_seed(5, 0) == 5
        texts = [tuple(c.text for c in row) for row in out]
        assert len(set(texts)) == 3, "identical prompts of one round must not share samples"
        assert gen.generate(["same\n", "same\n", "same\n"], SamplingParams(n=2, seed=5)) == out
        gen.close()


def test_sglang_seeded_samples_are_requested_one_by_one_and_matched_stop_is_read():
    with fake_server("sglang") as (url, app):
        gen = OpenAIGenerator(url)
        out = gen.generate(["q\n"], PARAMS)[0]
        bodies = [b for _, b in app.state.bodies]
        assert [b["n"] for b in bodies] == [1] * 5
        assert len({b["seed"] for b in bodies}) == 5
        assert len({c.text for c in out}) > 1, "SGLang's one seed would repeat one sample"
        gen.close()
    data = {"choices": [
        {"index": 0, "text": "a", "finish_reason": "stop", "matched_stop": "\n\n"},
        {"index": 1, "text": "b", "finish_reason": "stop", "matched_stop": 151645},
        {"index": 2, "text": "c", "finish_reason": "length", "matched_stop": None}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 6}}
    reasons = [s.completion.finish_reason for s in parse_completion(data, True, "srv")]
    assert reasons == ["stop", "eos", "length"]


@pytest.mark.parametrize("flavour", ["vllm", "llama-server"])
def test_top_k_log_probabilities_are_asked_for_and_parsed(flavour):
    with fake_server(flavour, slots=4) as (url, app):
        gen = OpenAIGenerator(url)
        out = gen.generate(["x\n"], SamplingParams(n=2, max_tokens=30, seed=1, logprobs=3))[0]
        body = app.state.bodies[0][1]
        assert body.get("n_probs" if flavour == "llama-server" else "logprobs") == 3
        for c in out:
            assert c.token_logprobs is not None and len(c.token_logprobs) == len(c.text)
            assert all(len(top) == 3 and top == sorted(top, reverse=True)
                       for top in c.top_logprobs)
        plain = gen.generate(["x\n"], SamplingParams(n=1, max_tokens=30, seed=1))[0][0]
        assert plain.token_logprobs is None and plain.top_logprobs is None
        gen.close()


@pytest.mark.parametrize("flavour", ["vllm", "llama-server"])
def test_max_tokens_is_capped_to_the_context_and_an_overflow_is_a_problem_error(flavour):
    with fake_server(flavour, n_ctx=60) as (url, app):
        gen = OpenAIGenerator(url)
        prompt = "p" * 50
        out = gen.generate([prompt], SamplingParams(n=1, max_tokens=40, seed=2))[0][0]
        assert gen.context_length == 60
        assert app.state.bodies[-1][1]["max_tokens"] == 10
        assert out.generated_tokens <= 10
        with pytest.raises(ProblemError, match="does not fit the context of 60"):
            gen.generate(["p" * 70], SamplingParams(n=1, max_tokens=5, seed=2))
        gen.close()


def test_a_refused_request_is_a_problem_error_not_an_engine_fault():
    with fake_server("vllm", n_ctx=60) as (url, _):
        gen = OpenAIGenerator(url, context_length=1000)  # wrong on purpose: no cap, server says no
        with pytest.raises(RequestRefused, match="maximum context length") as info:
            gen.generate(["p" * 50], SamplingParams(n=1, max_tokens=40))
        assert isinstance(info.value, ProblemError)
        gen.close()


def test_beam_search_stops_a_beam_where_the_context_is_full_instead_of_failing(tmp_path):
    import json

    from ttscale.strategies import SearchContext, get_strategy
    from ttscale.tasks.jsonl import JsonlTask
    from ttscale.verifiers.base import StepScores

    class Flat:
        num_parameters = 1

        def score(self, prompts, solutions):
            return StepScores([[0.5] * len(s) for s in solutions], 0)

    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"question": "What is 2+2?", "answer": "#### 4", "id": "q"})
                    + "\n")
    task = JsonlTask(path, prompt_template="Q: {question}\nA:")
    with fake_server("vllm", n_ctx=120, ends="word") as (url, _):
        gen = OpenAIGenerator(url)
        ctx = SearchContext(task=task, generator=gen, scorer=Flat(), seed=0, temperature=1.0,
                            max_step_tokens=16, max_rounds=40, options={"beam_width": 2})
        problem = next(iter(task.problems()))
        result = get_strategy("beam")(problem, 4, ctx)  # no ProblemError: beams stop in time
        reasons = {c.meta["finish_reason"] for c in result.candidates}
        assert "context" in reasons, reasons
        assert len(result.trace) < 40
        gen.close()


def test_the_parameter_count_comes_from_the_server_or_is_warned_about(caplog):
    with fake_server("llama-server") as (url, _):
        gen = OpenAIGenerator(url)
        gen.generate(["x\n"], SamplingParams(max_tokens=4, seed=0))
        assert gen.num_parameters == 134515008  # llama-server's meta.n_params
        gen.close()
    from ttscale.net import discovery

    discovery._warned_sizes.clear()  # warned once per process: earlier tests served "fake" too
    with fake_server("vllm") as (url, _), caplog.at_level("WARNING", logger="ttscale"):
        gen = OpenAIGenerator(url)  # served as "fake": no size in the name, none reported
        gen.generate(["x\n"], SamplingParams(max_tokens=4, seed=0))
        assert gen.num_parameters == 0
        assert "'fake' is unknown" in caplog.text and "policy_params" in caplog.text
        gen.close()


@pytest.mark.parametrize("message,limit", [
    ("Field 'n': Value must be between 1 <= value <= 4, but got 8", 4),  # llama-server
    ("Field 'n_cmpl': Value must be between 1 <= value <= 2, but got 5", 2),
    ("n=8 exceeds this server's limit of 4", 4),  # ttscale serve-policy
    ("This model's maximum context length is 4096 tokens. However, you requested 5000 tokens "
     "(4000 in the messages, 1000 in the completion).", None),  # vLLM: not about n
    ("the request exceeds the available context size, try increasing it", None),
])
def test_only_a_refusal_of_n_teaches_the_limit(message, limit):
    from ttscale.engines.openai_wire import n_limit
    from ttscale.net.pool import RequestRefused

    assert n_limit(RequestRefused(message, 400, message), 8) == limit
