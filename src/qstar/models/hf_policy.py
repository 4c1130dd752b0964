"""The Hugging Face backend of the search's :class:`~qstar.search.protocols.Policy`.

States are nodes of a *KV-cache tree*: each node stores the keys and values of its own
tokens only, and a child's forward pass starts from its parent's cached prefix, so a prefix
shared by many children is computed once. Expansions of many states (of many problems) are
batched into one forward pass: each row is laid out as

    [left pad][cached prefix KV][inner pad][not-yet-computed tokens] -> decode ...

with the pads masked out and explicit position ids, so rows of different lengths share a batch.
With ``reuse_cache=False`` every call recomputes each state's whole prefix (the baseline the
reuse is measured against); sampling is identical either way, so both build the same tree.

Written by hand because no library exposes a persistent prefix tree of KV caches with
per-row stop conditions (``generate`` restarts from the full prompt on every call).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from qstar.search.protocols import Option, TokenCost


@dataclass
class _Entry:
    """One node of the KV-cache tree: a run of tokens appended to its parent's prefix."""

    parent: int | None
    token_ids: list[int]
    kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    """per layer (keys, values) of shape (heads, n_computed, head_dim) for this node's first tokens"""
    n_computed: int = 0
    """how many of ``token_ids`` have their KV in ``kv`` (the rest are fed on the next extension)"""
    length: int = 0
    """tokens from the root's first token to this node's last one"""
    children: list[int] = field(default_factory=list)
    fed: bool = False
    """the last token has been fed to the model at least once"""
    sampled: bool = False
    """its tokens were sampled by this policy (not a prompt); the first feed of the last one is not a
    prompt token: that token was already counted as generated"""


@dataclass
class _Row:
    """One sequence being decoded."""

    state: int
    new_ids: list[int] = field(default_factory=list)
    text: str = ""
    logprob: float = 0.0
    finished: bool = False
    done: bool = False
    kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    """KV of the decoded tokens except the last, saved when the row stops"""


class HFPolicy:
    """A causal LM behind the Policy protocol, with KV-cache reuse across the search tree."""

    def __init__(
        self,
        model,
        tokenizer,
        step_delimiter: str = "\n",
        *,
        reuse_cache: bool = True,
        max_batch: int = 64,
        max_length: int | None = None,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.step_delimiter = step_delimiter
        self.reuse_cache = reuse_cache
        self.max_batch = max_batch
        self.max_length = max_length or getattr(model.config, "max_position_embeddings", 2048)
        self.eos_ids = _eos_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self.eos_ids))
        # Each token's text once, so stop checks never decode whole sequences (works for BPE and chars).
        self._piece = [tokenizer.decode([i]) for i in range(len(tokenizer))]
        # A solution never contains BOS, padding or unknown tokens: a tiny model sampled at T=0.8 would
        # otherwise emit them now and then, and they would leak into the text the verifier reads.
        self._banned = torch.tensor(sorted(
            {t for t in (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id) if t is not None}
            - self.eos_ids), dtype=torch.long)
        self._entries: dict[int, _Entry] = {}
        self._next_id = 0
        self._cost = TokenCost()

    # -- protocol ---------------------------------------------------------------------------------
    @property
    def cost(self) -> TokenCost:
        return TokenCost(**{k: getattr(self._cost, k) for k in ("prompt_tokens", "generated_tokens", "model_calls")})

    def root(self, prompts: list[str]) -> list[int]:
        return [self._add(None, self.tokenizer(p)["input_ids"]) for p in prompts]

    def text(self, state: int) -> str:
        """The decoded text of a state's tokens after its root (the solution so far)."""
        ids: list[int] = []
        while self._entries[state].parent is not None:
            ids = self._entries[state].token_ids + ids
            state = self._entries[state].parent
        return self.tokenizer.decode(ids)

    def release(self, states: list[int]) -> None:
        for s in states:
            self._drop(s)

    @torch.no_grad()
    def extend(
        self,
        states: list[int],
        n: int,
        *,
        temperature: float = 1.0,
        until: Literal["step", "end"] = "step",
        max_new_tokens: int = 256,
        seed: int | None = None,
    ) -> list[list[Option]]:
        gen = torch.Generator().manual_seed(seed if seed is not None else torch.seed() % 2**31)
        rows = [_Row(s) for s in states for _ in range(n)]
        # Chunks hold whole groups of n rows, so a state's prefix is computed once per call.
        per_chunk = max(1, self.max_batch // n)
        for i in range(0, len(states), per_chunk):
            self._decode(states[i : i + per_chunk], n, rows[i * n : (i + per_chunk) * n],
                         temperature, until, max_new_tokens, gen)
        out = []
        for i in range(len(states)):
            out.append([self._to_option(r) for r in rows[i * n : (i + 1) * n]])
        return out

    # -- the KV-cache tree ------------------------------------------------------------------------
    def _add(self, parent: int | None, token_ids: list[int]) -> int:
        sid = self._next_id
        self._next_id += 1
        length = len(token_ids) + (self._entries[parent].length if parent is not None else 0)
        self._entries[sid] = _Entry(parent, list(token_ids), length=length)
        if parent is not None:
            self._entries[parent].children.append(sid)
        return sid

    def _drop(self, sid: int) -> None:
        entry = self._entries.pop(sid, None)
        if entry is None:
            return
        for c in entry.children:
            self._drop(c)

    def _path(self, sid: int) -> list[_Entry]:
        path = []
        while sid is not None:
            path.append(self._entries[sid])
            sid = self._entries[sid].parent
        return path[::-1]

    def _split(self, sid: int) -> tuple[list[tuple[torch.Tensor, torch.Tensor]] | None, list[int]]:
        """A state's cached KV (concatenated along its path) and the tokens still to compute."""
        path = self._path(sid)
        if not self.reuse_cache:
            return None, [t for e in path for t in e.token_ids]
        # Everything is cached except the tail of nodes whose tokens were not fed yet.
        cached = [e for e in path if e.n_computed]
        todo = [t for e in path for t in e.token_ids[e.n_computed :]]
        if not cached:
            return None, todo
        layers = []
        for li in range(len(cached[0].kv)):
            k = torch.cat([e.kv[li][0] for e in cached], dim=1)
            v = torch.cat([e.kv[li][1] for e in cached], dim=1)
            layers.append((k, v))
        if not todo:
            # A state extended a second time: its last token's logits were not kept, so feed
            # that one token again (cheaper than storing a vocabulary-sized vector per node).
            todo = [path[-1].token_ids[-1]]
            layers = [(k[:, :-1], v[:, :-1]) for k, v in layers]
        return layers, todo

    # -- decoding ---------------------------------------------------------------------------------
    def _decode(self, states, n, rows, temperature, until, max_new_tokens, gen) -> None:
        from transformers import DynamicCache

        splits = [self._split(s) for s in states]
        past_lens = [kv[0][0].shape[1] if kv else 0 for kv, _ in splits]
        todo_lens = [len(todo) for _, todo in splits]
        P, U = max(past_lens), max(todo_lens)
        B = len(states)
        # Layout per row: [left pad | cached KV | inner pad | todo tokens]; pads are masked.
        ids = torch.full((B, U), self.pad_id, dtype=torch.long)
        mask = torch.zeros((B, P + U), dtype=torch.long)
        pos = torch.zeros((B, U), dtype=torch.long)
        for b, ((_, todo), p, u) in enumerate(zip(splits, past_lens, todo_lens, strict=True)):
            ids[b, U - u :] = torch.tensor(todo, dtype=torch.long)
            mask[b, P - p : P] = 1
            mask[b, P + U - u :] = 1
            pos[b, U - u :] = torch.arange(p, p + u)
        cache = DynamicCache()
        if P:
            for li in range(len(next(kv for kv, _ in splits if kv))):
                keys = [_left_pad(kv[li][0] if kv else None, P, ref=kv) for kv, _ in splits]
                ref = next(k for k in keys if k is not None)
                keys = [k if k is not None else ref.new_zeros(ref.shape) for k in keys]
                vals = [_left_pad(kv[li][1] if kv else None, P, ref=kv) for kv, _ in splits]
                vals = [v if v is not None else ref.new_zeros(ref.shape) for v in vals]
                cache.update(torch.stack(keys), torch.stack(vals), li)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True)
        self._cost.model_calls += 1
        # Tokens computed = prompt tokens + generated tokens, each position once: a sampled option's last
        # token is first fed here, and was counted when it was generated.
        first_feeds = 0
        for s in states:
            e = self._entries[s]
            if e.sampled and not e.fed:
                first_feeds += 1
                e.fed = True
        self._cost.prompt_tokens += sum(todo_lens) - first_feeds
        cache = out.cache
        if self.reuse_cache:
            self._store_prefill(states, cache, P, U, todo_lens)
        # Sample n continuations per state: repeat each row n times.
        logits = out.logits[:, -1, :].repeat_interleave(n, dim=0)
        cache.batch_repeat_interleave(n)
        mask = mask.repeat_interleave(n, dim=0)
        next_pos = torch.tensor([p + u for p, u in zip(past_lens, todo_lens, strict=True)]).repeat_interleave(n)
        lengths = [self._entries[s].length for s in states for _ in range(n)]
        gen_start = P + U
        alive = list(range(len(rows)))  # row indices still decoding, in batch order
        step = 0
        while alive:
            tok, logp = _sample(logits, temperature, gen, self._banned)
            for j, r in enumerate(alive):
                row = rows[r]
                t = int(tok[j])
                row.new_ids.append(t)
                row.logprob += float(logp[j])
                self._cost.generated_tokens += 1
                if t in self.eos_ids:
                    row.finished = row.done = True
                    continue
                row.text += self._piece[t]
                if until == "step" and self.step_delimiter in row.text:
                    row.done = True
                elif len(row.new_ids) >= max_new_tokens or lengths[r] + len(row.new_ids) >= self.max_length:
                    row.done = row.finished = True
            step += 1
            keep = [j for j, r in enumerate(alive) if not rows[r].done]
            # Decoded KV of rows that stopped is saved now, before the batch is compacted.
            if self.reuse_cache:
                for j, r in enumerate(alive):
                    if rows[r].done:
                        rows[r].kv = _slice_rows(cache, j, gen_start, step - 1)
            if not keep:
                break
            if len(keep) < len(alive):
                idx = torch.tensor(keep)
                cache.batch_select_indices(idx)
                mask, next_pos, tok = mask[idx], next_pos[idx], tok[idx]
                alive = [alive[j] for j in keep]
            mask = torch.cat([mask, torch.ones((len(alive), 1), dtype=torch.long)], dim=1)
            out = self.model(
                input_ids=tok.view(-1, 1), attention_mask=mask, position_ids=next_pos.view(-1, 1),
                cache=cache, use_cache=True,
            )
            self._cost.model_calls += 1
            next_pos = next_pos + 1
            logits = out.logits[:, -1, :]
            cache = out.cache

    def _store_prefill(self, states, cache, P, U, todo_lens) -> None:
        """Keep the KV just computed for each state's pending tokens in the nodes that own them."""
        for b, s in enumerate(states):
            u = todo_lens[b]
            if not u:
                continue
            start = P + U - u
            # Pending tokens belong to the tail of the path; walk back assigning KV slices.
            pending = [e for e in self._path(s) if e.n_computed < len(e.token_ids)]
            if not pending:
                continue  # a recomputed last token: its KV is cached already
            offset = start
            for e in pending:
                k = len(e.token_ids) - e.n_computed
                piece = [
                    (layer.keys[b, :, offset : offset + k].clone(), layer.values[b, :, offset : offset + k].clone())
                    for layer in cache.layers
                ]
                e.kv = piece if e.kv is None else [
                    (torch.cat([a[0], p[0]], dim=1), torch.cat([a[1], p[1]], dim=1))
                    for a, p in zip(e.kv, piece, strict=True)
                ]
                e.n_computed = len(e.token_ids)
                offset += k

    def _to_option(self, row: _Row) -> Option:
        sid = self._add(row.state, row.new_ids)
        entry = self._entries[sid]
        entry.sampled = True
        if self.reuse_cache and row.kv is not None:
            entry.kv = row.kv
            entry.n_computed = len(row.new_ids) - 1  # the last sampled token was never fed
        ids = [t for t in row.new_ids if t not in self.eos_ids]
        return Option(
            text=self.tokenizer.decode(ids),
            token_ids=tuple(row.new_ids),
            logprob=row.logprob,
            finished=row.finished,
            state=sid,
        )


def _eos_ids(model, tokenizer) -> set[int]:
    ids = model.generation_config.eos_token_id if model.generation_config is not None else None
    ids = ids if isinstance(ids, list) else [ids]
    ids = {i for i in ids if i is not None}
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def _left_pad(t: torch.Tensor | None, width: int, ref=None) -> torch.Tensor | None:
    """Pad a (heads, T, dim) tensor on the left to ``width`` positions with zeros (masked anyway)."""
    if t is None:
        return None
    if t.shape[1] == width:
        return t
    return torch.cat([t.new_zeros((t.shape[0], width - t.shape[1], t.shape[2])), t], dim=1)


def _slice_rows(cache, j: int, start: int, n: int) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """KV of ``n`` decoded tokens of batch row ``j`` (copied, so the batch cache can be freed)."""
    if n <= 0:
        return None
    return [
        (layer.keys[j, :, start : start + n].clone(), layer.values[j, :, start : start + n].clone())
        for layer in cache.layers
    ]


def _sample(
    logits: torch.Tensor, temperature: float, gen: torch.Generator, banned: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Next tokens (never a banned one) and their log-probs under the model's own untempered distribution."""
    logp = torch.log_softmax(logits.float(), dim=-1)  # (B, V)
    allowed = logits.float().clone()
    if len(banned):
        allowed[:, banned] = float("-inf")
    if temperature <= 0:
        tok = allowed.argmax(dim=-1)
    else:
        probs = torch.softmax(allowed / temperature, dim=-1)
        tok = torch.multinomial(probs, 1, generator=gen).squeeze(1)
    return tok, logp.gather(1, tok.view(-1, 1)).squeeze(1)
