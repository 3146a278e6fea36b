"""Shared pytest fixtures. Keep each fixture named for what it provides."""

from __future__ import annotations

import pytest

# -- tiny real transformers checkpoints saved to tmp dirs (engine and verifier tests) ----------

@pytest.fixture(scope="session")
def tiny_policy_dir(tmp_path_factory):
    """A random-init LlamaForCausalLM + the testbed tokenizer, saved with save_pretrained."""
    from hf_tiny import save, tiny_policy

    return save(*tiny_policy(), tmp_path_factory.mktemp("tiny_policy"))


@pytest.fixture(scope="session")
def tiny_prm_dir(tmp_path_factory):
    """A random-init LlamaForTokenClassification (num_labels=1) + the testbed tokenizer."""
    from hf_tiny import save, tiny_token_classifier

    return save(*tiny_token_classifier(), tmp_path_factory.mktemp("tiny_prm"))


@pytest.fixture(scope="session")
def tiny_qwen_prm_dir(tmp_path_factory):
    """A Qwen2.5-Math-PRM stand-in: Qwen2ForTokenClassification (2 labels), a char tokenizer
    with a chat template and an ``<extra_0>`` token."""
    from hf_tiny import save, tiny_qwen_prm

    return save(*tiny_qwen_prm(), tmp_path_factory.mktemp("tiny_qwen_prm"))


@pytest.fixture(scope="session")
def tiny_orm_dir(tmp_path_factory):
    """A random-init LlamaForSequenceClassification (num_labels=1) + the testbed tokenizer."""
    from hf_tiny import save, tiny_sequence_classifier

    return save(*tiny_sequence_classifier(), tmp_path_factory.mktemp("tiny_orm"))
