"""One design for all three critics: the policy's causal LM plus a scalar head, read as P(correct).

The head is a linear map to one logit, and ``sigmoid(logit)`` is the score. It reads the hidden state of
the text's last token from the policy's trunk (the base model under the LM head) and the policy's own
log-probabilities of the solution tokens (see :class:`CriticModel` for why). The text is the task's prompt
followed by the steps taken so far, so a critic sees exactly what the policy saw. Only the role (value,
PRM or ORM) and the labels it was trained on tell the three apart.

On disk a critic is a directory::

    config.json, model.safetensors   the causal LM (``save_pretrained``)
    tokenizer*                        the policy's tokenizer
    head.safetensors                  the head's weight and bias
    critic.json                       :class:`CriticSpec` (role, task, step delimiter, prompt template)
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from qstar.errors import QstarError

ROLES = ("value", "prm", "orm")
SPEC_NAME = "critic.json"
HEAD_NAME = "head.safetensors"
QUESTION = "{question}"
"""the placeholder of the question in :attr:`CriticSpec.prompt_template`"""


@dataclass
class CriticSpec:
    """What a saved critic needs besides its weights to turn (question, steps) into a score."""

    role: str
    """value | prm | orm: the search role this critic was trained for"""
    task: str
    """name of the task whose problems it was trained on"""
    step_delimiter: str
    """the task's step delimiter (the steps it scores end with it)"""
    prompt_template: str
    """the task's prompt with the question replaced by ``{question}`` (so scoring needs no task object)"""
    max_length: int
    """longest input in tokens; longer texts keep their last ``max_length`` tokens"""
    policy_features: bool = True
    """the head also reads the LM's log-probabilities of the solution tokens (see CriticModel)"""

    def text(self, question: str, steps: list[str]) -> str:
        """The scored text: the prompt the policy saw, then the steps taken so far."""
        # str.replace, not str.format: questions may contain braces.
        return self.prompt_template.replace(QUESTION, question, 1) + "".join(steps)


def prompt_template(task) -> str:
    """The task's prompt as a template, found by prompting it with the placeholder as the question."""
    from qstar.tasks.base import Problem

    template = task.prompt(Problem(id="template", question=QUESTION, answer=""))
    if template.count(QUESTION) != 1:
        raise QstarError(f"task {task.name}: its prompt must contain the question exactly once")
    return template


N_POLICY_FEATURES = 6
"""the policy's own view of the solution tokens: the minimum, mean and sum of their log-probabilities,
and the exponential of each (a linear head on both scales fits the score's shape better: on arith it
halved the ORM's held-out calibration error, 0.082 -> 0.050)"""
MIN_LOGPROB = -20.0
"""log-probabilities are clipped here, so one impossible token cannot dominate the head's input"""


class CriticModel(nn.Module):
    """The policy's causal LM + a linear head; ``forward`` gives one logit per row (and a loss with labels).

    The head reads the trunk's hidden state of the last real token and, with ``policy_features``, the
    minimum, mean and sum of the log-probabilities the LM gives the solution's tokens (its own surprise),
    each also exponentiated.
    Why the features: on its own the last-token state must learn to re-check every step's arithmetic from a
    few thousand examples, and in our measurements it did not within a CPU budget (a balanced set of
    corrupted steps stayed at chance after 200 fine-tuning steps; a probe on it alone reached AUROC 0.6),
    while the policy's log-probs rank solutions well with no training (AUROC 0.75-0.90 on arith).

    Inputs are right-padded: causal attention keeps pads on the right invisible to real tokens, and
    positions still start at 0, so a padded row scores exactly as it would alone.
    """

    def __init__(self, lm: nn.Module, policy_features: bool = True, head: nn.Linear | None = None):
        super().__init__()
        self.lm = lm
        self.policy_features = policy_features
        width = lm.config.hidden_size + (N_POLICY_FEATURES if policy_features else 0)
        self.head = head if head is not None else nn.Linear(width, 1)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 solution_start: torch.Tensor) -> torch.Tensor:
        """What the head reads, (B, D): the last real token's hidden state [+ the policy features]."""
        hidden = self.lm.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        last = attention_mask.sum(dim=1) - 1  # (B,) index of each row's last real token
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()  # (B, H)
        if not self.policy_features:
            return pooled
        logits = self.lm.get_output_embeddings()(hidden)  # (B, T, V)
        return torch.cat([pooled, token_logprob_features(logits, input_ids, attention_mask, solution_start)], -1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, solution_start: torch.Tensor,
                labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits = self.head(self.features(input_ids, attention_mask, solution_start)).squeeze(-1)  # (B,)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = critic_loss(logits, labels)
        return out

    def init_head(self, base_rate: float) -> None:
        """Predict the training labels' mean everywhere: zero weight, bias = logit(base rate)."""
        p = min(max(base_rate, 1e-3), 1 - 1e-3)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.fill_(float(torch.logit(torch.tensor(p))))


def token_logprob_features(logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                           solution_start: torch.Tensor) -> torch.Tensor:
    """(B, 6): min, mean and sum of the log-probabilities of the solution's tokens (positions >=
    ``solution_start``) under the LM, then their exponentials; a row without solution tokens gets log-probs
    of 0 (nothing surprising yet)."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, T-1, V): predicts tokens 1..T-1
    taken = logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1).clamp(min=MIN_LOGPROB)  # (B, T-1)
    pos = torch.arange(1, input_ids.shape[1], device=input_ids.device)  # position of each predicted token
    valid = (pos[None, :] >= solution_start.clamp(min=1)[:, None]) & attention_mask[:, 1:].bool()  # (B, T-1)
    count = valid.sum(dim=1)  # (B,)
    total = (taken * valid).sum(dim=1)
    low = torch.where(valid, taken, torch.zeros_like(taken)).min(dim=1).values
    logs = torch.stack([low, total / count.clamp(min=1), total], dim=-1)  # (B, 3)
    return torch.cat([logs, logs.exp()], dim=-1)


def critic_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of sigmoid(logits) against labels in [0, 1] (soft labels allowed).

    BCE rather than MSE: both are minimised by the conditional mean of the label (the Monte Carlo
    return for the value), so either learns P(correct); BCE is a proper log score whose gradient
    does not vanish when the sigmoid saturates, and it matches the PRM and ORM's binary labels.
    """
    return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


def pad_batch(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists into ``(input_ids, attention_mask)``, both (B, T)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


def collate(rows: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """A batch of encoded rows (``input_ids``, ``solution_start`` and optional float ``labels``) as tensors."""
    ids, mask = pad_batch([r["input_ids"] for r in rows], pad_id)
    batch = {"input_ids": ids, "attention_mask": mask,
             "solution_start": torch.tensor([r["solution_start"] for r in rows], dtype=torch.long)}
    if "labels" in rows[0]:
        batch["labels"] = torch.tensor([r["labels"] for r in rows], dtype=torch.float32)
    return batch


class HFCritic:
    """A trained critic behind the :class:`~qstar.search.protocols.Critic` protocol (batched scoring)."""

    def __init__(self, model: CriticModel, tokenizer, spec: CriticSpec, batch_size: int = 64):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.spec = spec
        self.name = spec.role
        self.batch_size = batch_size
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def encode(self, question: str, steps: list[str]) -> dict:
        """``{"input_ids", "solution_start"}`` of a scored text, tokenised as the policy tokenises a prompt.

        ``solution_start`` is the first token after the prompt: the prompt's own tokens, minus any the
        tokenizer merged across the boundary (a BPE token may hold the prompt's end and the first step).
        """
        prompt = self.tokenizer(self.spec.text(question, []))["input_ids"]
        ids = self.tokenizer(self.spec.text(question, steps))["input_ids"]
        start = next((i for i, (a, b) in enumerate(zip(prompt, ids, strict=False)) if a != b), min(len(prompt), len(ids)))
        cut = max(0, len(ids) - self.spec.max_length)  # the end decides the score; keep it when too long
        return {"input_ids": ids[cut:], "solution_start": max(0, start - cut)}

    def score(self, questions: list[str], steps: list[list[str]]) -> list[float]:
        """P(correct) for each (question, steps), in batches of similar length (less padding)."""
        return self.score_encoded([self.encode(q, s) for q, s in zip(questions, steps, strict=True)])

    @torch.no_grad()
    def score_encoded(self, encoded: list[dict]) -> list[float]:
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]["input_ids"]))
        scores = [0.0] * len(encoded)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            probs = torch.sigmoid(self.model(**collate([encoded[i] for i in chunk], self.pad_id))["logits"])
            for i, p in zip(chunk, probs.tolist(), strict=True):
                scores[i] = p
        return scores

    # -- save / load ------------------------------------------------------------------------------
    def save(self, out: Path, extra: dict[str, dict] | None = None) -> None:
        """Write the critic directory atomically: into a sibling temporary directory, then one rename.

        ``extra`` maps file names to JSON objects saved beside the weights (e.g. a training summary).
        """
        from safetensors.torch import save_file

        out = Path(out)
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.model.lm.save_pretrained(tmp)
        self.tokenizer.save_pretrained(tmp)
        head = {k: v.detach().contiguous() for k, v in self.model.head.state_dict().items()}
        save_file(head, str(tmp / HEAD_NAME))
        (tmp / SPEC_NAME).write_text(json.dumps(asdict(self.spec), indent=2))
        for name, obj in (extra or {}).items():
            (tmp / name).write_text(json.dumps(obj, indent=2))
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)

    @classmethod
    def load(cls, path: Path, batch_size: int = 64) -> HFCritic:
        """A critic from a directory written by :meth:`save` (local files only)."""
        from safetensors.torch import load_file

        from qstar.models.load import load_tokenizer

        path = Path(path)
        spec = load_spec(path)
        lm = _load_lm(path, f"critic {path}")
        try:
            head_state = load_file(str(path / HEAD_NAME))
        except (OSError, ValueError) as err:
            raise QstarError(f"critic {path}: cannot load its head ({err})") from err
        model = CriticModel(lm, spec.policy_features)
        model.head.load_state_dict(head_state)
        return cls(model, load_tokenizer(path), spec, batch_size)


def load_spec(path: Path) -> CriticSpec:
    """The :class:`CriticSpec` of a critic directory, with a clear error when it is missing or wrong."""
    file = Path(path) / SPEC_NAME
    if not file.is_file():
        raise QstarError(f"critic {path}: no {SPEC_NAME}; it was not written by qstar train-critics")
    try:
        spec = CriticSpec(**json.loads(file.read_text()))
    except (json.JSONDecodeError, TypeError) as err:
        raise QstarError(f"critic {path}: unreadable {SPEC_NAME} ({err})") from err
    if spec.role not in ROLES:
        raise QstarError(f"critic {path}: unknown role {spec.role!r}; expected one of {', '.join(ROLES)}")
    return spec


def critic_from_policy(policy_dir: Path, tokenizer, spec: CriticSpec) -> HFCritic:
    """A fresh critic initialised from the policy: its causal LM and a new head."""
    return HFCritic(CriticModel(_load_lm(policy_dir, f"--policy {policy_dir}"), spec.policy_features), tokenizer, spec)


def _load_lm(path: Path, who: str):
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as err:
        raise QstarError(f"{who}: cannot load a causal LM from it ({err})") from err
