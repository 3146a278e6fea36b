"""The strategies on a real engine ttscale did not write: llama.cpp's OpenAI-compatible server
(``llama-cpp-python[server]``) with SmolLM2-135M-Instruct (a GGUF shipped in a PyPI package).

Skipped, with the reason, where the server is not installed (it compiles for ~10 minutes: see
``scripts/install_llamacpp.sh``); CI installs it and runs these (``pytest -m llamacpp``).
SmolLM2-135M cannot do arithmetic: these tests check the protocol, costs and determinism, not
accuracy.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from ttscale.serve.llamacpp import CHATML_MATH_TEMPLATE, available

pytestmark = [pytest.mark.llamacpp,
              pytest.mark.skipif(available() is not None, reason=str(available()))]

STRATEGIES = ["majority", "best-of-n", "weighted-best-of-n", "beam", "lookahead", "dvts",
              "revisions", "combined"]
#: one problem: every strategy runs on it twice (clean, then through the faulty relay), and the
#: llama.cpp server evaluates one token at a time here (n_batch=1), so each token counts
PROBLEMS = [
    {"question": "Tom has 3 boxes with 4 apples each. He eats 2 apples. How many are left?",
     "answer": "Tom has 3 * 4 = 12 apples. 12 - 2 = 10 are left.\n#### 10", "id": "apples"},
]


@pytest.fixture(scope="module")
def llama_url():
    from ttscale.serve.llamacpp import llamacpp_server

    # n_batch=1: identical requests give identical samples whatever came before (see
    # llamacpp_server), so a run whose requests were retried can be compared token for token
    with llamacpp_server(n_ctx=2048, threads=2, n_batch=1) as url:
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


def test_engine_falls_back_to_one_request_per_sample_and_is_deterministic(llama_url):
    from ttscale.engines.base import SamplingParams
    from ttscale.engines.openai import OpenAIGenerator

    gen = OpenAIGenerator(llama_url)
    params = SamplingParams(n=3, temperature=0.9, max_tokens=24, stop=("\n\n",), seed=4)
    prompt = CHATML_MATH_TEMPLATE.replace("{question}", PROBLEMS[0]["question"])
    first = gen.generate([prompt], params)[0]
    assert gen.n_supported is False
    assert len(first) == 3 and len({c.text for c in first}) > 1
    assert all("\n\n" not in c.text for c in first)
    assert all(c.prompt_tokens > 0 and c.generated_tokens > 0 for c in first)
    again = gen.generate([prompt], params)[0]
    assert [c.text for c in again] == [c.text for c in first]
    gen.close()


def run_all(task, policy_url, prm_url, **kw):
    from ttscale.engines.openai import OpenAIGenerator
    from ttscale.strategies import SearchContext, get_strategy, own_options
    from ttscale.verifiers.http_prm import HTTPPRM

    gen = OpenAIGenerator(policy_url, n_mode="single", **kw)
    scorer = HTTPPRM(prm_url, input_format="chat", **kw)
    out = {}
    for name in STRATEGIES:
        for problem in task.problems():
            ctx = SearchContext(task=task, generator=gen, scorer=scorer, seed=1,
                                temperature=0.8, max_step_tokens=16, max_solution_tokens=48,
                                max_rounds=3, options=own_options(name, {
                                    "beam_width": 2, "lookahead": 1, "chain_length": 2,
                                    "search_share": 0.5}))
            out[name, problem.id] = get_strategy(name)(problem, 4, ctx)
    gen.close()
    scorer.close()
    return out


def test_every_strategy_runs_through_llamacpp_with_costs_and_survives_faults(
        llama_url, prm, task):
    from ttscale.serve.faults import FaultyRelay

    clean = run_all(task, llama_url, prm.url)
    for (name, pid), r in clean.items():
        cost = r.cost
        print(f"{name:20s} {pid:7s} answer={r.answer!s:8s} gen={cost.generations} "
              f"prompt={cost.prompt_tokens} out={cost.generated_tokens} prm={cost.prm_tokens}")
        assert cost.generations == 4 and cost.generated_tokens > 0
        if name != "majority":
            assert cost.prm_tokens > 0
    root = llama_url.removesuffix("/v1")
    with FaultyRelay(root, fault_rate=0.2, seed=2) as relay:
        faulty = run_all(task, relay.url + "/v1", prm.url, retries=10, backoff_s=0.01,
                         backoff_max_s=0.05)
        print(f"relay in front of llama.cpp: {relay.faults} requests broken")
        assert relay.faults > 0
    for key, want in clean.items():
        got = faulty[key]
        assert got.answer == want.answer, key
        assert [asdict(c) for c in got.candidates] == [asdict(c) for c in want.candidates], key
