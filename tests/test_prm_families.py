"""Each PRM family on a tiny random model built here with that family's real architecture and
tokens: Qwen2.5-Math-PRM (Qwen2 token classifier, ``<extra_0>``), math-shepherd (Mistral causal
LM, ``ки`` and ``▁+``/``▁-``), Skywork-o1-Open-PRM (Qwen2 causal LM + ``v_head.summary``); the
refusal of checkpoints whose head would be freshly initialised; the HTTP math-shepherd path
against a loopback server that pools like vLLM's STEP pooler."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from hf_tiny import (
    save,
    tiny_policy,
    tiny_qwen_prm,
    tiny_shepherd_prm,
    tiny_token_classifier,
    tiny_value_head_prm,
)

from ttscale.tasks import testbed
from ttscale.verifiers import StepScorer, load_verifier
from ttscale.verifiers.causal_prm import MathShepherdPRM, ValueHeadPRM
from ttscale.verifiers.checkpoint import MissingWeightsError
from ttscale.verifiers.hf_prm import QwenPRM
from ttscale.verifiers.http_prm import HTTPPRM
from ttscale.verifiers.prm_input import question_of_prompt, qwen_messages

PROBLEMS = testbed.TestbedTask(split="test", n=3, min_ops=2, max_ops=4).problems()
PROMPTS = [p.prompt for p in PROBLEMS]
SOLUTIONS = [testbed.parse_question(p.question).gold_steps() for p in PROBLEMS]
SOLUTIONS[1] = SOLUTIONS[1][:1] + ["b:zz"] + SOLUTIONS[1][1:]


def chatml(question: str) -> str:
    """A policy prompt as an instruction-tuned policy's ChatML template writes it."""
    return (f"<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n{question}"
            "<|im_end|>\n<|im_start|>assistant\n")


def assert_one_line(exc: pytest.ExceptionInfo, *names: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg
    for n in names:
        assert n in msg


# -- the question behind a policy prompt --

@pytest.mark.parametrize("prompt", [
    chatml("What is 2+2?"),
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "<bos><start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
    "<s>[INST] What is 2+2? [/INST]",
    "What is 2+2?",
])
def test_the_question_is_taken_out_of_any_chat_template(prompt):
    assert question_of_prompt(prompt) == "What is 2+2?"


# -- Qwen2.5-Math-PRM --

def test_in_process_qwen_prm_reads_the_question_not_the_policy_chat(tiny_qwen_prm_dir):
    prm = QwenPRM.from_pretrained(tiny_qwen_prm_dir)
    question = PROBLEMS[0].question
    text = prm.render(chatml(question), SOLUTIONS[0])
    assert text.count("<|im_start|>user") == 1 and "You are helpful" not in text
    # the same conversation the HTTP client sends
    client = HTTPPRM("http://127.0.0.1:9", input_format="chat")
    assert client._messages(chatml(question), SOLUTIONS[0]) == qwen_messages(
        prm.system_prompt, question, SOLUTIONS[0])
    client.close()
    want = prm.tokenizer.apply_chat_template(
        qwen_messages(prm.system_prompt, question, SOLUTIONS[0]), tokenize=False)
    assert text == want
    a = prm.score([chatml(question)], SOLUTIONS[:1]).scores
    b = prm.score([question], SOLUTIONS[:1]).scores
    assert a == b


def test_a_causal_lm_given_as_qwen_prm_is_refused(tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    _, tok = tiny_qwen_prm()
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2)
    path = save(Qwen2ForCausalLM(cfg), tok, tmp_path / "lm")
    with pytest.raises(MissingWeightsError) as e:
        load_verifier(path, kind="qwen-prm")
    assert_one_line(e, "score.weight", "freshly initialised")


# -- math-shepherd --

@pytest.fixture(scope="module")
def shepherd_dir(tmp_path_factory):
    model, tok = tiny_shepherd_prm()
    return save(model, tok, tmp_path_factory.mktemp("shepherd") / "prm")


def shepherd_reference(model, tok, question: str, steps: list[str]) -> list[float]:
    """math-shepherd's published recipe, verbatim in spirit: the whole text through the model,
    the +/- logits at every step-tag token, softmax, the + column."""
    good, bad = tok.encode("+ -", add_special_tokens=False)
    tag_id = tok.encode(" ки", add_special_tokens=False)[-1]
    text = question + " " + "\n".join(f"{s} ки" for s in steps)
    ids = tok(text)["input_ids"]
    if ids[0] != tok.bos_token_id:
        ids = [tok.bos_token_id] + ids
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    at = torch.tensor(ids) == tag_id
    return torch.softmax(logits[at][:, [good, bad]], -1)[:, 0].tolist()


def test_math_shepherd_scores_are_p_plus_at_each_step_tag(shepherd_dir):
    prm = load_verifier(shepherd_dir, kind="math-shepherd", step_delimiter="\n")
    assert isinstance(prm, MathShepherdPRM) and isinstance(prm, StepScorer)
    tok = prm.tokenizer
    assert tok.convert_ids_to_tokens(prm.label_ids.tolist()) == ["\u2581+", "\u2581-"]
    res = prm.score(PROMPTS, SOLUTIONS)
    for prompt, steps, got in zip(PROMPTS, SOLUTIONS, res.scores, strict=True):
        want = shepherd_reference(prm.model, tok, prompt, steps)
        assert len(got) == len(steps)
        torch.testing.assert_close(torch.tensor(got), torch.tensor(want), rtol=1e-4, atol=1e-5)
    # a step's score depends only on the steps up to it; micro-batching changes nothing
    prefix = prm.score(PROMPTS[:1], [SOLUTIONS[0][:2]]).scores[0]
    assert prefix == pytest.approx(res.scores[0][:2], abs=1e-5)
    one = MathShepherdPRM(prm.model, tok, max_batch=1)
    for a, b in zip(one.score(PROMPTS, SOLUTIONS).scores, res.scores, strict=True):
        assert a == pytest.approx(b, abs=1e-5)
    assert res.tokens > 0 and prm.num_parameters == sum(
        p.numel() for p in prm.model.parameters())


def test_math_shepherd_given_as_token_classification_is_refused(shepherd_dir):
    with pytest.raises(MissingWeightsError) as e:
        load_verifier(shepherd_dir, kind="token-classification")
    assert_one_line(e, "score.weight", str(shepherd_dir))


def test_a_token_classifier_given_as_math_shepherd_is_refused(tmp_path):
    model, tok = tiny_token_classifier()
    path = save(model, tok, tmp_path / "tc")
    with pytest.raises(MissingWeightsError) as e:
        load_verifier(path, kind="math-shepherd")
    assert_one_line(e, "lm_head.weight")


def test_math_shepherd_label_tokens_must_exist(shepherd_dir):
    prm = MathShepherdPRM.from_pretrained(shepherd_dir)
    with pytest.raises(ValueError, match="no single token for the label"):
        MathShepherdPRM(prm.model, prm.tokenizer, good_token="good!", bad_token="bad?")


# -- Skywork-o1-Open-PRM style value head --

@pytest.fixture(scope="module")
def value_dir(tmp_path_factory):
    return tiny_value_head_prm(tmp_path_factory.mktemp("value") / "prm")


def skywork_reference(path, question: str, steps: list[str]) -> list[float]:
    """Skywork's prepare_input + PRM_MODEL forward, on the causal LM loaded as transformers
    saves it: BOS + question + "\\n", each step encoded alone + the "\\n" token, sigmoid of the
    value head at the step tokens."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    lm = AutoModelForCausalLM.from_pretrained(str(path)).eval()
    head = load_file(str(path / "model.safetensors"))
    step_id = tok.encode("\n", add_special_tokens=False)[-1]
    ids = tok.encode(tok.bos_token + question + "\n", add_special_tokens=False)
    flags = [0] * len(ids)
    for s in steps:
        part = tok.encode(s, add_special_tokens=False) + [step_id]
        ids += part
        flags += [0] * (len(part) - 1) + [1]
    with torch.inference_mode():
        hidden = lm(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0]
        value = hidden @ head["v_head.summary.weight"].T + head["v_head.summary.bias"]
    return torch.sigmoid(value[torch.tensor(flags) == 1, 0]).tolist()


def test_value_head_scores_are_the_sigmoid_of_the_head_at_each_step_end(value_dir):
    prm = load_verifier(value_dir, kind="value-head", step_delimiter="\n")
    assert isinstance(prm, ValueHeadPRM) and isinstance(prm, StepScorer)
    prompts = [chatml(p.question) for p in PROBLEMS]
    res = prm.score(prompts + [prompts[0]], SOLUTIONS + [[]])
    for p, steps, got in zip(PROBLEMS, SOLUTIONS, res.scores, strict=False):
        want = skywork_reference(value_dir, p.question, steps)
        torch.testing.assert_close(torch.tensor(got), torch.tensor(want), rtol=1e-4, atol=1e-5)
    assert res.scores[-1] == []
    prefix = prm.score(prompts[:1], [SOLUTIONS[0][:1]]).scores[0]
    assert prefix == pytest.approx(res.scores[0][:1], abs=1e-5)
    n_head = 32 + 1
    assert prm.num_parameters == sum(p.numel() for p in prm.model.backbone.parameters()) + n_head


def test_a_checkpoint_without_the_value_head_is_refused(tmp_path):
    path = tiny_value_head_prm(tmp_path / "bare", with_head=False)
    with pytest.raises(MissingWeightsError) as e:
        load_verifier(path, kind="value-head")
    assert_one_line(e, "v_head.summary.weight", "freshly initialised")


def test_a_value_head_of_the_wrong_width_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    path = tiny_value_head_prm(tmp_path / "wide")
    tensors = load_file(str(path / "model.safetensors"))
    tensors["v_head.summary.weight"] = torch.zeros(1, 7)
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(MissingWeightsError, match=r"shape \(1, 7\)"):
        load_verifier(path, kind="value-head")


def test_a_policy_given_as_a_token_classification_prm_is_refused(tmp_path):
    model, tok = tiny_policy()
    path = save(model, tok, tmp_path / "policy")
    with pytest.raises(MissingWeightsError) as e:
        load_verifier(path, kind="token-classification")
    assert_one_line(e, "score.weight")


# -- math-shepherd over HTTP: a loopback server pooling like vLLM's STEP pooler --

class _StepPooler(BaseHTTPRequestHandler):
    """``POST /pooling`` {"input": [texts]}: per step-tag token, the softmax over the returned
    token ids (vLLM ``pooling_type=STEP, step_tag_id, returned_token_ids``)."""

    model = tok = None
    tag_id = 0
    returned: list[int] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        self._send({"object": "list", "data": [{"id": "shepherd-alias"}]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data, used = [], 0
        for k, text in enumerate(texts):
            ids = [self.tok.bos_token_id] + self.tok(text, add_special_tokens=False)["input_ids"]
            used += len(ids)
            with torch.inference_mode():
                logits = self.model(input_ids=torch.tensor([ids])).logits[0]
            at = torch.tensor(ids) == self.tag_id
            rows = torch.softmax(logits[at][:, self.returned], -1).tolist()
            data.append({"index": k, "data": rows})
        self._send({"object": "list", "data": data, "usage": {"prompt_tokens": used}})

    def _send(self, obj):
        raw = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


def test_math_shepherd_over_http_equals_in_process(shepherd_dir, caplog):
    prm = MathShepherdPRM.from_pretrained(shepherd_dir)
    handler = type("H", (_StepPooler,), {
        "model": prm.model, "tok": prm.tokenizer,
        "tag_id": prm.tokenizer.encode(" ки", add_special_tokens=False)[-1],
        "returned": prm.label_ids.tolist()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        client = load_verifier(url, kind="math-shepherd", step_delimiter="\n")
        with caplog.at_level("WARNING", logger="ttscale"):
            got = client.score(PROMPTS, SOLUTIONS)
        want = prm.score(PROMPTS, SOLUTIONS)
        for a, b in zip(got.scores, want.scores, strict=True):
            assert a == pytest.approx(b, abs=1e-5)
        assert got.tokens == want.tokens
        # the alias says no size: warned once, naming the override
        assert client.num_parameters == 0
        assert [r for r in caplog.records if "prm_params" in r.getMessage()]
        client.close()
        sized = load_verifier(url, kind="math-shepherd", num_parameters=7_000_000_000)
        sized.score(PROMPTS[:1], SOLUTIONS[:1])
        assert sized.num_parameters == 7_000_000_000
        sized.close()
    finally:
        server.shutdown()


def test_the_shipped_testbed_prm_loads_through_the_check():
    from ttscale.shipped import model_path
    from ttscale.verifiers.hf_prm import TokenClassificationPRM

    prm = load_verifier(model_path("prm"))
    assert isinstance(prm, TokenClassificationPRM)
    assert not any(p.requires_grad for p in prm.model.lm.parameters())  # body stays frozen
    scores = prm.score(PROMPTS[:1], SOLUTIONS[:1]).scores[0]
    assert len(scores) == len(SOLUTIONS[0]) and all(0 <= s <= 1 for s in scores)


@pytest.mark.parametrize("kind", ["math-shepherd", "value-head"])
def test_a_beam_search_run_scores_with_each_family(kind, shepherd_dir, value_dir, tmp_path):
    from ttscale.config import build_config
    from ttscale.runner import run

    prm = shepherd_dir if kind == "math-shepherd" else value_dir
    cfg = build_config(flags={"task": "testbed", "strategy": "beam", "budget": 4, "limit": 2,
                              "prm": str(prm), "out": str(tmp_path)},
                       sets=[f"prm_kind={kind}", "options.beam_width=2"])
    summary = run(cfg, progress=False)
    assert summary.n_problems == 2 and summary.cost["prm_tokens"] > 0
    assert summary.cost["prm_flops"] > 0


def test_the_cli_refuses_a_random_head_in_one_line(tmp_path, capsys):
    from cli_helpers import assert_one_line_error, run_cli

    model, tok = tiny_policy()
    path = save(model, tok, tmp_path / "policy-as-prm")
    capsys.readouterr()
    code, _, err = run_cli(capsys, ["run", "--task", "testbed", "--strategy", "beam",
                                    "--budget", "4", "--limit", "1", "--prm", str(path),
                                    "--out", str(tmp_path / "runs")])
    # transformers' weight-loading progress bars are not errors; nothing else may be printed
    err = "\n".join(line for line in err.replace("\r", "\n").splitlines()
                    if not line.startswith("Loading weights"))
    assert "LOAD REPORT" not in err
    assert_one_line_error(code, err, "score.weight", "freshly initialised")
