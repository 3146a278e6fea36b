"""Builders of tiny, random-init transformers models and tokenizers for tests (no hub access).

Real models of a few thousand parameters: what the engine and the verifiers are tested against.
Kept out of conftest.py so the fixtures there stay one-liners.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from ttscale.tasks import testbed
from ttscale.testbed.tokenizer import build_tokenizer

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]


def llama_config(tok, **kw):
    from transformers import LlamaConfig

    base = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id)
    base.update(kw)
    return LlamaConfig(**base)


def tiny_policy(tok=None, seed: int = 0, **kw):
    """A random-init LlamaForCausalLM (grouped-query attention) and its tokenizer."""
    from transformers import LlamaForCausalLM

    torch.set_num_threads(1)
    tok = tok or build_tokenizer()
    torch.manual_seed(seed)
    return LlamaForCausalLM(llama_config(tok, **kw)).eval(), tok


def tiny_token_classifier(tok=None, num_labels: int = 1, seed: int = 0):
    from transformers import LlamaForTokenClassification

    torch.set_num_threads(1)
    tok = tok or build_tokenizer()
    torch.manual_seed(seed)
    return LlamaForTokenClassification(llama_config(tok, num_labels=num_labels)).eval(), tok


def tiny_sequence_classifier(tok=None, num_labels: int = 1, seed: int = 0):
    from transformers import LlamaForSequenceClassification

    torch.set_num_threads(1)
    tok = tok or build_tokenizer()
    torch.manual_seed(seed)
    return LlamaForSequenceClassification(llama_config(tok, num_labels=num_labels)).eval(), tok


def bpe_tokenizer(delimiter: str = "\n", vocab_size: int = 72) -> PreTrainedTokenizerFast:
    """A BPE tokenizer trained on testbed solutions, with merges across the step delimiter
    (e.g. a token "\\nb"): multi-character tokens the char-level testbed tokenizer never has."""
    texts = []
    for p in testbed.TestbedTask(split="train", n=300, seed=1).problems():
        steps = testbed.parse_question(p.question).gold_steps()
        texts.append(p.prompt + "".join(s + delimiter for s in steps))
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.decoder = decoders.Fuse()
    alphabet = sorted(set("".join(texts)))
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", unk_token="<unk>")
    return fast


CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{%- endif %}"
)


def chat_tokenizer(newlines: bool = False) -> PreTrainedTokenizerFast:
    """A char-level tokenizer with a Qwen-style chat template and an ``<extra_0>`` token.
    ``newlines``: "\n" is a token too (by default the pre-tokenizer drops it)."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<extra_0>", "<unk>"]
    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {t: i for i, t in enumerate(specials + chars)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]" if newlines else "."),
                                             behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(specials)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|endoftext|>",
                                   eos_token="<|im_end|>", unk_token="<unk>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_qwen_prm(seed: int = 0):
    """A stand-in for Qwen2.5-Math-PRM: Qwen2ForTokenClassification, 2 labels, chat tokenizer."""
    from transformers import Qwen2Config, Qwen2ForTokenClassification

    torch.set_num_threads(1)
    tok = chat_tokenizer()
    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=1024, num_labels=2,
                      pad_token_id=tok.pad_token_id)
    return Qwen2ForTokenClassification(cfg).eval(), tok


def save(model, tok, path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def shepherd_tokenizer() -> PreTrainedTokenizerFast:
    """A Llama/Mistral-style tokenizer (sentencepiece ``▁`` word boundaries, ``<s>``/``</s>``)
    trained on math-shepherd style texts: it has the step tag ``ки`` and the label tokens
    ``▁+``/``▁-`` that math-shepherd's ``encode("+ -")`` yields."""
    texts = []
    for p in testbed.TestbedTask(split="train", n=200, seed=1).problems():
        steps = testbed.parse_question(p.question).gold_steps()
        texts.append(p.prompt + " " + "\n".join(f"{s} ки" for s in steps))
        texts.append(" ".join(f"{s} +" for s in steps) + " - +")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex("\n"), behavior="isolated"),
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")])
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first")
    alphabet = sorted(set("".join(texts)) | {"\u2581"})
    trainer = trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")


def tiny_shepherd_prm(seed: int = 0):
    """A stand-in for math-shepherd-mistral-7b-prm: a random MistralForCausalLM."""
    from transformers import MistralConfig, MistralForCausalLM

    torch.set_num_threads(1)
    tok = shepherd_tokenizer()
    torch.manual_seed(seed)
    cfg = MistralConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                        max_position_embeddings=512, bos_token_id=tok.bos_token_id,
                        eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    return MistralForCausalLM(cfg).eval(), tok


def qwen_bpe_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE like Qwen2's (what transformers loads for a qwen2 checkpoint anyway),
    trained on testbed text, with Qwen's special tokens and ``<|endoftext|>`` as BOS/pad (the
    way Skywork's PRM prepends a BOS)."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<extra_0>"]
    texts = []
    for p in testbed.TestbedTask(split="train", n=300, seed=1).problems():
        steps = testbed.parse_question(p.question).gold_steps()
        texts.append(p.question + "\n" + "\n".join(steps) + "\n")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>", eos_token="<|im_end|>")


def tiny_value_head_prm(path: Path, seed: int = 0, with_head: bool = True) -> Path:
    """A stand-in for Skywork-o1-Open-PRM: a Qwen2ForCausalLM checkpoint whose safetensors also
    hold ``v_head.summary.weight``/``bias`` (the layout Skywork's PRM_MODEL saves), a chat
    tokenizer with a BOS token. ``with_head=False`` saves the bare causal LM."""
    from safetensors.torch import load_file, save_file
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.set_num_threads(1)
    tok = qwen_bpe_tokenizer()
    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=1024, pad_token_id=tok.pad_token_id,
                      bos_token_id=tok.bos_token_id, tie_word_embeddings=False)
    save(Qwen2ForCausalLM(cfg).eval(), tok, path)
    if with_head:
        f = path / "model.safetensors"
        tensors = load_file(str(f))
        tensors["v_head.summary.weight"] = torch.randn(1, cfg.hidden_size)
        tensors["v_head.summary.bias"] = torch.randn(1)
        save_file(tensors, str(f), metadata={"format": "pt"})
    return path
