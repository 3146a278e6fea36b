"""The CLI: `ttscale run` end to end on real tiny models, `ttscale grade`, and one-line errors."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error, run_cli

from ttscale.types import COST_KEYS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny_models(tiny_policy_dir, tiny_prm_dir) -> tuple[Path, Path]:
    """Real random-init Llama policy and token-classification PRM on the testbed tokenizer
    (shared session fixtures from conftest.py)."""
    return tiny_policy_dir, tiny_prm_dir


# ---- end to end on real tiny models ------------------------------------------------------

SMALL = ["--set", "max_solution_tokens=40", "--set", "max_step_tokens=8",
         "--set", "max_rounds=4", "--no-progress"]


@pytest.mark.parametrize("strategy,extra", [
    ("majority", []),
    ("beam", ["--beam-width", "2"]),
])
def test_run_json_end_to_end_and_resume(capsys, tmp_path, tiny_models, strategy, extra):
    policy, prm = tiny_models
    out = tmp_path / "out"
    argv = ["run", "--task", "testbed", "--strategy", strategy, "--budget", "4", "--limit", "3",
            "--seed", "1", "--out", str(out), "--policy", str(policy), "--prm", str(prm),
            "--json", *extra, *SMALL]
    code, stdout, err = run_cli(capsys, argv)
    assert code == 0, err
    summary = json.loads(stdout)  # exactly one JSON object on stdout
    assert summary["strategy"] == strategy and summary["budget"] == 4
    assert summary["n_problems"] == 3 and summary["computed"] == 3 and summary["resumed"] == 0
    assert set(COST_KEYS) | {"total_flops"} <= set(summary["cost"])
    cost = summary["cost"]
    assert cost["generations"] == 3 * 4  # N generations per problem, whatever the search
    assert cost["generated_tokens"] > 0 and cost["policy_flops"] > 0
    assert cost["total_flops"] == pytest.approx(
        cost["policy_flops"] + cost["prm_flops"] + cost["difficulty_flops"])
    if strategy == "majority":
        assert cost["prm_tokens"] == 0  # no verifier is loaded or called
    else:
        assert cost["prm_tokens"] > 0 and cost["prm_flops"] > 0

    db = sqlite3.connect(out / "ttscale.db")
    rows = db.execute("SELECT problem_id, correct, candidates, cost FROM results").fetchall()
    assert len(rows) == 3
    assert summary["accuracy"] == pytest.approx(sum(r[1] for r in rows) / 3)
    assert sum(json.loads(r[3])["generations"] for r in rows) == cost["generations"]
    for _, _, cands, _ in rows:
        cands = json.loads(cands)
        assert cands, "every candidate is stored"
        for c in cands:
            assert set(c) >= {"steps", "scores", "finished", "answer"}
            if strategy == "beam" and c["steps"]:
                assert len(c["scores"]) == len(c["steps"])  # a PRM score for every step
    n_samples = db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    assert n_samples == sum(len(json.loads(r[2])) for r in rows)
    db.close()

    # the same command again finds everything stored and recomputes nothing
    code, stdout2, err = run_cli(capsys, argv)
    assert code == 0, err
    again = json.loads(stdout2)
    assert again["resumed"] == 3 and again["computed"] == 0
    assert again["accuracy"] == summary["accuracy"] and again["cost"] == summary["cost"]
    assert again["run_key"] == summary["run_key"]


def test_revisions_load_the_configured_revision_model(capsys, tmp_path, tiny_models):
    policy, prm = tiny_models
    base = ["run", "--task", "testbed", "--strategy", "revisions", "--budget", "2", "--limit",
            "2", "--out", str(tmp_path), "--policy", str(policy), "--prm", str(prm), "--json",
            *SMALL]
    code, stdout, err = run_cli(capsys, [*base, "--revision", str(policy)])
    assert code == 0, err
    with_reviser = json.loads(stdout)
    assert with_reviser["n_problems"] == 2 and with_reviser["cost"]["generations"] == 2 * 2
    db = sqlite3.connect(tmp_path / "ttscale.db")
    configs = [json.loads(c) for (c,) in db.execute("SELECT config FROM runs")]
    db.close()
    assert [c["revision_resolved"] for c in configs] == [str(policy)]
    # without a revision model the policy revises itself: another run, not a resume of this one
    code, stdout, err = run_cli(capsys, base)
    assert code == 0, err
    self_revising = json.loads(stdout)
    assert self_revising["run_key"] != with_reviser["run_key"]
    assert self_revising["resumed"] == 0


def test_run_table_output_and_recipe(capsys, tmp_path, tiny_models):
    policy, _ = tiny_models
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"task: testbed\nstrategy: majority\nbudget: 2\nlimit: 2\n"
                      f"policy: {policy}\nout: {tmp_path / 'o'}\nmax_solution_tokens: 30\n")
    code, stdout, err = run_cli(capsys, ["run", "--config", str(recipe), "--no-progress"])
    assert code == 0, err
    assert "accuracy" in stdout and "majority" in stdout
    # a flag overrides the recipe, and a different budget is a different run (nothing resumed)
    code, stdout, err = run_cli(capsys, ["run", "--config", str(recipe), "--budget", "3", "--json",
                                         "--no-progress"])
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["budget"] == 3 and summary["resumed"] == 0
    assert summary["cost"]["generations"] == 2 * 3


def test_out_path_that_is_a_file(capsys, tmp_path, tiny_models):
    policy, _ = tiny_models
    f = tmp_path / "not-a-dir"
    f.write_text("x")
    code, _, err = run_cli(capsys, ["run", "--task", "testbed", "--strategy", "majority",
                                    "--budget", "2", "--limit", "1", "--policy", str(policy),
                                    "--out", str(f)])
    assert_one_line_error(code, err, "not a folder")


def test_corrupt_database(capsys, tmp_path, tiny_models):
    policy, _ = tiny_models
    (tmp_path / "ttscale.db").write_bytes(b"garbage" * 1000)
    code, _, err = run_cli(capsys, ["run", "--task", "testbed", "--strategy", "majority",
                                    "--budget", "2", "--limit", "1", "--policy", str(policy),
                                    "--out", str(tmp_path)])
    assert_one_line_error(code, err, "not a usable ttscale database")


# ---- errors: one line, non-zero exit, no traceback ---------------------------------------

BASE = ["run", "--task", "testbed", "--strategy", "majority", "--budget", "2", "--limit", "1"]


def test_unknown_flag(capsys):
    code, _, err = run_cli(capsys, ["run", "--bogus"])
    assert_one_line_error(code, err, "--bogus")
    assert code == 2


def test_bad_flag_value(capsys):
    code, _, err = run_cli(capsys, ["run", "--task", "testbed", "--strategy", "majority",
                                    "--budget", "many"])
    assert_one_line_error(code, err, "--budget")


def test_unknown_command(capsys):
    code, _, err = run_cli(capsys, ["frobnicate"])
    assert_one_line_error(code, err, "frobnicate")


def test_missing_required(capsys):
    code, _, err = run_cli(capsys, ["run", "--task", "testbed", "--strategy", "majority"])
    assert_one_line_error(code, err, "budget")


def test_unknown_strategy(capsys, tmp_path):
    code, _, err = run_cli(capsys, ["run", "--task", "testbed", "--strategy", "telepathy",
                                    "--budget", "2", "--out", str(tmp_path)])
    assert_one_line_error(code, err, "unknown strategy 'telepathy'", "majority")
    assert not (tmp_path / "ttscale.db").exists()  # failed before writing anything


def test_missing_policy_path(capsys, tmp_path):
    code, _, err = run_cli(capsys, [*BASE, "--policy", str(tmp_path / "nope"),
                                    "--out", str(tmp_path)])
    assert_one_line_error(code, err, "policy", str(tmp_path / "nope"))


def test_missing_prm_path(capsys, tmp_path, tiny_models):
    policy, _ = tiny_models
    code, _, err = run_cli(capsys, ["run", "--task", "testbed", "--strategy", "beam", "--budget",
                                    "4", "--policy", str(policy), "--prm", str(tmp_path / "nope"),
                                    "--out", str(tmp_path)])
    assert_one_line_error(code, err, "PRM", str(tmp_path / "nope"))


def test_missing_testbed_model_names_the_fix(capsys, tmp_path, monkeypatch):
    import ttscale.shipped as paths

    monkeypatch.setattr(paths, "models_dir", lambda: tmp_path / "models")
    code, _, err = run_cli(capsys, [*BASE, "--out", str(tmp_path)])
    assert_one_line_error(code, err, "testbed model 'policy-small' not found",
                          "ttscale testbed train")


def test_unknown_task_file(capsys, tmp_path):
    code, _, err = run_cli(capsys, ["run", "--task", str(tmp_path / "nope.jsonl"), "--strategy",
                                    "majority", "--budget", "2", "--out", str(tmp_path)])
    assert_one_line_error(code, err, "nope.jsonl")


def test_malformed_task_file(capsys, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "1+1?", "answer": "2"}\nnot json\n')
    code, _, err = run_cli(capsys, ["run", "--task", str(bad), "--strategy", "majority",
                                    "--budget", "2", "--out", str(tmp_path)])
    assert_one_line_error(code, err, "bad.jsonl")


def test_missing_config_file(capsys, tmp_path):
    code, _, err = run_cli(capsys, ["run", "--config", str(tmp_path / "none.yaml")])
    assert_one_line_error(code, err, "config file", "none.yaml", "not found")


def test_malformed_yaml_names_the_line(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: testbed\nstrategy: [beam\nbudget: 4\n")
    code, _, err = run_cli(capsys, ["run", "--config", str(bad)])
    assert_one_line_error(code, err, "bad.yaml", "line", "invalid YAML")


def test_recipe_that_is_not_a_mapping(capsys, tmp_path):
    bad = tmp_path / "list.yaml"
    bad.write_text("- task\n- testbed\n")
    code, _, err = run_cli(capsys, ["run", "--config", str(bad)])
    assert_one_line_error(code, err, "list.yaml", "mapping")


def test_unknown_key_in_recipe(capsys, tmp_path):
    bad = tmp_path / "typo.yaml"
    bad.write_text("task: testbed\nstrategy: beam\nbugdet: 4\n")
    code, _, err = run_cli(capsys, ["run", "--config", str(bad)])
    assert_one_line_error(code, err, "'bugdet'", "typo.yaml", "did you mean 'budget'")


def test_bad_type_in_recipe(capsys, tmp_path):
    bad = tmp_path / "type.yaml"
    bad.write_text("task: testbed\nstrategy: beam\nbudget: lots\n")
    code, _, err = run_cli(capsys, ["run", "--config", str(bad)])
    assert_one_line_error(code, err, "'budget'", "type.yaml", "lots")


@pytest.mark.parametrize("item,needle", [
    ("budget", "KEY=VALUE"),
    ("budget=abc", "'budget'"),
    ("budget=yes", "boolean"),
    ("beam_width=4", "options.beam_width"),
    ("budget.x=1", "not a mapping"),
    ("options.beam_width=[1", "not valid YAML"),
    ("temperature=-1", "'temperature'"),
])
def test_bad_set(capsys, item, needle):
    code, _, err = run_cli(capsys, [*BASE, "--set", item])
    assert_one_line_error(code, err, needle)


def test_placeholder_recipe_is_reported(capsys):
    code, _, err = run_cli(capsys, ["run", "--config", str(REPO / "recipes" / "math500-vllm.yaml")])
    assert_one_line_error(code, err, "placeholder", "'task'")


def test_shipped_recipes_parse():
    from ttscale.config import ConfigError, build_config

    recipes = sorted((REPO / "recipes").glob("*.yaml"))
    assert len(recipes) >= 3
    for path in recipes:
        try:
            cfg = build_config(path)
        except ConfigError as e:  # only the fill-in-yourself placeholders may fail
            assert "placeholder" in str(e), f"{path.name}: {e}"
            continue
        assert cfg.task == "testbed" and cfg.budget >= 1


def test_set_values_are_yaml_typed_and_dotted():
    from ttscale.config import build_config

    cfg = build_config(None, {"task": "testbed", "strategy": "beam", "budget": 4,
                              "options.beam_width": 2},
                       ["options.aggregation=min", "limit=null", "options.extra.depth=3",
                        "temperature=0.5"],
                       check_options=False)  # beam has no option 'extra': merging is tested here
    assert cfg.options == {"beam_width": 2, "aggregation": "min", "extra": {"depth": 3}}
    assert cfg.limit is None and cfg.temperature == 0.5


def test_set_wins_over_flags_and_flags_over_the_recipe(tmp_path):
    from ttscale.config import build_config

    recipe = tmp_path / "r.yaml"
    recipe.write_text("task: testbed\nstrategy: beam\nbudget: 2\nseed: 5\n"
                      "options: {beam_width: 2, aggregation: min}\n")
    cfg = build_config(recipe, {"budget": 8, "options.beam_width": 4}, ["budget=16"])
    assert cfg.budget == 16 and cfg.seed == 5
    assert cfg.options == {"beam_width": 4, "aggregation": "min"}


def test_testbed_model_names(tmp_path, monkeypatch):
    import ttscale.shipped as paths

    monkeypatch.setattr(paths, "models_dir", lambda: tmp_path)
    (tmp_path / "policy-large").mkdir()
    (tmp_path / "policy-large" / "config.json").write_text("{}")
    assert paths.resolve_model("testbed:policy-large", "policy-small") == str(
        tmp_path / "policy-large")
    assert paths.resolve_model("/some/dir", "policy-small") == "/some/dir"
    with pytest.raises(ValueError, match="unknown testbed model 'giant'"):
        paths.resolve_model("testbed:giant", "policy-small")
    with pytest.raises(FileNotFoundError, match="ttscale testbed train"):
        paths.resolve_model(None, "prm")


def test_grade_cli(capsys, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"pred": "1/2", "gold": "0.5"}\n{"pred": "17", "gold": "23"}\n'
                   '{"pred": null, "gold": "3"}\n')
    code, stdout, err = run_cli(capsys, ["grade", "--in", str(src)])
    assert code == 0, err
    lines = [json.loads(line) for line in stdout.splitlines()]
    assert [x["equal"] for x in lines] == [True, False, False]
    assert all({"reason", "seconds"} <= set(x) for x in lines)

    out = tmp_path / "graded.jsonl"
    code, stdout, err = run_cli(capsys, ["grade", "--in", str(src), "--out", str(out), "--json"])
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["n"] == 3 and summary["n_equal"] == 1
    assert len(out.read_text().splitlines()) == 3


def test_grade_errors(capsys, tmp_path):
    code, _, err = run_cli(capsys, ["grade", "--in", str(tmp_path / "none.jsonl")])
    assert_one_line_error(code, err, "none.jsonl", "not found")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"pred": "1", "gold": "1", "id": "a"}\n{"pred": "1"\n')
    out = tmp_path / "out.jsonl"
    code, stdout, err = run_cli(capsys, ["grade", "--in", str(bad), "--out", str(out), "--json"])
    assert_one_line_error(code, err, "bad.jsonl:2", "invalid JSON")
    graded = [json.loads(line) for line in out.read_text().splitlines()]  # nothing lost
    assert graded[0]["id"] == "a" and graded[0]["equal"] is True
    assert graded[1]["raw"] == '{"pred": "1"' and "bad.jsonl:2" in graded[1]["error"]
    assert json.loads(stdout)["n_errors"] == 1
    code, _, err = run_cli(capsys, ["grade"])
    assert_one_line_error(code, err, "--in")


def test_console_script_errors_are_one_line():
    """Through the installed entry point, as a user runs it."""
    exe = Path(sys.executable).with_name("ttscale")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c",
                                            "from ttscale.cli import app; app()"]
    p = subprocess.run([*cmd, "run", "--budget", "x"], capture_output=True, text=True,
                       timeout=60)
    assert_one_line_error(p.returncode, p.stderr, "--budget")
    p = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "run" in p.stdout and "grade" in p.stdout
