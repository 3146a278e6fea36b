"""The typed strategy registry: every strategy declares its options and facts once, options are
parsed before anything loads, and the parsed options (not the raw dict) key a run."""

from __future__ import annotations

import json
import sys

import pytest
from cli_helpers import assert_one_line_error, run_cli

from ttscale.strategies import (
    STRATEGIES,
    StrategyOptions,
    StrategySpec,
    get_spec,
    parse_options,
    registry,
)

BUILTIN = ["majority", "best-of-n", "weighted-best-of-n", "beam", "lookahead", "dvts",
           "revisions", "combined", "particle-filtering", "confidence-vote", "deepconf-online",
           "adaptive", "adaptive-prm", "compute-optimal"]


def test_every_builtin_is_listed_explicitly_with_a_typed_options_model():
    assert [s.name for s in registry.BUILTINS] == BUILTIN
    for name in BUILTIN:
        spec = get_spec(name)
        assert spec is STRATEGIES[name] and issubclass(spec.options, StrategyOptions)
        assert spec.options.model_config["extra"] == "forbid"
        assert spec.options.model_config["frozen"] is True
    assert not get_spec("majority").needs_verifier
    assert {n for n in BUILTIN if get_spec(n).uses_reviser} == {"revisions", "combined",
                                                                 "compute-optimal"}
    assert {n for n in BUILTIN if get_spec(n).reuses_probe} == {"majority", "best-of-n",
                                                                 "weighted-best-of-n"}
    assert get_spec("compute-optimal").file_options == ("policy_table",)


@pytest.mark.parametrize(("name", "raw", "budget", "needles"), [
    ("beam", {"beam_widht": 2}, 8, ["no option 'beam_widht'", "did you mean 'beam_width'"]),
    ("beam", {"beam_width": "two"}, 8, ["beam_width='two'"]),
    ("beam", {"beam_width": 3}, 8, ["beam:", "multiple of beam_width M=3"]),
    ("majority", {"aggregation": "min"}, 4, ["'majority' has no option 'aggregation'"]),
    ("lookahead", {"lookahead": True}, 8, ["lookahead=True"]),
    ("revisions", {"chain_length": 3}, 8, ["multiple of chain_length L=3"]),
    ("combined", {"search_share": 0.1}, 8, ["combined:", "search_share=0.1"]),
    ("compute-optimal", {"policy": "t.json"}, 8, ["no option 'policy'", "'policy_table'"]),
    ("compute-optimal", {}, 8, ["needs a policy table", "options.policy_table="]),
])
def test_bad_options_are_one_line_errors_naming_the_key(name, raw, budget, needles):
    with pytest.raises(ValueError) as e:
        parse_options(name, raw, budget)
    msg = str(e.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, (needle, msg)


def test_parsed_options_fill_defaults_and_are_frozen():
    opts = parse_options("lookahead", {"beam_width": "2"}, 8)  # a digit string from a CLI
    assert opts.model_dump() == {"aggregation": "last", "beam_width": 2, "lookahead": 2}
    with pytest.raises(ValueError):
        opts.beam_width = 3  # type: ignore[misc]


def test_a_typo_fails_before_any_model_loads(capsys, tmp_path):
    # the policy does not exist: the typo must be what is reported
    code, out, err = run_cli(capsys, ["run", "--task", "testbed", "--strategy", "beam",
                                      "--set", "options.beam_widht=2", "--policy",
                                      str(tmp_path / "none"), "--out", str(tmp_path)])
    assert_one_line_error(code, err, "beam_widht", "did you mean 'beam_width'")
    assert out == "" and not (tmp_path / "ttscale.db").exists()
    # with a budget too: the same error, nothing written
    code, out, err = run_cli(capsys, ["run", "--task", "testbed", "--strategy", "beam",
                                      "--budget", "8", "--set", "options.beam_widht=2",
                                      "--out", str(tmp_path)])
    assert_one_line_error(code, err, "beam_widht")
    code, out, err = run_cli(capsys, ["run", "--task", "testbed", "--strategy", "beam",
                                      "--budget", "6", "--policy", str(tmp_path / "none"),
                                      "--out", str(tmp_path)])
    assert_one_line_error(code, err, "budget N=6", "beam_width M=4")
    assert not (tmp_path / "ttscale.db").exists()


def test_the_cli_import_does_not_load_torch_for_a_typo():
    import subprocess

    code = ("import sys\nfrom ttscale.cli import main\n"
            "rc = main(['run', '--task', 'testbed', '--strategy', 'beam', '--budget', '8', "
            "'--set', 'options.beam_widht=2'])\n"
            "assert 'torch' not in sys.modules, 'torch loaded for a typo'\nsys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 1, p.stderr
    assert "beam_widht" in p.stderr and "torch loaded" not in p.stderr


def test_ttscale_strategies_lists_every_option_from_the_models(capsys):
    code, out, err = run_cli(capsys, ["strategies"])
    assert code == 0, err
    for name in BUILTIN:
        assert f"\n{name}: " in "\n" + out
        for key in get_spec(name).options.model_fields:
            assert f"options.{key} (" in out
    code, out, _ = run_cli(capsys, ["strategies", "--json"])
    data = json.loads(out)
    assert list(data) == BUILTIN
    assert data["beam"]["options"]["beam_width"]["default"] == "4"
    assert data["compute-optimal"]["options"]["policy_table"]["description"]


def test_run_key_holds_the_parsed_options():
    from ttscale.config import RunConfig
    from ttscale.session import run_key

    def key(**options):
        return run_key(RunConfig(task="testbed", strategy="beam", budget=8, options=options),
                       "policy", "prm")

    assert key() == key(beam_width=4) == key(beam_width="4", aggregation="last")
    assert key(beam_width=2) != key()
    with pytest.raises(ValueError, match="beam_widht"):
        key(beam_widht=2)


def test_a_user_strategy_registers_a_spec(monkeypatch):
    from ttscale.strategies.majority import majority

    class EchoOptions(StrategyOptions):
        times: int = 1

    spec = StrategySpec("echo", majority, EchoOptions, needs_verifier=False)
    monkeypatch.setitem(STRATEGIES, "echo", spec)
    assert registry.register(spec) is spec and get_spec("echo") is spec
    assert parse_options("echo", {"times": 3}).times == 3  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        registry.register(majority)  # type: ignore[arg-type]


def test_a_sweep_rejects_an_option_no_strategy_of_it_takes():
    from ttscale.analysis.cli import build_sweep_config

    with pytest.raises(ValueError, match="'lookahed'.*did you mean 'lookahead'"):
        build_sweep_config("testbed", "majority,lookahead", "1,4",
                           sets=["options.lookahed=1"])
    # an option of one strategy of the sweep is fine: the others do not get it
    cfg, plan = build_sweep_config("testbed", "majority,lookahead", "1,4",
                                   sets=["options.lookahead=1"])
    runs, _ = plan.runs(cfg.options)
    assert all(s.run_options(n, cfg.options)["lookahead"] == 1 for s, n in runs)
