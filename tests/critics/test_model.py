"""The critic model: scores are probabilities, batching changes nothing, and save -> load is exact."""

import json
import math

import pytest
import torch

from qstar.critics.load import load_critics
from qstar.critics.model import (
    CriticSpec,
    HFCritic,
    critic_from_policy,
    load_spec,
    prompt_template,
    token_logprob_features,
)
from qstar.errors import QstarError
from qstar.models.load import load_tokenizer
from qstar.tasks import get_task

QUESTIONS = ["Ann has 5 pens. She buys 3. How many now?", "Bob has 12 cards. She loses 4. How many now?",
             "Cal has {7} eggs. How many now?"]
STEPS = [["5+3=8\n", "#### 8"], ["12-4=8\n"], []]



def _critic(model_dir, role: str = "value", seed: int = 0, policy_features: bool = True) -> HFCritic:
    spec = CriticSpec(role=role, task="arith", step_delimiter="\n", prompt_template="{question}\n", max_length=320,
                      policy_features=policy_features)
    critic = critic_from_policy(model_dir, load_tokenizer(model_dir), spec)
    torch.manual_seed(seed)  # a random, non-zero head so the scores differ from row to row
    torch.nn.init.normal_(critic.model.head.weight, std=0.05)
    return critic


def test_prompt_template_matches_the_task_prompt():
    task = get_task("arith")
    problem = task.problems("train", 1, seed=3)[0]
    spec = CriticSpec("orm", "arith", "\n", prompt_template(task), 320)
    assert spec.text(problem.question, ["1+1=2\n", "#### 2"]) == task.prompt(problem) + "1+1=2\n#### 2"
    assert spec.text("{question} {x}", []) == "{question} {x}\n"  # braces in a question are kept as they are


@pytest.mark.parametrize("fixture", ["char_model_dir", "bpe_model_dir"])
def test_scores_are_probabilities_and_batching_changes_nothing(fixture, request):
    critic = _critic(request.getfixturevalue(fixture))
    questions, steps = QUESTIONS * 3, STEPS * 3
    batched = critic.score(questions, steps)
    alone = [critic.score([q], [s])[0] for q, s in zip(questions, steps, strict=True)]
    assert all(0.0 <= s <= 1.0 for s in batched)
    assert batched == pytest.approx(alone, abs=1e-6)
    assert len(set(round(s, 6) for s in batched)) == 3  # different texts, different scores
    critic.batch_size = 2  # several padded batches, sorted by length, give the same scores in order
    assert critic.score(questions, steps) == pytest.approx(batched, abs=1e-6)


@pytest.mark.parametrize("fixture", ["char_model_dir", "bpe_model_dir"])
def test_encoding_marks_where_the_solution_starts(fixture, request):
    critic = _critic(request.getfixturevalue(fixture))
    tok = critic.tokenizer
    enc = critic.encode(QUESTIONS[0], STEPS[0])
    prompt_ids = tok(QUESTIONS[0] + "\n")["input_ids"]
    assert enc["input_ids"] == tok(QUESTIONS[0] + "\n5+3=8\n#### 8")["input_ids"]
    assert enc["input_ids"][: enc["solution_start"]] == prompt_ids[: enc["solution_start"]]
    assert tok.decode(enc["input_ids"][enc["solution_start"] :]).endswith("5+3=8\n#### 8")
    assert critic.encode(QUESTIONS[0], [])["solution_start"] == len(prompt_ids)


def test_long_inputs_keep_their_end(char_model_dir):
    critic = _critic(char_model_dir)
    critic.spec.max_length = 16
    enc = critic.encode(QUESTIONS[0], STEPS[0])
    assert len(enc["input_ids"]) == 16 and critic.tokenizer.decode(enc["input_ids"]).endswith("#### 8")
    assert enc["solution_start"] == 4  # the 12 characters of "5+3=8\n#### 8" follow the last 4 of the prompt
    assert 0.0 <= critic.score(QUESTIONS[:1], STEPS[:1])[0] <= 1.0


def test_policy_features_are_the_log_probs_of_the_solution_tokens():
    # vocabulary of 2; row 0: tokens [0, 1, 1, 0] with the solution from position 2; row 1 padded, no solution
    logits = torch.log(torch.tensor([[[0.5, 0.5], [0.2, 0.8], [0.9, 0.1], [0.5, 0.5]],
                                     [[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]]))
    ids = torch.tensor([[0, 1, 1, 0], [0, 1, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    got = token_logprob_features(logits, ids, mask, torch.tensor([2, 2]))
    total = math.log(0.8) + math.log(0.9)
    logs = torch.tensor([[math.log(0.8), total / 2, total], [0.0, 0.0, 0.0]])
    want = torch.cat([logs, logs.exp()], dim=-1)  # row 1: nothing surprising, probabilities 1
    assert torch.allclose(got, want, atol=1e-6)


def test_save_then_load_gives_the_same_scores(char_model_dir, tmp_path):
    critics = {role: _critic(char_model_dir, role, seed=i) for i, role in enumerate(("value", "prm", "orm"))}
    critics["orm"] = _critic(char_model_dir, "orm", seed=5, policy_features=False)
    for role, critic in critics.items():
        critic.save(tmp_path / role, extra={"train_summary.json": {"role": role}})
    loaded = load_critics(tmp_path)
    for role, critic in critics.items():
        assert loaded.get(role).name == role
        assert loaded.get(role).score(QUESTIONS, STEPS) == critic.score(QUESTIONS, STEPS)
    assert json.loads((tmp_path / "prm" / "train_summary.json").read_text()) == {"role": "prm"}
    assert not list(tmp_path.glob("*.tmp"))


def test_missing_or_wrong_critics_are_clear_errors(char_model_dir, tmp_path):
    with pytest.raises(QstarError, match="no trained critics"):
        load_critics(tmp_path)
    _critic(char_model_dir, "orm").save(tmp_path / "value")
    with pytest.raises(QstarError, match="holds a orm critic"):
        load_critics(tmp_path)
    (tmp_path / "value" / "critic.json").write_text(json.dumps({"role": "judge"}))
    with pytest.raises(QstarError, match="unreadable"):
        load_spec(tmp_path / "value")
    with pytest.raises(QstarError, match="no critic.json"):
        load_spec(tmp_path)
