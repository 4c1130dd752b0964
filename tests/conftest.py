"""Shared fixtures: tiny models saved on disk, so tests load them as users do (``--model DIR``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tiny models gain nothing from intra-op threads, and on a busy 2-core machine OpenMP spin-waits make two
# threads many times slower than one. Subprocess CLI tests inherit this too.
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def write_jsonl(path: Path, rows: list[dict], gz: bool = False) -> str:
    """``rows`` as a JSONL file (gzipped with ``gz``), as the data tasks read them; returns the path."""
    import gzip
    import json

    text = "".join(json.dumps(row) + "\n" for row in rows)
    if gz:
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return str(path)


def save_tiny_llama(tokenizer, out: Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    from qstar.models.tiny import TinyModelConfig, build_tiny_llama

    cfg = TinyModelConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_layers=layers, num_heads=2)
    model = build_tiny_llama(cfg, tokenizer, seed=seed)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def char_model_dir(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer Llama with the built-in character tokenizer."""
    from qstar.models.tokenizer import build_char_tokenizer

    return save_tiny_llama(build_char_tokenizer(), tmp_path_factory.mktemp("char-model"))


@pytest.fixture(scope="session")
def bpe_tokenizer(tmp_path_factory):
    """A byte-level BPE tokenizer trained locally on GSM8K text: multi-character tokens, '\\n' inside merges."""
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = []
    with open(SHARED_DATA / "gsm8k" / "train.jsonl") as f:
        for i, line in enumerate(f):
            if i >= 2000:
                break
            row = json.loads(line)
            texts.append(row["question"] + "\n" + row["answer"])
    core = Tokenizer(models.BPE())
    # No regex split: merges may then cross whitespace, giving tokens such as ".\n" that hold the delimiter.
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


@pytest.fixture(scope="session")
def bpe_model_dir(tmp_path_factory, bpe_tokenizer) -> Path:
    return save_tiny_llama(bpe_tokenizer, tmp_path_factory.mktemp("bpe-model"))
