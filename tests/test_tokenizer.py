"""The testbed's character-level tokenizer."""

from __future__ import annotations

from transformers import AutoTokenizer

from ttscale.tasks import testbed
from ttscale.testbed.tokenizer import CHARS, SPECIALS, build_tokenizer

SAMPLE = "Q:72a-5b-6c*5d*4e-3\na:72-5=67\nb:67-6=61\n\nA:17\nP:a:72-5=67;A:17\n"


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def test_every_char_is_one_known_token_and_round_trips():
    tok = build_tokenizer()
    seen = set()
    for ch in CHARS:
        ids = _ids(tok, ch)
        assert len(ids) == 1 and ids[0] != tok.unk_token_id, repr(ch)
        assert tok.convert_ids_to_tokens(ids) == [ch]
        assert tok.decode(ids) == ch
        seen.add(ids[0])
    assert len(seen) == len(CHARS)
    assert len(tok) == len(SPECIALS) + len(CHARS)


def test_testbed_text_round_trips_one_token_per_char():
    tok = build_tokenizer()
    for text in (SAMPLE, "".join(CHARS), "".join(reversed(CHARS))):
        ids = _ids(tok, text)
        assert len(ids) == len(text)
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == text
    for p in testbed.TestbedTask("dev", n=20).problems():
        text = p.prompt + "".join(s + "\n" for s in testbed.parse_question(p.question).gold_steps())
        assert tok.decode(_ids(tok, text)) == text


def test_double_newline_is_two_newline_tokens():
    tok = build_tokenizer()
    nl = tok.convert_tokens_to_ids("\n")
    assert nl != tok.unk_token_id
    assert _ids(tok, "\n\n") == [nl, nl]
    assert _ids(tok, "A:17\n\n\n") == _ids(tok, "A:17") + [nl] * 3


def test_unknown_chars_become_unk_one_per_char():
    tok = build_tokenizer()
    assert _ids(tok, "1 x") == [_ids(tok, "1")[0], tok.unk_token_id, tok.unk_token_id]


def test_special_tokens_and_no_implicit_bos():
    tok = build_tokenizer()
    assert (tok.pad_token, tok.bos_token, tok.eos_token, tok.unk_token) == tuple(SPECIALS)
    assert len({tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id}) == 4
    # callers add BOS themselves (SFT, PRM encoding); the tokenizer must not add another
    assert tok("A:17")["input_ids"] == _ids(tok, "A:17")
    assert tok.decode([tok.bos_token_id, *_ids(tok, "A:17"), tok.eos_token_id],
                      skip_special_tokens=True) == "A:17"


def test_save_load_with_auto_tokenizer_gives_same_ids(tmp_path):
    tok = build_tokenizer()
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.get_vocab() == tok.get_vocab()
    for text in (SAMPLE, "\n\n", "".join(CHARS), "1 x"):
        assert _ids(loaded, text) == _ids(tok, text)
        assert loaded(text)["input_ids"] == tok(text)["input_ids"]
        assert loaded.decode(_ids(loaded, text)) == tok.decode(_ids(tok, text))
    for attr in ("pad_token_id", "bos_token_id", "eos_token_id", "unk_token_id"):
        assert getattr(loaded, attr) == getattr(tok, attr)
    batch = loaded(["A:1", "a:10+5=15\n"], add_special_tokens=False, padding=True)
    assert batch["input_ids"][0][-1] == tok.pad_token_id
