"""The built-in character-level tokenizer: a ``PreTrainedTokenizerFast`` built locally with ``tokenizers``.

One token per character keeps the tiny default model honest about digits. Nothing in search
assumes this: any Hugging Face tokenizer works as the policy's.
"""

from __future__ import annotations

import string

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
CHARS = "\n" + "".join(c for c in string.printable if c.isprintable())  # printable ASCII + newline


def build_char_tokenizer(chars: str = CHARS):
    """A fast tokenizer whose vocabulary is the special tokens plus one token per character."""
    from tokenizers import Tokenizer, decoders, models, processors
    from transformers import PreTrainedTokenizerFast

    specials = [PAD, BOS, EOS, UNK]
    vocab = {tok: i for i, tok in enumerate(specials + sorted(set(chars)))}
    # BPE with no merges splits the whole text into characters and never merges them.
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    core.decoder = decoders.Fuse()  # join characters back without spaces
    # Every encoded prompt starts with BOS, so the first real character has a context.
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        clean_up_tokenization_spaces=False,
    )
