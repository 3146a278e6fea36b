"""Sequential revisions (``revisions``), beam search + revisions (``combined``), their prompt
formats and the flip analysis.

Unit tests run on the deterministic testbed fakes (tests/fakes.py): ``FakeReviser`` reads the
earlier attempts of a revision prompt and writes a new attempt, so every property here is about
the strategy: which attempts each prompt shows, how the budget is split, what is scored against
which prompt, what is counted and what is answered. The last tests run the strategies on a real
tiny random-init transformers model through ``HFGenerator``.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace

import pytest
from fakes import FakeGenerator, FakeReviser, FakeScorer, split_revision_prompt

from ttscale.analysis.revisions import (
    Transitions,
    flips_from_correctness,
    records_from_results,
    revision_flips,
)
from ttscale.engines.base import SamplingParams
from ttscale.strategies import STRATEGIES, SearchContext, get_strategy
from ttscale.strategies.common import majority_vote, weighted_vote
from ttscale.strategies.revision_prompts import (
    ChatRevisionFormat,
    TestbedRevisionFormat,
    revision_format,
)
from ttscale.strategies.revisions import Chain, hierarchical_majority, hierarchical_verifier
from ttscale.tasks import testbed
from ttscale.tasks.jsonl import JsonlTask
from ttscale.types import Candidate, Completion
from ttscale.verifiers.base import aggregate

TASK = testbed.TestbedTask(split="test", n=12, min_ops=3, max_ops=6)
PROBLEM = TASK.problems()[0]
FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures"


def make(accuracy: float = 0.5, gain: float = 0.0, garbage: float = 0.0, scorer: bool = True,
         reviser: bool = True, seed: int = 0, **options):
    gen = FakeGenerator(accuracy=0.6)
    rev = FakeReviser(accuracy=accuracy, gain=gain, garbage=garbage, num_parameters=3000) \
        if reviser else None
    sc = FakeScorer(noise=0.05) if scorer else None
    ctx = SearchContext(task=TASK, generator=gen, scorer=sc, seed=seed, options=options,
                        reviser=rev)
    return ctx, gen, rev, sc


def chains_of(result) -> list[list[dict]]:
    """The attempt nodes of each chain, in chain order."""
    return [entry["nodes"] for entry in result.trace if "chain" in entry]


def fingerprint(result) -> tuple:
    cost = result.cost.to_dict()
    cost.pop("wall_s")
    cost.pop("total_flops")
    return (result.answer, [asdict(c) for c in result.candidates], result.trace, cost)


# --------------------------------------------------------------------------------------------
# chains: what each revision sees


def test_each_revision_sees_the_last_w_attempts_of_its_chain_oldest_first():
    ctx, gen, rev, _ = make(garbage=0.2, revision_window=2, chain_length=5)
    result = get_strategy("revisions")(PROBLEM, 10, ctx)
    assert gen.calls == [], "the policy is not called when a revision model is set"
    assert len(rev.calls) == 5, "attempt k of all chains is one engine call"
    by_node = {c.meta["node"]: c for c in result.candidates}
    chains = chains_of(result)
    assert len(chains) == 2
    for nodes in chains:
        assert [n["attempt"] for n in nodes] == list(range(5))
        for k, node in enumerate(nodes):
            shown = [n["id"] for n in nodes[max(0, k - 2):k]]
            assert node["revises"] == shown
            prompt = TASK.revision_prompt(PROBLEM, [TASK.solution_text(by_node[i].steps)
                                                    for i in shown])
            assert prompt in rev.calls[k][0]
            # read back independently of revision_prompt: the P: lines, oldest first
            _, previous = split_revision_prompt(prompt)
            assert previous == [";".join(by_node[i].steps) for i in shown]
    # beyond the window the oldest attempts slid out: attempt 4 shows attempts 2 and 3 only
    assert chains[0][4]["revises"] == [chains[0][2]["id"], chains[0][3]["id"]]
    assert all(len(split_revision_prompt(p)[1]) == min(k, 2)
               for k, (prompts, _) in enumerate(rev.calls) for p in prompts)


def test_default_window_is_four_and_chains_are_independent():
    ctx, _, rev, _ = make(chain_length=6)
    result = get_strategy("revisions")(PROBLEM, 12, ctx)
    assert result.meta["revision_window"] == 4
    chains = chains_of(result)
    ids = [{n["id"] for n in nodes} for nodes in chains]
    for c, nodes in enumerate(chains):
        assert nodes[5]["revises"] == [n["id"] for n in nodes[1:5]]
        for node in nodes:
            assert set(node["revises"]) <= ids[c], "a chain never sees another chain's attempts"
    assert max(len(prev) for prev in rev.previous) == 4


def test_chains_with_the_same_history_get_different_samples():
    # a perfect reviser writes the same attempt everywhere: every call has one unique prompt,
    # sent once with n = number of chains, and each chain is dealt its own sample
    ctx, _, rev, _ = make(accuracy=1.0, chain_length=3)
    result = get_strategy("revisions")(PROBLEM, 12, ctx)
    for prompts, params in rev.calls:
        assert len(prompts) == 1 and params.n == 4
    assert rev.completions == 12
    assert result.cost.generations == 12
    assert result.answer == PROBLEM.answer


# --------------------------------------------------------------------------------------------
# budget and options


@pytest.mark.parametrize(("budget", "length"), [(8, 1), (8, 2), (8, 4), (8, 8), (6, 3),
                                                (12, 4), (5, 5)])
def test_budget_is_split_into_n_over_l_chains_of_l_attempts(budget, length):
    ctx, _, rev, _ = make(chain_length=length)
    result = get_strategy("revisions")(PROBLEM, budget, ctx)
    n_chains = budget // length
    assert (result.meta["n_chains"], result.meta["chain_length"]) == (n_chains, length)
    assert [len(c) for c in result.meta["chains"]] == [length] * n_chains
    assert [len(nodes) for nodes in chains_of(result)] == [length] * n_chains
    assert len(result.candidates) == budget
    assert result.cost.generations == budget
    assert len(rev.calls) == length
    first_prompts, first_params = rev.calls[0]
    assert first_prompts == [TASK.revision_prompt(PROBLEM, [])] and first_params.n == n_chains
    assert all(p.stop == () and p.max_tokens == ctx.max_solution_tokens for _, p in rev.calls)


@pytest.mark.parametrize(("budget", "window", "expected"), [(8, 4, 4), (6, 4, 3), (3, 4, 3),
                                                            (1, 4, 1), (10, 4, 2), (8, 8, 8),
                                                            (7, 4, 1)])
def test_default_chain_length_is_the_largest_divisor_within_the_window(budget, window, expected):
    ctx, _, _, _ = make(revision_window=window)
    result = get_strategy("revisions")(PROBLEM, budget, ctx)
    assert result.meta["chain_length"] == expected


@pytest.mark.parametrize(("budget", "options", "match"), [
    (8, {"chain_length": 3}, "multiple of chain_length"),
    (4, {"chain_length": 8}, "multiple of chain_length"),
    (8, {"chain_length": 0}, "chain_length"),
    (8, {"chain_length": "long"}, "chain_length"),
    (8, {"revision_window": 0}, "revision_window"),
    (8, {"selection": "best"}, "selection"),
    (8, {"aggregation": "max"}, "aggregation"),
    (8, {"revision_format": "xml"}, "revision_format"),
    (0, {}, "budget"),
])
def test_bad_options_are_value_errors_before_anything_is_generated(budget, options, match):
    ctx, gen, rev, _ = make(**options)
    with pytest.raises(ValueError, match=match):
        get_strategy("revisions")(PROBLEM, budget, ctx)
    assert rev.calls == [] and gen.calls == []


def test_verifier_selection_needs_a_verifier_majority_does_not():
    ctx, _, rev, _ = make(scorer=False)
    with pytest.raises(ValueError, match="revisions.*needs a verifier"):
        get_strategy("revisions")(PROBLEM, 8, ctx)
    assert rev.calls == []
    ctx, _, rev, _ = make(scorer=False, selection="majority")
    assert len(get_strategy("revisions")(PROBLEM, 8, ctx).candidates) == 8


def test_chain_length_one_without_a_reviser_is_plain_parallel_sampling():
    # no reviser: the policy writes the attempts; the testbed format's empty-history prompt is the
    # problem prompt and attempt 1 uses the "solutions" seed, so L=1 draws what majority draws
    ctx, gen, _, _ = make(reviser=False, chain_length=1, selection="majority")
    rev_result = get_strategy("revisions")(PROBLEM, 8, ctx)
    mctx, _, _, _ = make(reviser=False)
    maj = get_strategy("majority")(PROBLEM, 8, mctx)
    assert [(c.steps, c.answer) for c in rev_result.candidates] == \
        [(c.steps, c.answer) for c in maj.candidates]
    assert rev_result.answer == maj.answer
    assert rev_result.cost.generated_tokens == maj.cost.generated_tokens == gen.generated_tokens


# --------------------------------------------------------------------------------------------
# selection


def test_verifier_selection_scores_attempts_against_the_original_prompt():
    ctx, _, rev, sc = make(garbage=0.2, chain_length=4)
    result = get_strategy("revisions")(PROBLEM, 8, ctx)
    assert len(sc.calls) == 1, "all attempts are scored in one verifier call"
    assert set(sc.prompts) == {PROBLEM.prompt}, "never scored against a revision prompt"
    reference = FakeScorer(noise=0.05)
    for c in result.candidates:
        if c.steps:
            assert c.scores == reference.score([PROBLEM.prompt], [c.steps]).scores[0]
        else:
            assert c.scores == []
    per_chain = [[c for c in result.candidates if c.meta["chain"] == i] for i in range(2)]
    answer, winners, totals = hierarchical_verifier(per_chain, "last")
    assert (result.answer, result.meta["totals"]) == (answer, totals)
    assert result.meta["chain_winners"] == winners
    for nodes in chains_of(result):
        for node in nodes:
            assert node["kept"] == (node["answer"] is not None and node["answer"] == answer)
            assert node["score"] == (aggregate(node["scores"]) if node["scores"] else None)


def test_verifier_selection_uses_the_aggregation_option():
    ctx, _, _, _ = make(chain_length=2, aggregation="min")
    result = get_strategy("revisions")(PROBLEM, 8, ctx)
    assert result.meta["aggregation"] == "min"
    per_chain = [[c for c in result.candidates if c.meta["chain"] == i] for i in range(4)]
    assert result.answer == hierarchical_verifier(per_chain, "min")[0]


def scored(answer: str | None, score: float) -> Candidate:
    return Candidate(["x"], [score], True, answer)


def test_paper_verifier_selection_is_best_within_each_chain_then_across_chains():
    """Chain 0 has many middling "5"s, chain 1 one strong "7": flat weighted best-of-N sums
    the "5"s (2.0 > 0.9) and answers 5; the paper's hierarchical rule keeps one representative
    per chain (0.5 for "5", 0.9 for "7") and answers 7."""
    chains = [[scored("5", 0.5), scored("5", 0.5), scored("5", 0.5), scored("5", 0.5)],
              [scored("7", 0.9), scored("5", 0.1), scored(None, 1.0), scored("3", 0.2)]]
    assert weighted_vote([a for ch in chains for a in ch], "last")[0] == "5"
    answer, winners, totals = hierarchical_verifier(chains, "last")
    assert winners == ["5", "7"] and answer == "7"
    assert totals == {"5": 0.5, "7": 0.9}
    # a chain whose attempts state no answer has no winner and no vote
    assert hierarchical_verifier([[scored(None, 0.9)], [scored("2", 0.1)]], "last")[:2] == \
        ("2", [None, "2"])


@pytest.mark.parametrize(("selection", "rule"), [
    ("verifier", "hier-verifier"), ("verifier-flat", "flat-verifier"),
    ("majority", "flat-majority"), ("majority-hierarchical", "hier-majority")])
def test_each_named_selection_applies_its_rule(selection, rule):
    ctx, _, _, sc = make(chain_length=4, selection=selection, gain=0.05, garbage=0.1)
    result = get_strategy("revisions")(PROBLEM, 16, ctx)
    assert result.meta["selection"] == selection
    cands = result.candidates
    per_chain = [[c for c in cands if c.meta["chain"] == i] for i in range(4)]
    if rule == "hier-verifier":
        expected = hierarchical_verifier(per_chain, "last")[0]
    elif rule == "flat-verifier":
        expected = weighted_vote(cands, "last")[0]
    elif rule == "flat-majority":
        expected = majority_vote(cands)[0]
        assert sc.calls == []
    else:
        expected = hierarchical_majority([Chain(i, attempts=a)
                                          for i, a in enumerate(per_chain)])[0]
        assert sc.calls == []
    assert result.answer == expected


def chain(*answers: str | None) -> Chain:
    return Chain(0, attempts=[Candidate(answer=a) for a in answers])


def test_hierarchical_majority_votes_within_chains_then_across_winners():
    chains = [chain("1", "1", "2"), chain("2", "3", "4"), chain("3", "4", "2")]
    # flat majority over all nine attempts would say "2" (three votes)
    assert Counter(a.answer for ch in chains for a in ch.attempts).most_common(1)[0] == ("2", 3)
    answer, winners = hierarchical_majority(chains)
    assert winners == ["1", "2", "3"]  # ties within a chain go to the answer reached first
    assert answer == "1"
    # malformed attempts never vote; a chain of them has no winner and does not vote either
    answer, winners = hierarchical_majority([chain(None, None), chain(None, "7"), chain("8")])
    assert (answer, winners) == ("7", [None, "7", "8"])
    assert hierarchical_majority([chain(None)]) == (None, [None])


def test_hierarchical_majority_selection_never_calls_the_verifier():
    ctx, _, _, sc = make(chain_length=4, selection="majority-hierarchical", gain=0.1)
    result = get_strategy("revisions")(PROBLEM, 12, ctx)
    assert sc.calls == [] and result.cost.prm_tokens == 0
    for answers, winner in zip(result.meta["chains"], result.meta["chain_winners"], strict=True):
        counts = Counter(a for a in answers if a is not None)
        assert winner is None if not counts else counts[winner] == max(counts.values())
    winners = Counter(w for w in result.meta["chain_winners"] if w is not None)
    assert winners[result.answer] == max(winners.values())
    assert all(c.scores == [] for c in result.candidates)


# --------------------------------------------------------------------------------------------
# cost, determinism, malformed output


def test_cost_is_what_the_revision_model_and_the_verifier_reported():
    ctx, gen, rev, sc = make(garbage=0.1, chain_length=4)
    result = get_strategy("revisions")(PROBLEM, 16, ctx)
    cost = result.cost
    assert gen.calls == []
    assert cost.generations == 16
    assert cost.generated_tokens == rev.generated_tokens > 0
    assert cost.prompt_tokens == rev.prompt_tokens > 0
    assert cost.policy_flops == pytest.approx(
        2.0 * rev.num_parameters * (rev.prompt_tokens + rev.generated_tokens))
    assert cost.prm_tokens == sc.tokens > 0
    assert cost.prm_flops == pytest.approx(2.0 * sc.num_parameters * sc.tokens)
    assert sum(c.meta["generated_tokens"] for c in result.candidates) <= rev.generated_tokens
    assert result.meta["engine_s"] >= 0 and cost.wall_s > 0


def test_fresh_context_keeps_the_revision_model():
    ctx, _, rev, _ = make()
    assert ctx.fresh().reviser is rev
    assert SearchContext(task=TASK, generator=FakeGenerator()).reviser is None


def test_same_seed_same_result_other_seed_other_attempts():
    results = []
    for seed in (3, 3, 4):
        ctx, _, _, _ = make(garbage=0.1, chain_length=4, seed=seed)
        results.append(get_strategy("revisions")(PROBLEM, 8, ctx))
    assert fingerprint(results[0]) == fingerprint(results[1])
    assert [c.steps for c in results[0].candidates] != [c.steps for c in results[2].candidates]


def test_malformed_attempts_stay_in_their_chain_without_a_vote():
    ctx, _, rev, sc = make(garbage=0.5, chain_length=4)
    result = get_strategy("revisions")(PROBLEM, 16, ctx)
    assert [len(c) for c in result.meta["chains"]] == [4] * 4
    bad = [c for c in result.candidates if c.answer is None]
    assert bad, "this seed must produce malformed attempts"
    assert None not in result.meta["totals"]
    # a malformed attempt that is not last is shown to the next revision of its chain
    by_node = {c.meta["node"]: c for c in result.candidates}
    shown_bad = [n for nodes in chains_of(result) for n in nodes
                 if any(by_node[i].answer is None for i in n["revises"])]
    assert shown_bad
    for node in shown_bad:
        line = ";".join(by_node[node["revises"][-1]].steps)
        assert any(line in prev for prev in rev.previous)


def test_only_malformed_attempts_give_no_answer_without_crashing():
    for selection in ("verifier", "majority"):
        ctx, _, _, _ = make(garbage=1.0, chain_length=2, selection=selection)
        result = get_strategy("revisions")(PROBLEM, 8, ctx)
        assert result.answer is None
        assert all(a is None for ch in result.meta["chains"] for a in ch)
        assert len(result.candidates) == 8 and result.cost.generations == 8


# --------------------------------------------------------------------------------------------
# combined: beam search, then revisions of its best solutions


@pytest.mark.parametrize(("budget", "options", "split"), [
    (16, {}, (8, 8, 4, 2)),
    (16, {"search_share": 0.25}, (4, 12, 4, 3)),
    (16, {"search_share": "0.75", "chain_length": 2}, (12, 4, 2, 2)),
    (12, {"search_share": 0.5, "beam_width": 2}, (6, 6, 3, 2)),
    (8, {"search_share": 1.0}, (8, 0, 0, 0)),
])
def test_combined_splits_the_budget_between_beam_search_and_revisions(budget, options, split):
    ctx, gen, rev, sc = make(**options)
    result = get_strategy("combined")(PROBLEM, budget, ctx)
    n_beam, n_rev, length, n_chains = split
    meta = result.meta
    assert (meta["beam_budget"], meta["revision_budget"], meta["chain_length"],
            meta["n_chains"]) == split
    assert result.cost.generations == budget
    revised = [c for c in result.candidates if "chain" in c.meta]
    assert len(revised) == n_rev
    assert len(rev.calls) == length
    # the beam part is exactly the beam strategy at budget N_b
    bctx, _, _, _ = make(**{k: v for k, v in options.items() if k == "beam_width"})
    beam = get_strategy("beam")(PROBLEM, n_beam, bctx)
    assert result.trace[:len(beam.trace)] == beam.trace
    assert [asdict(c) for c in result.candidates[:len(beam.candidates)]] == \
        [asdict(c) for c in beam.candidates]
    assert meta["beam_answer"] == beam.answer
    if not n_rev:
        assert result.answer == beam.answer
    # all node ids are unique across the beam rounds and the chains
    ids = [n["id"] for entry in result.trace for n in entry["nodes"]]
    assert len(ids) == len(set(ids))


def test_combined_chains_revise_the_best_beam_solutions():
    ctx, _, rev, sc = make(accuracy=0.4, gain=0.1, search_share=0.5, chain_length=2)
    result = get_strategy("combined")(PROBLEM, 16, ctx)
    by_node = {c.meta["node"]: c for c in result.candidates}
    finished = [c for c in result.candidates if c.finished and "chain" not in c.meta]
    ranked = sorted(finished, key=lambda c: (c.answer is None, -aggregate(c.scores)))
    chains = [e for e in result.trace if "chain" in e]
    assert len(chains) == 4
    seeds = [by_node[e["seed"]] for e in chains]
    assert aggregate(seeds[0].scores) == aggregate(ranked[0].scores)
    distinct = {tuple(c.steps) for c in finished}
    assert len({tuple(s.steps) for s in seeds}) == min(4, len(distinct))
    for entry, seed in zip(chains, seeds, strict=True):
        first, second = entry["nodes"]
        assert first["revises"] == [entry["seed"]]
        assert second["revises"] == [entry["seed"], first["id"]]
        prompt = TASK.revision_prompt(PROBLEM, [TASK.solution_text(seed.steps)])
        assert prompt in rev.calls[0][0]
    assert [ch[0] for ch in result.meta["chains"]] == [s.answer for s in seeds]
    assert [len(ch) for ch in result.meta["chains"]] == [3] * 4
    # final pick: weighted best-of-N over the finished beam solutions and every revision
    pool = finished + [c for c in result.candidates if "chain" in c.meta]
    assert result.answer == weighted_vote(pool, "last")[0]
    assert set(sc.prompts) == {PROBLEM.prompt}


def test_combined_cost_counts_policy_revision_model_and_verifier():
    ctx, gen, rev, sc = make(search_share=0.5)
    result = get_strategy("combined")(PROBLEM, 16, ctx)
    cost = result.cost
    assert cost.generations == 16
    assert cost.generated_tokens == gen.generated_tokens + rev.generated_tokens
    assert cost.prompt_tokens == gen.prompt_tokens + rev.prompt_tokens
    assert gen.generated_tokens > 0 and rev.generated_tokens > 0
    assert cost.policy_flops == pytest.approx(
        2.0 * gen.num_parameters * (gen.prompt_tokens + gen.generated_tokens)
        + 2.0 * rev.num_parameters * (rev.prompt_tokens + rev.generated_tokens))
    assert cost.prm_tokens == sc.tokens
    assert result.meta["beam_cost"]["generations"] == 8


@pytest.mark.parametrize(("budget", "options", "match"), [
    (8, {"search_share": 0.1}, "multiple of beam_width"),
    (8, {"search_share": 0.75}, "multiple of beam_width"),
    (8, {"search_share": 0}, "search_share"),
    (8, {"search_share": 1.5}, "search_share"),
    (8, {"search_share": "half"}, "search_share"),
    (8, {"search_share": True}, "search_share"),
    (16, {"chain_length": 3}, "multiple of chain_length"),
])
def test_combined_bad_options_are_value_errors(budget, options, match):
    ctx, gen, rev, _ = make(**options)
    with pytest.raises(ValueError, match=match):
        get_strategy("combined")(PROBLEM, budget, ctx)
    assert gen.calls == [] and rev.calls == []


def test_combined_needs_a_verifier_and_is_deterministic():
    ctx, gen, _, _ = make(scorer=False)
    with pytest.raises(ValueError, match="needs a verifier"):
        get_strategy("combined")(PROBLEM, 8, ctx)
    assert gen.calls == []
    runs = [get_strategy("combined")(PROBLEM, 16, make(garbage=0.2, seed=5)[0]) for _ in (0, 1)]
    assert fingerprint(runs[0]) == fingerprint(runs[1])


def test_strategies_are_registered_and_declare_a_verifier():
    for name in ("revisions", "combined"):
        assert STRATEGIES[name] is get_strategy(name)
        assert get_strategy(name).needs_verifier is True


# --------------------------------------------------------------------------------------------
# prompt formats


def test_default_format_follows_the_task():
    assert isinstance(revision_format(TASK, {}), TestbedRevisionFormat)
    jsonl = JsonlTask(FIXTURES / "math500_style.jsonl")
    assert isinstance(revision_format(jsonl, {}), ChatRevisionFormat)
    assert isinstance(revision_format(TASK, {"revision_format": "chat"}), ChatRevisionFormat)
    with pytest.raises(ValueError, match="no revision_prompt"):
        revision_format(jsonl, {"revision_format": "testbed"})
    with pytest.raises(ValueError, match="revision_format='xml'"):
        revision_format(TASK, {"revision_format": "xml"})


def test_chat_prompt_lists_attempts_oldest_first_and_keeps_braces():
    problem = JsonlTask(FIXTURES / "math500_style.jsonl").problems()[0]
    fmt = ChatRevisionFormat()
    assert fmt.prompt(problem, []) == problem.prompt
    first = "Add them.\n\nSo $\\boxed{1}$ {question}"
    prompt = fmt.prompt(problem, [first, "Try again: \\boxed{\\frac{3}{4}}"])
    assert problem.question in prompt
    assert prompt.index("Attempt 1:\n" + first) < prompt.index("Attempt 2:\nTry again")
    assert "{question}" in prompt, "text from a model is never rescanned for placeholders"
    assert "\\boxed{}" in prompt and prompt.endswith("Corrected solution:\n\n")
    custom = ChatRevisionFormat(template="Q={question}|{attempts}|fix it, \\boxed{} at the end",
                                attempt_template="[{index}] {solution}",
                                first_template="Solve {question}")
    assert custom.prompt(problem, []) == f"Solve {problem.question}"
    assert custom.prompt(problem, ["a", "b"]) == \
        f"Q={problem.question}|[1] a\n\n[2] b|fix it, \\boxed{{}} at the end"


@pytest.mark.parametrize(("options", "match"), [
    ({"revision_template": "{question} only"}, "revision_template must contain {attempts}"),
    ({"revision_template": 3}, "revision_template must be a string"),
    ({"revision_attempt_template": "Attempt {index}"}, "revision_attempt_template"),
    ({"revision_first_template": "no question"}, "revision_first_template"),
])
def test_bad_chat_templates_are_value_errors(options, match):
    with pytest.raises(ValueError, match=match):
        revision_format(TASK, {"revision_format": "chat", **options})


@dataclass
class ScriptedGenerator:
    """An instruction-model stand-in: answers any prompt with one of a few fixed texts, chosen
    by a seeded RNG (tokens = characters)."""

    texts: tuple[str, ...] = ("Add.\n\nSo \\boxed{3}.", "garbage without an answer",
                              "Recheck.\n\nHence \\boxed{\\frac{3}{4}}.")
    num_parameters: int = 10
    prompts: list[list[str]] = field(default_factory=list)

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Completion]]:
        self.prompts.append(list(prompts))
        out = []
        for prompt in prompts:
            comps = []
            for j in range(params.n):
                text = random.Random(f"{params.seed}|{prompt}|{j}").choice(self.texts)
                comps.append(Completion(text, "eos", len(prompt), len(text) + 1))
            out.append(comps)
        return out


def test_chat_format_runs_on_a_math_task():
    task = JsonlTask(FIXTURES / "math500_style.jsonl")
    problem = task.problems()[0]
    rev = ScriptedGenerator()
    ctx = SearchContext(task=task, generator=FakeGenerator(), reviser=rev,
                        options={"selection": "majority", "chain_length": 3})
    result = get_strategy("revisions")(problem, 6, ctx)
    assert result.meta["revision_format"] == "chat"
    assert rev.prompts[0] == [problem.prompt]
    by_node = {c.meta["node"]: c for c in result.candidates}
    for nodes in chains_of(result):
        last = nodes[2]
        prompt = ChatRevisionFormat().prompt(problem, [task.solution_text(by_node[i].steps)
                                                       .strip() for i in last["revises"]])
        assert prompt in rev.prompts[2]
        assert "Attempt 2:" in prompt
    answers = {a for ch in result.meta["chains"] for a in ch}
    assert answers <= {"3", "\\frac{3}{4}", None}
    assert result.answer in answers - {None}


# --------------------------------------------------------------------------------------------
# the flip analysis


def test_flips_are_counted_per_position():
    flips = flips_from_correctness([[True, False, True], [False, False, True], [True, True]])
    first, second = flips.by_position
    assert (first.correct_to_incorrect, first.correct_to_correct,
            first.incorrect_to_incorrect, first.incorrect_to_correct) == (1, 1, 1, 0)
    assert (first.correct_turned_incorrect, first.incorrect_turned_correct) == (0.5, 0.0)
    assert (second.incorrect_to_correct, second.n) == (2, 2)
    assert (second.correct_turned_incorrect, second.incorrect_turned_correct) == (None, 1.0)
    assert flips.overall.to_dict()["n"] == 5
    assert (flips.overall.correct_to_incorrect, flips.overall.incorrect_to_correct) == (1, 2)
    assert flips.accuracy_by_position == pytest.approx([2 / 3, 1 / 3, 1.0])
    assert flips.n_chains == 3
    assert Transitions().correct_turned_incorrect is None


def test_flips_grade_answers_and_count_missing_ones_as_incorrect():
    seen = []

    def exact(pairs):
        seen.append(pairs)
        return [p is not None and p == g for p, g in pairs]

    flips = revision_flips([([["5", "6", None], ["6", "5"]], "5"), ([["1", "2"]], "2")], exact)
    assert len(seen) == 1, "all answers graded in one call"
    assert [(t.correct_to_incorrect, t.incorrect_to_correct) for t in flips.by_position] == \
        [(1, 2), (0, 0)]
    assert flips.by_position[1].incorrect_to_incorrect == 1
    assert revision_flips([], exact).n_chains == 0


def test_default_grader_grades_testbed_answers():
    flips = revision_flips([([["17", "17", None, "07"]], "17")])
    assert [(t.correct_to_correct, t.correct_to_incorrect, t.incorrect_to_incorrect)
            for t in flips.by_position] == [(1, 0, 0), (0, 1, 0), (0, 0, 1)]


def test_flips_of_a_revisions_run_match_the_graded_attempts():
    problems = TASK.problems()[:4]
    results = []
    for p in problems:
        ctx, _, _, _ = make(accuracy=0.5, gain=0.15, garbage=0.1, chain_length=4)
        results.append(get_strategy("revisions")(p, 8, ctx))
    gold = {p.id: p.answer for p in problems}
    flips = revision_flips(records_from_results(results, gold))
    # the same counts straight from the candidates, grouped by chain
    direct = Counter()
    for r in results:
        by_chain: dict[int, list[bool]] = {}
        for c in r.candidates:
            by_chain.setdefault(c.meta["chain"], []).append(c.answer == gold[r.problem_id])
        for ok in by_chain.values():
            for a, b in zip(ok, ok[1:], strict=False):
                direct[(a, b)] += 1
    o = flips.overall
    assert (o.correct_to_correct, o.correct_to_incorrect, o.incorrect_to_correct,
            o.incorrect_to_incorrect) == (direct[(True, True)], direct[(True, False)],
                                          direct[(False, True)], direct[(False, False)])
    assert flips.n_chains == 8 and len(flips.by_position) == 3


def test_records_need_chains_and_gold():
    stored = SimpleNamespace(problem_id="p", meta={"chains": [["1", None]]}, gold="1")
    assert records_from_results([stored]) == [([["1", None]], "1")]
    with pytest.raises(ValueError, match="no meta\\['chains'\\]"):
        records_from_results([SimpleNamespace(problem_id="p", meta={"strategy": "beam"})], {})
    with pytest.raises(ValueError, match="no gold answer"):
        records_from_results([SimpleNamespace(problem_id="p", meta={"chains": []})], {})
    with pytest.raises(ValueError, match="chain 0 must be a list"):
        records_from_results([SimpleNamespace(problem_id="p", meta={"chains": [[1]]})],
                             {"p": "1"})


# --------------------------------------------------------------------------------------------
# a real tiny transformers model as the revision model


@dataclass
class Recording:
    """Wraps a real Generator to record its prompts and count its tokens (the engine itself is
    untouched)."""

    inner: object
    prompts: list[list[str]] = field(default_factory=list)
    tokens: int = 0

    @property
    def num_parameters(self) -> int:
        return self.inner.num_parameters

    def generate(self, prompts, params):
        self.prompts.append(list(prompts))
        out = self.inner.generate(prompts, params)
        self.tokens += sum(c.prompt_tokens - c.prompt_tokens_cached + c.generated_tokens
                           for comps in out for c in comps)
        return out


@pytest.fixture(scope="module")
def real_models():
    hf = pytest.importorskip("ttscale.engines.hf")
    from hf_tiny import tiny_policy

    policy = hf.HFGenerator(*tiny_policy(seed=0))
    reviser = hf.HFGenerator(*tiny_policy(seed=1))
    return policy, reviser


def real_ctx(real_models, **options):
    policy, reviser = real_models
    task = testbed.TestbedTask(split="test", n=2, min_ops=2, max_ops=3)
    ctx = SearchContext(task=task, generator=Recording(policy), reviser=Recording(reviser),
                        scorer=FakeScorer(noise=0.2), max_step_tokens=6, max_solution_tokens=20,
                        max_rounds=3, options={"revision_window": 2, **options})
    return task.problems()[0], ctx


@pytest.mark.parametrize(("name", "options"), [("revisions", {"chain_length": 3}),
                                               ("combined", {"beam_width": 2,
                                                             "chain_length": 2})])
def test_real_engine_runs_are_consistent_and_deterministic(real_models, name, options):
    problem, ctx = real_ctx(real_models, **options)
    result = get_strategy(name)(problem, 6 if name == "revisions" else 8, ctx)
    cost = result.cost
    assert cost.generations == (6 if name == "revisions" else 8)
    assert cost.policy_flops == pytest.approx(
        2.0 * ctx.generator.num_parameters * ctx.generator.tokens
        + 2.0 * ctx.reviser.num_parameters * ctx.reviser.tokens)
    assert ctx.reviser.tokens > 0
    if name == "revisions":
        assert ctx.generator.prompts == []
    ids = {0}
    for entry in result.trace:
        for node in entry["nodes"]:
            assert node["parent"] in ids
            ids.add(node["id"])
    for c in result.candidates:
        assert c.meta["node"] in ids
        assert c.meta.get("generated_tokens", 0) <= ctx.max_solution_tokens
    # every revision prompt is the testbed format over the chain's last two attempts
    by_node = {c.meta["node"]: c for c in result.candidates}
    for nodes in chains_of(result):
        for node in nodes:
            shown = [ctx.task.solution_text(by_node[i].steps) for i in node["revises"]]
            assert len(shown) <= 2
            prompt = ctx.task.revision_prompt(problem, shown)
            assert any(prompt in call for call in ctx.reviser.prompts)
    _, again_ctx = real_ctx(real_models, **options)
    again = get_strategy(name)(problem, 6 if name == "revisions" else 8, again_ctx)
    assert fingerprint(again)[:3] == fingerprint(result)[:3]


def test_traces_follow_the_node_convention_of_the_tree_view():
    tree = pytest.importorskip("ttscale.report.tree")
    for name in ("revisions", "combined"):
        ctx, _, _, _ = make(garbage=0.2, chain_length=2)
        result = get_strategy(name)(PROBLEM, 16, ctx)
        nodes = tree.build_tree(result.trace)
        for c in result.candidates:
            assert nodes[c.meta["node"]].path == c.steps


def test_identical_prompts_are_sampled_once_each_with_n_equal_to_their_multiplicity():
    """Prompts shown 3x, 3x and 1x: two calls (n=1 and n=3), 7 samples drawn, none wasted."""
    from ttscale.strategies.revisions import sample_prompts

    ctx, _, rev, _ = make()
    a, b, c = (TASK.revision_prompt(PROBLEM, [f"a:1{x}\n"]) for x in "123")
    prompts = [a, b, a, c, b, a, b]
    params = SamplingParams(temperature=1.0, max_tokens=64, seed=5)
    dealt = sample_prompts(ctx, prompts, params)
    assert len(dealt) == 7
    assert sorted(p.n for _, p in rev.calls) == [1, 3]
    assert sum(len(ps) * p.n for ps, p in rev.calls) == 7
    assert len({id(d) for d in dealt}) == 7  # every copy got its own sample


def test_revision_verifier_reads_each_attempt_under_its_own_revision_prompt():
    """``verifier_prompt="revision"``: an ORM trained with the earlier attempts in context is
    asked about each attempt under exactly the prompt the revision model wrote it under."""
    from ttscale.verifiers.base import StepScores

    class RecordingScorer:
        num_parameters = 10

        def __init__(self):
            self.seen = []

        def score(self, prompts, solutions):
            self.seen.extend(zip(prompts, [tuple(s) for s in solutions], strict=True))
            return StepScores([[0.5] * len(s) for s in solutions], 1)

    sc = RecordingScorer()
    ctx, _, rev, _ = make(chain_length=4, verifier_prompt="revision")
    ctx.scorer = sc
    result = get_strategy("revisions")(PROBLEM, 8, ctx)
    assert result.meta["verifier_prompt"] == "revision"
    written = {p for prompts, _ in rev.calls for p in prompts}
    assert {p for p, _ in sc.seen} <= written, "only prompts the reviser was given"
    assert any(p.startswith("P:") for p, _ in sc.seen), "later attempts carry their history"
    assert any(p == PROBLEM.prompt for p, _ in sc.seen), "a first attempt has no history"
    assert len(sc.seen) == len(set(sc.seen)), "each (prompt, attempt) pair scored once"
    with pytest.raises(ValueError, match="verifier_prompt"):
        bad, _, _, _ = make(verifier_prompt="gold")
        get_strategy("revisions")(PROBLEM, 8, bad)
