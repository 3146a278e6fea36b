"""The search strategies on a real (tiny, random-init) transformers policy.

A random model writes messy text: steps cut by ``max_step_tokens``, empty steps, early ``eos``,
no answer at all. The strategies must stay consistent on it (budget, cost, trace, candidates,
determinism) without anything fake on the engine side. The verifier is the testbed fake: the
real PRM is another layer, tested on its own.
"""

from __future__ import annotations

from dataclasses import asdict

import pytest
from fakes import FakeScorer

from ttscale.strategies import SearchContext, get_strategy, own_options
from ttscale.tasks import testbed

hf = pytest.importorskip("ttscale.engines.hf")

TASK = testbed.TestbedTask(split="test", n=3, min_ops=2, max_ops=3)


@pytest.fixture(scope="module")
def generator():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from ttscale.testbed.tokenizer import build_tokenizer

    torch.set_num_threads(1)
    tok = build_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, tie_word_embeddings=True))
    return hf.HFGenerator(model, tok)


def run(name: str, generator, seed: int = 0):
    ctx = SearchContext(task=TASK, generator=generator, scorer=FakeScorer(noise=0.2), seed=seed,
                        max_step_tokens=6, max_solution_tokens=24, max_rounds=3,
                        options=own_options(name, {"beam_width": 2, "lookahead": 1}))
    return get_strategy(name)(TASK.problems()[0], 4, ctx)


@pytest.mark.parametrize("name", ["majority", "best-of-n", "weighted-best-of-n", "beam",
                                  "lookahead", "dvts"])
def test_strategy_on_a_real_engine_is_consistent_and_deterministic(name, generator):
    result = run(name, generator)
    cost = result.cost
    # the paper's accounting: lookahead with N beams and k-step rollouts (k=1) costs N x (k+1)
    assert cost.generations == (8 if name == "lookahead" else 4)
    assert cost.generated_tokens > 0 and cost.prompt_tokens > 0
    assert cost.policy_flops == pytest.approx(2.0 * generator.num_parameters * (
        cost.prompt_tokens - cost.prompt_tokens_cached + cost.generated_tokens))
    ids = {0}
    for rnd in result.trace:
        for node in rnd["nodes"]:
            assert node["parent"] in ids, "a node's parent appears before it"
            ids.add(node["id"])
    for c in result.candidates:
        assert c.meta["node"] in ids
        if name != "majority" and c.steps:
            assert len(c.scores) == len(c.steps)
    again = run(name, generator)
    assert (again.answer, [asdict(c) for c in again.candidates], again.trace) == \
        (result.answer, [asdict(c) for c in result.candidates], result.trace)
