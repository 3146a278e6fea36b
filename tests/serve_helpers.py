"""Real servers on loopback for the serving tests: tiny random-init transformers models behind
ttscale's own OpenAI-compatible policy server and pooling-API PRM server.

Each server runs uvicorn in a background thread of the test process, on a free 127.0.0.1 port, and
is stopped by the fixture that started it. Nothing here is a fake: requests go through real HTTP,
real JSON and a real model forward.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from hf_tiny import tiny_policy, tiny_qwen_prm, tiny_token_classifier  # noqa: E402

from ttscale.engines.hf import HFGenerator  # noqa: E402
from ttscale.serve.common import ServerThread  # noqa: E402
from ttscale.serve.policy_server import PolicyServerConfig, create_policy_app  # noqa: E402
from ttscale.serve.prm_server import PRMServerConfig, create_prm_app  # noqa: E402
from ttscale.verifiers.hf_prm import QwenPRM, TokenClassificationPRM  # noqa: E402


def hf_policy(seed: int = 0) -> HFGenerator:
    return HFGenerator(*tiny_policy(seed=seed))


def token_prm() -> TokenClassificationPRM:
    return TokenClassificationPRM(*tiny_token_classifier())


def qwen_prm() -> QwenPRM:
    return QwenPRM(*tiny_qwen_prm())


@contextmanager
def policy_server(generator: HFGenerator, **config):
    server = ServerThread(create_policy_app(generator, PolicyServerConfig(**config))).start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def prm_server(scorer, **config):
    server = ServerThread(create_prm_app(scorer, PRMServerConfig(**config))).start()
    try:
        yield server
    finally:
        server.stop()
