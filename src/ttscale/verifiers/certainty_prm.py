"""A process reward model that reads a strong language model's certainty about every token.

Why this architecture (measured, docs/testbed.md): on the testbed, checking a step such as
``61*5=05`` is exactly as hard as computing it. A PRM that is a plain token-classification head
fine-tuned from a language model learned question difficulty only (within-question AUC 0.49 on
exact labels, after the prototype's 0.51), even when its body was a model that *does* know the
arithmetic: the head never learns, in affordable training, to compare what the body predicted
with what the solution wrote. That comparison is the log-probability the body assigns to each
written token, so this model computes it and hands it to the head:

    lp_t      = log p_LM(x_t | x_<t)                     (teacher forcing, solution tokens only)
    cummin_t  = min over solution tokens s <= t of lp_s  (one wrong token spoils the prefix)
    logit_t   = head([h_t ; cummin_t ; lp_t])            (h_t: last hidden state, for calibration)

The body is frozen by default (``train_body=False``): the Monte-Carlo labels train the head that
turns certainty and context into the probability that the prefix still reaches the answer.

It is a regular transformers model (config + safetensors, ``AutoModelForTokenClassification``
after ``import ttscale.verifiers.certainty_prm``, which ``ttscale.verifiers.hf_prm`` and so
``load_verifier`` do; plain ``import ttscale.verifiers`` stays light and does not), scored by
``TokenClassificationPRM`` like any other PRM.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForTokenClassification,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaPreTrainedModel,
)
from transformers.modeling_outputs import TokenClassifierOutput

N_CERTAINTY_FEATURES = 2


class CertaintyPRMConfig(LlamaConfig):
    """A Llama config plus where the solution starts: right after the first
    ``prompt_end_token_id`` (the testbed prompt is one line, so its newline)."""

    model_type = "ttscale_certainty_prm"

    def __init__(self, prompt_end_token_id: int = 0, train_body: bool = False,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.prompt_end_token_id = prompt_end_token_id
        self.train_body = train_body


class CertaintyPRM(LlamaPreTrainedModel):
    config_class = CertaintyPRMConfig
    base_model_prefix = "lm"

    def __init__(self, config: CertaintyPRMConfig) -> None:
        config.num_labels = 1
        super().__init__(config)
        self.lm = LlamaForCausalLM(config)
        self.score = nn.Linear(config.hidden_size + N_CERTAINTY_FEATURES, 1)
        self.post_init()
        self.set_body_trainable(config.train_body)

    def set_body_trainable(self, trainable: bool) -> None:
        for p in self.lm.parameters():
            p.requires_grad_(trainable)

    def certainty_features(self, input_ids: torch.Tensor, logits: torch.Tensor,
                           attention_mask: torch.Tensor | None) -> torch.Tensor:
        """[B, T, 2]: running min of solution-token log-probs, and the token's own log-prob."""
        logp = torch.log_softmax(logits.float(), dim=-1)
        tok_lp = torch.zeros(input_ids.shape, dtype=logp.dtype, device=logp.device)
        tok_lp[:, 1:] = logp[:, :-1].gather(-1, input_ids[:, 1:, None]).squeeze(-1)
        is_end = input_ids == self.config.prompt_end_token_id
        # solution tokens: strictly after the first prompt-end token
        in_solution = (is_end.long().cumsum(-1) - is_end.long()) > 0
        if attention_mask is not None:
            in_solution &= attention_mask.bool()
        masked = torch.where(in_solution, tok_lp, torch.zeros_like(tok_lp))
        cummin = torch.cummin(masked, dim=-1).values
        return torch.stack([cummin, masked], dim=-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **kwargs) -> TokenClassifierOutput:
        kwargs.pop("use_cache", None)
        out = self.lm(input_ids=input_ids, attention_mask=attention_mask,
                      output_hidden_states=True, use_cache=False)
        hidden = out.hidden_states[-1]
        feats = self.certainty_features(input_ids, out.logits, attention_mask)
        logits = self.score(torch.cat([hidden.float(), feats], dim=-1).to(hidden.dtype))
        return TokenClassifierOutput(logits=logits)

    @classmethod
    def from_pretrained(cls, *args, **kwargs) -> Any:
        """Load a saved PRM; the body stays frozen unless its config says ``train_body`` (loading
        re-creates the parameters, which would otherwise all be trainable again)."""
        loaded = super().from_pretrained(*args, **kwargs)
        # with output_loading_info=True (how ttscale checks for missing heads) it is a pair
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        model.set_body_trainable(model.config.train_body)
        return loaded

    @classmethod
    def from_language_model(cls, lm_path: str, prompt_end_token_id: int,
                            train_body: bool = False) -> CertaintyPRM:
        """A new PRM whose body is the causal LM at ``lm_path`` (head freshly initialised)."""
        lm = LlamaForCausalLM.from_pretrained(lm_path, dtype=torch.float32)
        base = {k: v for k, v in lm.config.to_dict().items()
                if k not in ("model_type", "architectures", "transformers_version")}
        cfg = CertaintyPRMConfig(prompt_end_token_id=prompt_end_token_id,
                                 train_body=train_body, **base)
        model = cls(cfg)
        model.lm.load_state_dict(lm.state_dict())
        # start from "certainty only": no weight on the hidden state, confident tokens -> high
        with torch.no_grad():
            model.score.weight.zero_()
            model.score.weight[0, cfg.hidden_size] = 1.0
            model.score.bias.fill_(2.0)
        return model


AutoConfig.register(CertaintyPRMConfig.model_type, CertaintyPRMConfig)
AutoModelForTokenClassification.register(CertaintyPRMConfig, CertaintyPRM)
