"""Customization: fine-tune small experts for one narrow job (``grounded tune``).

* :mod:`grounded.tune.data` — JSONL examples, a stable train/dev split, the data hash;
* :mod:`grounded.tune.prompt` — the prompts tuned SQL and answer experts are trained and served with;
* :mod:`grounded.tune.model` — loss on target tokens with a shared system prefix, batched greedy decoding;
* :mod:`grounded.tune.evaluate` — execution accuracy on the knowledge base's mirror;
* :mod:`grounded.tune.train` — the training loop (early stopping, checkpoints, model card) and ``tune sql``;
* :mod:`grounded.tune.answer_data` — answer examples made from the knowledge base's own passages;
* :mod:`grounded.tune.answer` — ``tune answer``: the dev metric is verified, cited answers and abstentions;
* :mod:`grounded.tune.store` — ``<kb>/experts/``, the ``active`` pointers, rollback, and the
  :class:`TunedExperts` the serving path asks for a source's tuned expert.

Only ``store`` and ``prompt`` are imported here: serving needs them, and they do not import torch.
"""

from __future__ import annotations

from grounded.tune.prompt import PROMPT_FORMAT, tuned_answer_messages, tuned_sql_messages
from grounded.tune.store import TunedExpert, TunedExperts, activate, active_name, list_experts, rollback

__all__ = [
    "PROMPT_FORMAT",
    "TunedExpert",
    "TunedExperts",
    "activate",
    "active_name",
    "list_experts",
    "rollback",
    "tuned_answer_messages",
    "tuned_sql_messages",
]
