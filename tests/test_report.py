"""`ttscale report` and `ttscale demo`: the HTML page holds the figures, the numbers and a search
tree that matches the stored trace; it renders in headless Chromium; errors are one line."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from fakes import FakeGenerator, FakeScorer

from ttscale.analysis.cli import build_sweep_config
from ttscale.analysis.sweep import Parts, sweep
from ttscale.cli import main
from ttscale.report.html import build_report
from ttscale.report.tree import build_tree, render_tree
from ttscale.store.sqlite import Store

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweep")
    cfg, plan = build_sweep_config("testbed", "majority,best-of-n,weighted-best-of-n,beam,dvts,"
                                   "lookahead", "1,4,16", limit=12, seed=0, out=str(out),
                                   sets=["max_step_tokens=16", "max_rounds=12",
                                         "options.lookahead=1"])
    parts = Parts(cfg, "fake-policy", "fake-prm",
                  generator=FakeGenerator(accuracy=lambda k: 0.95 ** (2 * k)),
                  scorer=FakeScorer(noise=0.3))
    sweep(cfg, plan, progress=False, parts=parts)
    return out


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in
            re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_report_has_figures_numbers_and_the_stored_tree(sweep_dir, tmp_path):
    dest = build_report(sweep_dir, dest=tmp_path / "r.html")
    page = dest.read_text(encoding="utf-8")
    summary = json.loads((sweep_dir / "sweep.json").read_text())
    imgs = _images(page)
    # overall, compute, oracle bins, task difficulty
    assert len(imgs) == 4 and all(i.startswith(PNG_MAGIC) and len(i) > 5000 for i in imgs)
    for name in summary["strategies"]:
        assert f"<th>{name}</th>" in page
    beam16 = summary["results"]["beam-m4"]["16"]
    assert f"<b>{beam16['accuracy']:.3f}</b>" in page  # the detail table has the number
    # the tree: the default pick is beam-m4 at N=16; one list item per stored trace node
    m = re.search(r"question <code>([^<]+)</code>", page)
    assert m and "beam-m4</b> at N=16" in page
    with Store(sweep_dir / "ttscale.db") as store:
        row = next(r for r in store.results(beam16["run_key"]) if r.problem_id == m.group(1))
    nodes = [n for rnd in row.trace for n in rnd["nodes"]]
    tree_html = page[page.index('id=\'tree\''):]
    assert tree_html.count('<span class="node ') == len(nodes) + 1  # + the question
    assert tree_html.count("<li>") == len(nodes) + 1
    for n in nodes:
        assert f"<code>{n['step']}</code>" in tree_html
    pruned = sum(not n["kept"] and not n["finished"] for n in nodes)
    assert tree_html.count('class="node pruned"') == pruned > 0
    assert tree_html.count('class="truth ') == len(nodes)  # testbed: exact label per step
    assert "★ chosen" in tree_html and row.question in tree_html


def test_report_tree_options_and_errors(sweep_dir, tmp_path, capsys):
    summary = json.loads((sweep_dir / "sweep.json").read_text())
    qid = summary["questions"][3]["id"]
    code = main(["report", str(sweep_dir), "--dest", str(tmp_path / "d.html"),
                 "--tree-strategy", "dvts", "--tree-budget", "4", "--question", qid])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.strip() == str(tmp_path / "d.html")
    page = (tmp_path / "d.html").read_text()
    assert f"dvts</b> at N=4, question <code>{qid}</code>" in page
    assert 'class="sub">tree ' in page  # DVTS nodes name their subtree

    def one_line_error(argv, needle):
        code = main(argv)
        out, err = capsys.readouterr()
        lines = [x for x in err.splitlines() if x.strip()]
        assert code != 0 and out == "" and len(lines) == 1, err
        assert lines[0].startswith("error: ") and needle in lines[0], lines[0]

    base = ["report", str(sweep_dir), "--dest", str(tmp_path / "e.html")]
    one_line_error([*base, "--question", "nope"], "--question 'nope'")
    one_line_error([*base, "--tree-strategy", "majority"], "no stored tree run")
    one_line_error([*base, "--tree-budget", "64"], "--tree-budget 64")
    one_line_error(["report", str(tmp_path / "missing")], "not a folder")
    one_line_error(["report", str(tmp_path)], "no sweep.json in")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "sweep.json").write_text("{not json")
    one_line_error(["report", str(bad)], "is not valid JSON")
    (bad / "sweep.json").write_text('{"a": 1}')
    one_line_error(["report", str(bad)], "not a ttscale sweep summary")
    one_line_error(["report"], "Missing argument")
    assert not (tmp_path / "e.html").exists()


def test_report_of_a_sweep_without_tree_search(tmp_path):
    cfg, plan = build_sweep_config("testbed", "majority", "1,2", limit=6, out=str(tmp_path))
    sweep(cfg, plan, progress=False,
          parts=Parts(cfg, "fake-policy", None, generator=FakeGenerator(0.6)))
    page = build_report(tmp_path).read_text()
    assert "ran no tree search" in page and len(_images(page)) == 4
    assert "not scored" in page  # no PRM: no within-question AUC


TRACE = [
    {"round": 0, "nodes": [
        {"id": 1, "parent": 0, "step": "a:10+1=11", "score": 0.9, "kept": True,
         "finished": False, "answer": None},
        {"id": 2, "parent": 0, "step": "a:10+1=12", "score": 0.2, "kept": False,
         "finished": False, "answer": None}]},
    {"round": 1, "nodes": [
        {"id": 3, "parent": 1, "step": "A:11", "score": 0.8, "kept": False, "finished": True,
         "answer": "11"},
        {"id": 4, "parent": 1, "step": "b:11*2=<b>", "score": None, "kept": False,
         "finished": True, "answer": None}]},
]


def test_tree_follows_parent_links_and_rejects_a_broken_trace():
    nodes = build_tree(TRACE)
    assert [c.id for c in nodes[0].children] == [1, 2]
    assert [c.id for c in nodes[1].children] == [3, 4]
    assert nodes[3].path == ["a:10+1=11", "A:11"]
    from ttscale.tasks.testbed import parse_question, step_correctness

    q = parse_question("Q:10a+1")
    frag = render_tree(TRACE, question="Q:10a+1", gold="11", chosen="11",
                       step_labels=lambda steps: step_correctness(q, steps),
                       grade=lambda a: a == "11")
    assert frag.count('class="truth ok"') == 2 and frag.count('class="truth bad"') == 2
    assert "answer 11 ✓ ★ chosen" in frag and "finished, no answer" in frag
    assert "b:11*2=&lt;b&gt;" in frag and "b:11*2=<b>" not in frag  # model text is escaped
    assert "4 nodes over 2 rounds: 1 kept, 1 pruned, 2 finished" in frag
    with pytest.raises(ValueError, match="node 5 has unknown parent 9"):
        build_tree([{"nodes": [{"id": 5, "parent": 9}]}])
    with pytest.raises(ValueError, match="node id 1 appears twice"):
        build_tree([TRACE[0], TRACE[0]])
    with pytest.raises(ValueError, match="round 0 has no 'nodes'"):
        build_tree([{"round": 0}])


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None,
                    reason="headless Chromium not installed (Debian: apt-get install chromium)")
def test_report_renders_in_headless_chromium(sweep_dir, tmp_path):
    page = build_report(sweep_dir, dest=tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", f"--user-data-dir={profile}", "--window-size=1280,2400",
             f"--screenshot={shot}", page.resolve().as_uri()],
            capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = shot.read_bytes()
    assert data.startswith(PNG_MAGIC)
    image = pytest.importorskip("PIL.Image")
    with image.open(shot) as im:
        assert im.size == (1280, 2400)
        # a rendered page with figures has many colours; a blank or error page has a handful
        colours = im.convert("RGB").resize((320, 600)).getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 200


def test_demo_runs_the_sweep_and_prints_the_report_path(tmp_path, capsys, tiny_policy_dir,
                                                         tiny_prm_dir):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--limit", "3", "--budgets", "1,4",
            "--policy", str(tiny_policy_dir), "--prm", str(tiny_prm_dir), "--no-progress"]
    code = main(argv)
    cap = capsys.readouterr()
    assert code == 0, cap.err
    last = cap.out.strip().splitlines()[-1]
    assert Path(last) == (out / "report.html").resolve() and Path(last).is_file()
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["strategies"] == ["oracle", "majority", "best-of-n", "weighted-best-of-n",
                                     "beam-m4", "dvts"]
    assert summary["n_problems"] == 3 and summary["config"]["max_rounds"] == 12
    assert "beam-m4</b> at N=4" in Path(last).read_text()
    # a missing model is one line naming it, and nothing is written
    code = main(["demo", "--out", str(tmp_path / "d2"), "--policy", str(tmp_path / "nope"),
                 "--no-progress"])
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 1 and len(lines) == 1 and str(tmp_path / "nope") in lines[0]
    assert not (tmp_path / "d2" / "report.html").exists()
