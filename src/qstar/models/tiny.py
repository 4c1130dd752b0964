"""The built-in default policy: a tiny ``LlamaForCausalLM`` trained from scratch on the task."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TinyModelConfig:
    """Shape of the default model (about 0.9M parameters with the character vocabulary)."""

    hidden_size: int = 128
    """width of the residual stream"""
    intermediate_size: int = 384
    """width of the MLP"""
    num_layers: int = 4
    """transformer blocks"""
    num_heads: int = 4
    """attention heads"""
    max_positions: int = 320
    """longest sequence (prompt plus solution) the model sees"""


def build_tiny_llama(cfg: TinyModelConfig, tokenizer, seed: int = 0):
    """A freshly initialised Llama sized by ``cfg`` for ``tokenizer``'s vocabulary."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        rope_theta=10_000.0,
    )
    return LlamaForCausalLM(config)
