"""Fault test: every strategy through real HTTP servers with a relay in front of each that breaks
20% of the requests (connection resets, 503s, answers lost after the server computed them).

The run must complete, lose no sample, and give exactly the answers, candidates, search trees
and token counts of the same run without faults (same seeds).
"""

from __future__ import annotations

from dataclasses import asdict

import pytest
from serve_helpers import hf_policy, policy_server, prm_server, token_prm

from ttscale.engines.openai import OpenAIGenerator
from ttscale.strategies import SearchContext, get_strategy, own_options
from ttscale.tasks import testbed
from ttscale.testing.faults import FaultyRelay
from ttscale.verifiers.http_prm import HTTPPRM

# six problems: enough requests (~70) that the relay's share of broken ones sits near its 20%
TASK = testbed.TestbedTask(split="test", n=6, min_ops=2, max_ops=3)
STRATEGIES = ["majority", "best-of-n", "weighted-best-of-n", "beam", "lookahead", "dvts"]
FAST = {"retries": 10, "backoff_s": 0.005, "backoff_max_s": 0.02}
TOKEN_KEYS = ("generations", "prompt_tokens", "prompt_tokens_cached", "generated_tokens",
              "prm_tokens", "policy_flops", "prm_flops")


@pytest.fixture(scope="module")
def servers():
    with policy_server(hf_policy()) as pol, prm_server(token_prm()) as prm:
        yield pol, prm


def solve_all(policy_url: str, prm_url: str, **client_kw):
    gen = OpenAIGenerator(policy_url + "/v1", **client_kw)
    scorer = HTTPPRM.for_kind(prm_url, "token-classification", "\n", **client_kw)
    out = {}
    try:
        for name in STRATEGIES:
            for problem in TASK.problems():
                ctx = SearchContext(task=TASK, generator=gen, scorer=scorer, seed=3,
                                    max_step_tokens=6, max_solution_tokens=24, max_rounds=3,
                                    options=own_options(name, {"beam_width": 2, "lookahead": 1}))
                out[name, problem.id] = get_strategy(name)(problem, 4, ctx)
    finally:
        gen.close()
        scorer.close()
    return out


def test_twenty_percent_faults_change_nothing_but_the_retries(servers):
    pol, prm = servers
    clean = solve_all(pol.url, prm.url)
    with FaultyRelay(pol.url, fault_rate=0.2, seed=7) as bad_pol, \
            FaultyRelay(prm.url, fault_rate=0.2, seed=8) as bad_prm:
        faulty = solve_all(bad_pol.url, bad_prm.url, **FAST)
        stats = [dict(bad_pol.stats), dict(bad_prm.stats)]
    for s in stats:
        assert s["requests"] > 20
        # about one in five requests broke, of every kind: within 3 standard deviations of a
        # binomial share of 0.2 over this many requests (the relay draws each fault at random)
        share = sum(s.get(k, 0) for k in ("reset", "503", "lost")) / s["requests"]
        assert abs(share - 0.2) < 3 * (0.2 * 0.8 / s["requests"]) ** 0.5, s
    assert all(stats[0].get(k, 0) > 0 for k in ("reset", "503", "lost")), stats
    samples = sum(len(r.candidates) for r in faulty.values())
    print(f"\nfault relay stats: policy {stats[0]}, PRM {stats[1]}; {len(faulty)} runs, "
          f"{samples} candidates, all equal to the fault-free run")
    assert clean.keys() == faulty.keys()
    for key, want in clean.items():
        got = faulty[key]
        assert got.answer == want.answer, key
        assert [asdict(c) for c in got.candidates] == [asdict(c) for c in want.candidates], key
        assert got.trace == want.trace, key
        assert len(got.candidates) == len(want.candidates), key  # 0 samples lost
        for k in TOKEN_KEYS:
            assert getattr(got.cost, k) == getattr(want.cost, k), (key, k)
