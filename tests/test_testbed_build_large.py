"""The policy-large stage trains until dev greedy accuracy plateaus, from scratch or from given
weights, and a killed run resumes from its last checkpoint (tiny architecture; the dev
evaluation is replaced by a scripted one so the plateau is known)."""

from __future__ import annotations

import json

import pytest
import torch

from ttscale.testbed import build
from ttscale.testbed.specs import ArchSpec

TINY = ArchSpec(hidden=16, layers=1, heads=2, ffn=32)


class Killed(Exception):
    pass


def scripted_dev(monkeypatch, greedy_by_call: list[float], kill_at: int | None = None):
    """dev_accuracy returns pass@1 0.1 and the scripted greedy values (the greedy call is the
    second of each evaluation); ``kill_at``: the evaluation index that raises instead."""
    calls = {"n": 0}

    def fake(generator, samples=4, temperature=1.0, seed=0, **_):
        if samples != 1:
            return 0.1, {1: 0.1}
        i = calls["n"]
        calls["n"] += 1
        if kill_at is not None and i == kill_at:
            raise Killed
        return greedy_by_call[i], {1: greedy_by_call[i]}

    monkeypatch.setattr(build, "dev_accuracy", fake)
    return calls


def train(tmp_path, steps, lr=1e-3, **kw):
    cfg = build.BuildConfig(out=tmp_path / "out", work=tmp_path / "work", eval_every=2)
    return build._train_policy(cfg, TINY, steps, lr, 4, 0.99, tmp_path / "work" / "snaps",
                               tmp_path / "work" / "final", lambda m: None, **kw)


def test_plateaued_needs_patience_evaluations_without_a_new_best():
    h = [{"dev_greedy": g} for g in [0.3, 0.5, 0.6, 0.6, 0.55, 0.6]]
    assert build._plateaued(h, 3)  # 0.6, 0.55, 0.6 never beat 0.6
    assert not build._plateaued(h, 4)  # 0.6 at the 3rd evaluation beat 0.5
    assert not build._plateaued(h, None)
    assert not build._plateaued(h[:2], 3)


def test_training_stops_at_the_plateau(monkeypatch, tmp_path):
    scripted_dev(monkeypatch, [0.2, 0.5, 0.4, 0.5, 0.3, 0.9, 0.9])
    history = train(tmp_path, 40, patience=3)
    assert [r["step"] for r in history] == [2, 4, 6, 8, 10]
    assert [r["dev_greedy"] for r in history] == [0.2, 0.5, 0.4, 0.5, 0.3]


def test_a_killed_run_resumes_from_its_checkpoint(monkeypatch, tmp_path):
    scripted_dev(monkeypatch, [0.1, 0.2, 0.3], kill_at=2)
    with pytest.raises(Killed):
        train(tmp_path, 6, resumable=True)
    assert (tmp_path / "work" / "final" / "_trainer" / "checkpoint-4").is_dir()
    calls = scripted_dev(monkeypatch, [0.3])  # only step 6 is left to evaluate
    history = train(tmp_path, 6, resumable=True)
    assert calls["n"] == 1
    assert [r["step"] for r in history] == [2, 4, 6]
    saved = json.loads((tmp_path / "work" / "final" / "history.json").read_text())
    assert [r["dev_greedy"] for r in saved] == [0.1, 0.2, 0.3]


def test_training_further_starts_from_the_given_weights(monkeypatch, tmp_path):
    scripted_dev(monkeypatch, [0.5, 0.5])
    model, tok = build._new_model(TINY)
    build._save(model, tok, tmp_path / "init", {})
    train(tmp_path, 2, lr=0.0, init=tmp_path / "init")
    trained = build._load_float32(tmp_path / "work" / "final").state_dict()
    for name, value in model.state_dict().items():
        assert torch.equal(trained[name], value), name  # learning rate 0: weights unchanged


@pytest.mark.parametrize("flags,needles", [
    (["--large-init", "nowhere"], ("--large-init", "no model there")),
    (["--large-patience", "0"], ("--large-patience",)),
    (["--large-lr", "0"], ("--large-lr", "must be > 0")),
])
def test_bad_large_options_are_one_line_errors(capsys, tmp_path, flags, needles):
    from cli_helpers import assert_one_line_error, run_cli

    code, _, err = run_cli(capsys, ["testbed", "train", "--stages", "large", "--work",
                                    str(tmp_path / "w"), "--out", str(tmp_path / "o"), *flags])
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "w").exists()  # nothing started
