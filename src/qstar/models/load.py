"""Load any Hugging Face causal LM saved on disk, with clear errors instead of tracebacks."""

from __future__ import annotations

from pathlib import Path

from qstar.errors import QstarError

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_POLICY = ASSETS / "policy-arith"
"""The shipped default policy (trained once with ``qstar pretrain``; see its ``README.md``)."""


def default_policy(task: str | None = None) -> Path:
    """The shipped policy for ``task``: ``assets/policy-<task>`` where one ships, else :data:`DEFAULT_POLICY`.

    ``arith`` and ``code-arith`` each ship their own (see the ``README.md`` beside the weights); every
    other task, and ``None``, gets the arith policy as before.
    """
    if task:
        sibling = ASSETS / f"policy-{task}"
        if (sibling / "config.json").is_file():
            return sibling
    return DEFAULT_POLICY


def resolve_model_dir(model: str | Path | None, task: str | None = None) -> Path:
    """``None`` or ``"default"`` means the shipped policy for ``task``; anything else is a local directory."""
    if model is None or str(model) == "default":
        return default_policy(task)
    path = Path(model)
    if not path.is_dir():
        raise QstarError(f"--model {model}: no such directory (models load from local paths only)")
    if not (path / "config.json").is_file():
        raise QstarError(f"--model {model}: no config.json; save the model with save_pretrained()")
    if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
        raise QstarError(f"--model {model}: no tokenizer files; save the tokenizer beside the model")
    return path


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as err:  # transformers raises many types; the user needs one line
        raise QstarError(f"--model {path}: cannot load its tokenizer ({type(err).__name__}: {err})") from err
    if tok.pad_token_id is None:
        # Batched generation pads; reuse EOS as pad as most causal LMs do.
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(model: str | Path | None, dtype: str = "float32", task: str | None = None):
    """Return ``(model, tokenizer)`` for a local directory, in eval mode (``task`` picks the "default")."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    path = resolve_model_dir(model, task)
    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    except Exception as err:
        raise QstarError(f"--model {path}: unreadable config.json ({err})") from err
    archs = getattr(config, "architectures", None) or []
    if archs and not any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in archs):
        raise QstarError(f"--model {path}: {archs[0]} is not a causal language model")
    tokenizer = load_tokenizer(path)
    try:
        lm = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, dtype=getattr(torch, dtype))
    except (ValueError, OSError, KeyError) as err:
        raise QstarError(f"--model {path}: not a loadable causal LM ({err})") from err
    lm.eval()
    return lm, tokenizer
