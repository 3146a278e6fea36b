"""The serving verbs on the command line: one-line errors before anything loads, and
``ttscale serve-prm`` + ``ttscale serve-policy`` + ``ttscale serve`` started as real processes
and answering the official openai client."""

from __future__ import annotations

import sys
from contextlib import ExitStack, contextmanager

import httpx
import pytest

from ttscale.cli import main
from ttscale.serve.common import free_port
from ttscale.serve.launch import server_process

CLI = "import sys; from ttscale.cli import main; sys.exit(main())"


@pytest.mark.parametrize("argv,needle", [
    (["serve", "--port", "1"], "needs an API key"),
    (["serve", "--no-auth", "--api-key", "k"], "choose one"),
    (["serve", "--api-key", "k", "--format", "html"], "unknown prompt format"),
    (["serve", "--api-key", "k", "--upstream", "http://x/v1", "--policy", "p"], "either"),
    (["serve-prm", "--kind", "orm"], "--kind must be"),
    (["serve-policy", "--emulate", "tgi"], "--emulate must be"),
    (["serve", "--api-key", "k", "--port", "99999"], "--port"),
    (["serve-prm", "--port", "99999"], "--port"),
    (["serve-policy", "--port", "0"], "--port"),
    (["serve", "--no-auth", "--host", "0.0.0.0"], "--insecure-no-auth"),
    (["serve", "--host", "0.0.0.0"], "needs an API key"),
    (["serve-prm", "--host", "0.0.0.0"], "needs an API key"),
    (["serve-policy", "--host", "0.0.0.0", "--no-auth"], "--insecure-no-auth"),
    (["serve", "--api-key-file", "/nonexistent/key"], "cannot read key file"),
    (["serve", "--api-key", "k", "--upstream", "http://x/v1", "--upstream-key", "a",
      "--upstream-key-file", "f"], "not both"),
])
def test_bad_serve_flags_are_one_line_errors(capsys, monkeypatch, argv, needle):
    monkeypatch.delenv("TTSCALE_API_KEY", raising=False)
    assert main(argv) in (1, 2)  # 2: a usage error (typer's own range checks)
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and needle in err and "\n" not in err


@contextmanager
def process(args, health):
    with server_process([sys.executable, "-c", CLI, *args], health, f"ttscale {args[0]}",
                        timeout_s=90):
        yield


def test_the_three_servers_work_together_from_the_command_line(tiny_policy_dir, tiny_prm_dir,
                                                               monkeypatch, tmp_path):
    """Keyed backends: the policy and PRM servers take their key from TTSCALE_API_KEY, the proxy
    sends it to each (TTSCALE_UPSTREAM_API_KEY for the policy, a key file for the PRM)."""
    openai = pytest.importorskip("openai")
    monkeypatch.setenv("TTSCALE_API_KEY", "backend-key")
    monkeypatch.setenv("TTSCALE_UPSTREAM_API_KEY", "backend-key")
    (tmp_path / "prm.key").write_text("backend-key\n")
    ports = [free_port() for _ in range(3)]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    with ExitStack() as stack:
        stack.enter_context(process(["serve-policy", "--model", str(tiny_policy_dir), "--port",
                                     str(ports[0]), "--threads", "1"], urls[0] + "/health"))
        stack.enter_context(process(["serve-prm", "--model", str(tiny_prm_dir), "--port",
                                     str(ports[1])], urls[1] + "/health"))
        stack.enter_context(process(
            ["serve", "--upstream", urls[0] + "/v1", "--prm", urls[1] + "/v1", "--api-key", "k",
             "--port", str(ports[2]), "--strategy", "beam", "--budget", "2", "--option",
             "beam_width=2", "--prm-key-file", str(tmp_path / "prm.key")], urls[2] + "/health"))
        client = openai.OpenAI(base_url=urls[2] + "/v1", api_key="k", max_retries=0)
        r = client.chat.completions.create(
            model="ttscale", messages=[{"role": "user", "content": "Q:12a+3"}], seed=1,
            max_tokens=16)
        assert r.model_extra["ttscale"]["strategy"] == "beam"
        assert r.usage.completion_tokens > 0 and r.model_extra["ttscale"]["cost"]["prm_tokens"]
        denied = httpx.post(urls[2] + "/v1/chat/completions", json={})
        assert denied.status_code == 401
        for url in urls[:2]:  # the backends need their key too
            assert httpx.get(url + "/v1/models").status_code == 401
