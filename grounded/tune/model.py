"""The causal LM side of tuning: encode examples, a loss over target tokens only, batched greedy decoding.

Every prompt of a tuning run starts with the same system message (for SQL: instruction +
schema, about three quarters of its tokens). Both the loss and generation run that shared prefix once per batch
and expand its key/value cache to every row, instead of once per example: on a 2-core CPU that
is most of the compute. Gradients flow through the shared prefix as they would through copies.
Logits are computed only where a target token is predicted (the vocabulary projection is a fifth of
a small model's weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from grounded.experts.base import Message

__all__ = ["Encoded", "PromptEncoder", "greedy_generate", "sql_loss", "target_loss"]


@dataclass(frozen=True, slots=True)
class Encoded:
    """One example's tokens after the shared prefix: the prompt's rest, then the target's."""

    ids: tuple[int, ...]
    prompt_len: int

    @property
    def target_len(self) -> int:
        return len(self.ids) - self.prompt_len


class PromptEncoder:
    """Tokenizes chats the way the serving backend does, split into shared prefix and rest."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.eos = str(tokenizer.eos_token)

    def _text(self, messages: Sequence[Message], *, generation_prompt: bool) -> str:
        chat = [{"role": m.role, "content": m.content} for m in messages]
        text: str = self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=generation_prompt)
        return text

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode(self, messages: Sequence[Message], target: str | None = None) -> tuple[tuple[int, ...], Encoded]:
        """``(prefix ids, rest)``; ``prefix + rest.ids[:prompt_len]`` is exactly the served prompt."""
        full = self._text(messages, generation_prompt=True)
        head = self._text(messages[:1], generation_prompt=False)
        full_ids = self._ids(full)
        prefix: list[int] = []
        if full.startswith(head):
            candidate = self._ids(head)
            # Shared only when the prefix tokenizes the same alone as inside the full prompt.
            if full_ids[: len(candidate)] == candidate:
                prefix = candidate
        rest = full_ids[len(prefix) :]
        prompt_len = len(rest)
        if target is not None:
            rest += self._ids(target + self.eos)
        return tuple(prefix), Encoded(tuple(rest), prompt_len)


def _core(model: Any) -> tuple[Any, Any]:
    """(decoder stack, vocabulary projection) of a causal LM, through a peft wrapper if any."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, base.base_model_prefix), base.get_output_embeddings()


def _prefix_cache(core: Any, prefix: Sequence[int], rows: int, device: torch.device) -> tuple[Any, int]:
    if not prefix:
        return None, 0
    from transformers import DynamicCache

    cache = DynamicCache()
    core(input_ids=torch.tensor([list(prefix)], device=device), cache=cache, use_cache=True)
    cache.batch_repeat_interleave(rows)
    return cache, len(prefix)


def target_loss(model: Any, prefix: Sequence[int], batch: Sequence[Encoded], pad_id: int) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over the target tokens of ``batch`` and the tokens processed."""
    core, head = _core(model)
    device = next(model.parameters()).device
    rows, width = len(batch), max(len(e.ids) for e in batch)
    ids = torch.full((rows, width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((rows, width), dtype=torch.long, device=device)
    for i, e in enumerate(batch):
        ids[i, : len(e.ids)] = torch.tensor(e.ids, device=device)
        mask[i, : len(e.ids)] = 1
    cache, offset = _prefix_cache(core, prefix, rows, device)
    full_mask = torch.cat([torch.ones((rows, offset), dtype=torch.long, device=device), mask], dim=1)
    positions = torch.arange(offset, offset + width, device=device).expand(rows, -1)
    hidden = core(
        input_ids=ids,
        attention_mask=full_mask,
        position_ids=positions,
        cache=cache,
        use_cache=cache is not None,
    ).last_hidden_state
    # hidden[j] predicts token j+1: keep the positions whose next token is a target token.
    rows_idx, cols_idx, labels = [], [], []
    for i, e in enumerate(batch):
        for j in range(max(e.prompt_len - 1, 0), len(e.ids) - 1):
            rows_idx.append(i)
            cols_idx.append(j)
            labels.append(e.ids[j + 1])
    picked = hidden[torch.tensor(rows_idx, device=device), torch.tensor(cols_idx, device=device)]
    logits = head(picked).float()
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(labels, device=device))
    return loss, len(prefix) + int(mask.sum())


sql_loss = target_loss
"""The loss of ``grounded tune sql`` (the same function: SQL is the target)."""


@torch.inference_mode()
def greedy_generate(
    model: Any, prefix: Sequence[int], prompts: Sequence[Encoded], *, eos_id: int, pad_id: int, max_new_tokens: int
) -> list[list[int]]:
    """Greedy continuations of ``prompts`` (one batch), each cut at its first ``eos_id``."""
    core, _ = _core(model)
    device = next(model.parameters()).device
    rows = len(prompts)
    width = max(e.prompt_len for e in prompts)
    ids = torch.full((rows, width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((rows, width), dtype=torch.long, device=device)
    for i, e in enumerate(prompts):
        # Padding goes between the shared prefix and each prompt, so every prompt ends at the
        # last column and the next token is read from the same place in every row.
        ids[i, width - e.prompt_len :] = torch.tensor(e.ids[: e.prompt_len], device=device)
        mask[i, width - e.prompt_len :] = 1
    cache, offset = _prefix_cache(core, prefix, rows, device)
    if cache is None:
        from transformers import DynamicCache

        cache = DynamicCache()
    attention = torch.cat([torch.ones((rows, offset), dtype=torch.long, device=device), mask], dim=1)
    positions = offset + (mask.cumsum(dim=1) - 1).clamp(min=0)
    out: list[list[int]] = [[] for _ in range(rows)]
    done = torch.zeros(rows, dtype=torch.bool, device=device)
    step_ids = ids
    for _ in range(max_new_tokens):
        logits = model(
            input_ids=step_ids,
            attention_mask=attention,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits[:, -1, :]
        nxt = logits.argmax(dim=-1)
        for i in range(rows):
            if not done[i]:
                token = int(nxt[i])
                if token == eos_id:
                    done[i] = True
                else:
                    out[i].append(token)
        if bool(done.all()):
            break
        step_ids = nxt.unsqueeze(1)
        attention = torch.cat([attention, torch.ones((rows, 1), dtype=torch.long, device=device)], dim=1)
        positions = positions[:, -1:] + 1
    return out
