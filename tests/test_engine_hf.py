"""The in-process transformers engine on real tiny random-init models (no fakes)."""

from __future__ import annotations

import pytest
import torch
from hf_tiny import bpe_tokenizer, tiny_policy

from ttscale.engines.base import Generator, SamplingParams
from ttscale.engines.hf import HFGenerator
from ttscale.tasks import testbed

TASK = testbed.TestbedTask(split="test", n=6, min_ops=2, max_ops=8)
PROMPTS = [p.prompt for p in TASK.problems()]


def greedy(max_tokens: int = 16, **kw) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_tokens=max_tokens, **kw)


@pytest.fixture(scope="module")
def gen(tiny_policy_dir) -> HFGenerator:
    return HFGenerator.from_pretrained(tiny_policy_dir)


def n_prompt_tokens(gen: HFGenerator, prompt: str) -> int:
    return 1 + len(gen.tokenizer(prompt, add_special_tokens=False)["input_ids"])


def decode(gen: HFGenerator, ids: list[int]) -> str:
    return gen.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


# -- loading --

def test_loads_from_a_model_dir_and_fits_the_generator_protocol(gen, tiny_policy_dir):
    assert isinstance(gen, Generator)
    model, _ = tiny_policy()
    assert gen.num_parameters == sum(p.numel() for p in model.parameters())
    assert gen.bos_id == gen.tokenizer.bos_token_id
    assert (tiny_policy_dir / "config.json").is_file()


def test_bad_paths_fail_with_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        HFGenerator.from_pretrained(tmp_path / "nope")
    with pytest.raises(ValueError, match="config.json"):
        HFGenerator.from_pretrained(tmp_path)
    (tmp_path / "weights.bin").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        HFGenerator.from_pretrained(tmp_path / "weights.bin")


def test_bad_params_and_prompts_fail_naming_the_field(gen):
    for bad, field in [(SamplingParams(n=0), "n"), (SamplingParams(max_tokens=0), "max_tokens"),
                       (SamplingParams(temperature=-1), "temperature"),
                       (SamplingParams(top_p=0), "top_p"), (SamplingParams(top_p=1.5), "top_p"),
                       (SamplingParams(stop="\n"), "stop"), (SamplingParams(stop=("",)), "stop")]:
        with pytest.raises(ValueError, match=field):
            gen.generate(PROMPTS[:1], bad)
    with pytest.raises(ValueError, match="list of strings"):
        gen.generate(PROMPTS[0], greedy())
    with pytest.raises(ValueError, match="context"):
        gen.generate(["Q:" + "1" * 300], greedy())
    assert gen.generate([], greedy()) == []


# -- counting: n expansion, prompt tokens, cached prefill --

def test_n_samples_per_prompt_in_order_with_cached_prefill_accounting(gen):
    prompts = [PROMPTS[0], PROMPTS[1], PROMPTS[0]]
    out = gen.sample(prompts, SamplingParams(n=3, max_tokens=12, seed=5))
    assert [len(row) for row in out] == [3, 3, 3]
    for p, row in zip(prompts, out, strict=True):
        for s in row:
            assert s.prompt_tokens == n_prompt_tokens(gen, p)
            assert s.finish_reason in ("eos", "length", "stop")
            assert 1 <= len(s.token_ids) <= 12
    # each distinct prompt is prefilled once: its first sample pays, all others reuse the cache
    assert [s.prompt_tokens_cached for s in out[0]] == [0] + [out[0][0].prompt_tokens] * 2
    assert [s.prompt_tokens_cached for s in out[1]] == [0] + [out[1][0].prompt_tokens] * 2
    assert [s.prompt_tokens_cached for s in out[2]] == [out[2][0].prompt_tokens] * 3
    comps = gen.generate(prompts, SamplingParams(n=3, max_tokens=12, seed=5))
    assert [[c.generated_tokens for c in row] for row in comps] == \
        [[len(s.token_ids) for s in row] for row in out]


def test_micro_batches_prefill_again_and_say_so(tiny_policy_dir):
    small = HFGenerator.from_pretrained(tiny_policy_dir, max_batch=2)
    big = HFGenerator.from_pretrained(tiny_policy_dir)
    params = greedy(10, n=3)
    a, b = small.sample(PROMPTS[:1], params)[0], big.sample(PROMPTS[:1], params)[0]
    n = a[0].prompt_tokens
    assert [s.prompt_tokens_cached for s in a] == [0, n, 0]  # rows [0, 1] and [2]
    assert [s.prompt_tokens_cached for s in b] == [0, n, n]
    assert [s.token_ids for s in a] == [s.token_ids for s in b]
    many = small.sample(PROMPTS, greedy(10))
    assert [r[0].token_ids for r in many] == [r[0].token_ids for r in big.sample(PROMPTS,
                                                                                 greedy(10))]


# -- sampling: seeds, temperature, top_p --

def test_same_seed_same_samples_other_seed_other_samples(gen):
    p = SamplingParams(n=4, max_tokens=16, seed=11)

    def ids(params):
        return [[s.token_ids for s in row] for row in gen.sample(PROMPTS[:3], params)]

    first = ids(p)
    assert ids(p) == first
    assert ids(SamplingParams(n=4, max_tokens=16, seed=12)) != first
    unseeded = SamplingParams(n=4, max_tokens=16)
    assert ids(unseeded) != ids(unseeded)


def test_greedy_ignores_seed_and_tiny_top_p_is_greedy(gen):
    ref = [r[0].token_ids for r in gen.sample(PROMPTS, greedy(16, seed=1))]
    assert [r[0].token_ids for r in gen.sample(PROMPTS, greedy(16, seed=2))] == ref
    nucleus = SamplingParams(temperature=1.0, top_p=1e-9, max_tokens=16, seed=3)
    assert [r[0].token_ids for r in gen.sample(PROMPTS, nucleus)] == ref


# -- equivalence with transformers --

def test_greedy_matches_model_generate(gen):
    ours = gen.sample(PROMPTS, greedy(20))
    for prompt, row in zip(PROMPTS, ours, strict=True):
        ids = torch.tensor([[gen.bos_id] + gen.tokenizer(prompt, add_special_tokens=False)
                            ["input_ids"]])
        with torch.inference_mode():
            out = gen.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                     max_new_tokens=20, eos_token_id=gen.eos_ids,
                                     pad_token_id=gen.pad_id)
        theirs = out[0, ids.shape[1]:].tolist()
        if row[0].finish_reason == "eos":
            theirs = theirs[:len(row[0].token_ids)]
        assert row[0].token_ids == theirs


@pytest.mark.parametrize("fast_attention", [None, False])
def test_left_padding_changes_nothing_down_to_the_logits(tiny_policy_dir, fast_attention):
    gen = HFGenerator.from_pretrained(tiny_policy_dir, fast_attention=fast_attention)
    short = min(PROMPTS, key=len)
    longer = sorted(PROMPTS, key=len)[-2:]
    alone = gen.sample([short], greedy(20), return_logits=True)[0][0]
    batched = gen.sample([longer[0], short, longer[1]], greedy(20, n=2),
                         return_logits=True)[1]
    assert len(longer[1]) > len(short)
    for s in batched:
        assert s.token_ids == alone.token_ids
        torch.testing.assert_close(s.logits, alone.logits, rtol=1e-4, atol=2e-5)


def test_fast_attention_kernel_matches_the_model_attention(tiny_policy_dir):
    fast = HFGenerator.from_pretrained(tiny_policy_dir, fast_attention=True)
    plain = HFGenerator.from_pretrained(tiny_policy_dir, fast_attention=False)
    a = fast.sample(PROMPTS, greedy(20), return_logits=True)
    b = plain.sample(PROMPTS, greedy(20), return_logits=True)
    for ra, rb in zip(a, b, strict=True):
        assert ra[0].token_ids == rb[0].token_ids
        torch.testing.assert_close(ra[0].logits, rb[0].logits, rtol=1e-4, atol=1e-5)
    assert plain.model.config._attn_implementation == fast.model.config._attn_implementation


def test_dropping_finished_rows_changes_nothing(tiny_policy_dir):
    stops = ("a", "1", "=")  # rows stop at different steps
    always = HFGenerator.from_pretrained(tiny_policy_dir, compact_fraction=0.0)
    never = HFGenerator.from_pretrained(tiny_policy_dir, compact_fraction=1.0)
    a = always.sample(PROMPTS, greedy(20, stop=stops), return_logits=True)
    b = never.sample(PROMPTS, greedy(20, stop=stops), return_logits=True)
    assert len({len(r[0].token_ids) for r in a}) > 1
    for ra, rb in zip(a, b, strict=True):
        assert (ra[0].token_ids, ra[0].text) == (rb[0].token_ids, rb[0].text)
        torch.testing.assert_close(ra[0].logits, rb[0].logits, rtol=1e-5, atol=1e-5)


# -- stops, eos, length --

def expected_stop(gen: HFGenerator, ids: list[int], stops: tuple[str, ...]):
    """(text, generated tokens) of a run cut at the first stop string, derived from a run
    without stops: the fewest tokens whose text contains a stop, and the text before it."""
    for k in range(1, len(ids) + 1):
        text = decode(gen, ids[:k])
        hits = [text.find(s) for s in stops if s in text]
        if hits:
            return text[:min(hits)], k
    return None


def check_stops(gen: HFGenerator, prompts: list[str], pick_stop) -> int:
    ref = gen.sample(prompts, greedy(24))
    checked = 0
    for prompt, row in zip(prompts, ref, strict=True):
        stops = pick_stop(gen, row[0].token_ids)
        if not stops:
            continue
        want = expected_stop(gen, row[0].token_ids, stops)
        got = gen.sample([prompt], greedy(24, stop=stops))[0][0]
        if want is None:
            assert got.finish_reason != "stop"
            continue
        assert (got.text, len(got.token_ids), got.finish_reason) == (want[0], want[1], "stop")
        assert got.token_ids == row[0].token_ids[:want[1]]
        checked += 1
    return checked


def test_stop_strings_cut_the_text_and_count_the_stop_tokens(gen):
    def two_chars_inside(gen, ids):
        text = decode(gen, ids)
        return (text[6:8], text[3]) if len(text) > 8 else None

    def newline(gen, ids):
        return ("\n",)

    assert check_stops(gen, PROMPTS, two_chars_inside) >= 3
    check_stops(gen, PROMPTS, newline)


def test_stop_inside_a_multi_char_token_on_a_bpe_tokenizer():
    tok = bpe_tokenizer()
    model, _ = tiny_policy(tok, seed=3)
    gen = HFGenerator(model, tok)
    assert any(len(t) > 1 for t in tok.get_vocab())

    def tail_of_a_long_token(gen, ids):
        for i in ids[1:]:
            piece = decode(gen, [i])
            if len(piece) > 1:
                return (piece[1:],)
        return None

    assert check_stops(gen, PROMPTS, tail_of_a_long_token) >= 1


def test_eos_and_length_finish_reasons(gen):
    out = gen.sample(PROMPTS[:2], SamplingParams(n=24, max_tokens=40, seed=0))
    reasons = {s.finish_reason for row in out for s in row}
    assert reasons == {"eos", "length"}
    for s in (s for row in out for s in row):
        eos_at = [j for j, t in enumerate(s.token_ids) if t in gen.eos_ids]
        if s.finish_reason == "eos":
            assert eos_at == [len(s.token_ids) - 1]
            assert s.text == decode(gen, s.token_ids[:-1])
        else:
            assert eos_at == [] and len(s.token_ids) == 40
            assert s.text == decode(gen, s.token_ids)


def test_the_context_window_caps_generation(gen):
    room = gen.max_len - n_prompt_tokens(gen, "Q:" + "1" * 240)
    got = gen.generate(["Q:" + "1" * 240], SamplingParams(max_tokens=100, seed=0))[0][0]
    assert got.generated_tokens <= room
    assert got.finish_reason in ("eos", "length")


def test_without_eos_ids_every_row_runs_to_max_tokens(tiny_policy_dir):
    gen = HFGenerator.from_pretrained(tiny_policy_dir, eos_token_ids=[])
    out = gen.sample(PROMPTS[:2], SamplingParams(n=24, max_tokens=40, seed=0))
    assert {(s.finish_reason, len(s.token_ids)) for row in out for s in row} == {("length", 40)}


def test_an_empty_prompt_needs_a_bos_token(tiny_policy_dir):
    gen = HFGenerator.from_pretrained(tiny_policy_dir, add_bos=False)
    with pytest.raises(ValueError, match="empty prompt"):
        gen.generate([""], greedy())
    assert gen.generate(["Q:1"], greedy())[0][0].prompt_tokens == 3
