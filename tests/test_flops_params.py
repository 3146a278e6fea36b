"""FLOPs overrides: ``prm_params`` (in-process and HTTP PRMs) and the warning when a served
model's size is unknown instead of a silent 0."""

from __future__ import annotations

import logging

import pytest

from ttscale.config import ConfigError, build_config
from ttscale.runner import build_scorer, run

FLAGS = {"task": "testbed", "strategy": "best-of-n", "budget": 2, "limit": 1}


def test_prm_params_overrides_the_counted_size_and_prices_prm_tokens(tiny_prm_dir, tmp_path):
    cfg = build_config(flags={**FLAGS, "prm": str(tiny_prm_dir), "prm_params": 7_000_000_000,
                              "out": str(tmp_path)})
    assert build_scorer(cfg, str(tiny_prm_dir)).num_parameters == 7_000_000_000
    summary = run(cfg, progress=False)
    cost = summary.cost
    assert cost["prm_tokens"] > 0
    assert cost["prm_flops"] == pytest.approx(
        2 * 7_000_000_000 * (cost["prm_tokens"] - cost["prm_tokens_cached"]))


def test_prm_params_must_be_a_positive_count():
    with pytest.raises(ConfigError, match="prm_params"):
        build_config(flags=FLAGS, sets=["prm_params=0"])


def test_an_alias_without_a_size_warns_once_naming_the_override(caplog):
    import asyncio

    from ttscale.net import discovery

    class Pool:  # the one call discover_model makes: GET /v1/models
        urls = ["http://127.0.0.1:1"]

        async def request_json(self, method, path, body=None, root=False):
            return {"data": [{"id": "my-alias"}]}

    discovery._warned_sizes.clear()
    with caplog.at_level(logging.WARNING, logger="ttscale"):
        for _ in range(3):
            model, n = asyncio.run(discovery.discover_model(Pool(), None, None))
    assert (model, n) == ("my-alias", 0)
    warned = [r.getMessage() for r in caplog.records if "my-alias" in r.getMessage()]
    assert len(warned) == 1 and "policy_params" in warned[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ttscale"):
        asyncio.run(discovery.discover_model(Pool(), "Qwen2.5-Math-1.5B-Instruct", None))
        asyncio.run(discovery.discover_model(Pool(), "my-alias", 1_500_000_000))
    assert not caplog.records


def test_prm_params_reaches_the_http_prm_client():
    url = "http://127.0.0.1:9"
    cfg = build_config(flags={**FLAGS, "prm": url, "prm_params": 7_000_000_000},
                       sets=["prm_kind=qwen-prm"])
    scorer = build_scorer(cfg, url)
    assert scorer.num_parameters == 7_000_000_000
    scorer.close()
