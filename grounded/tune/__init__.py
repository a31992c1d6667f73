"""Customization: fine-tune small experts for one narrow job (``grounded tune``).

* :mod:`grounded.tune.data` — JSONL examples, a stable train/dev split, the data hash;
* :mod:`grounded.tune.model` — loss on target tokens with a shared system prefix, batched greedy decoding;
* :mod:`grounded.tune.trainer` — the generic training loop (early stopping, checkpoints, model card);
* :mod:`grounded.tune.sql` — ``tune sql``: text-to-SQL experts per source;
* :mod:`grounded.tune.sql_synth` — ``tune sql --synthesize``: questions for the template SQL of
  :mod:`grounded.sql.templates`, round-trip checked;
* :mod:`grounded.tune.evaluate` — execution accuracy on the knowledge base's mirror;
* :mod:`grounded.tune.answer_data` — answer examples made from the knowledge base's own passages;
* :mod:`grounded.tune.answer` — ``tune answer``: the dev metric is verified, cited answers and abstentions;
* :mod:`grounded.tune.export` — a tuned expert as one GGUF file.

Serving never imports this package: the prompts tuned experts are served with live beside
their stage (:mod:`grounded.sql.prompts`, :mod:`grounded.answering.writer`) and the tuned
experts on disk are read by :mod:`grounded.experts.tuned`. Everything here may import torch.
"""
