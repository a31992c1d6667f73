"""Customization: fine-tune small experts for one narrow job (``grounded tune``).

* :mod:`grounded.tune.data` — JSONL examples, a stable train/dev split, the data hash;
* :mod:`grounded.tune.prompt` — the prompt a tuned SQL expert is trained and served with;
* :mod:`grounded.tune.model` — loss on SQL tokens with a shared schema prefix, batched greedy SQL;
* :mod:`grounded.tune.evaluate` — execution accuracy on the knowledge base's mirror;
* :mod:`grounded.tune.train` — the training loop (early stopping, checkpoints, model card);
* :mod:`grounded.tune.store` — ``<kb>/experts/``, the ``active`` pointers, rollback, and the
  :class:`TunedExperts` the serving path asks for a source's tuned expert.

Only ``store`` and ``prompt`` are imported here: serving needs them, and they do not import torch.
"""

from __future__ import annotations

from grounded.tune.prompt import PROMPT_FORMAT, tuned_sql_messages
from grounded.tune.store import TunedExpert, TunedExperts, activate, active_name, list_experts, rollback

__all__ = [
    "PROMPT_FORMAT",
    "TunedExpert",
    "TunedExperts",
    "activate",
    "active_name",
    "list_experts",
    "rollback",
    "tuned_sql_messages",
]
