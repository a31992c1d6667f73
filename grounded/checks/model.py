"""The cross-encoder both checks run on: MiniLM reading ``text [SEP] evidence``, two outputs.

Output 0 is the probability that the evidence *supports* the text (a claim); output 1 that
it *answers* the text (a question). One encoder serves both, so one model loads once.

Determinism: scoring runs with a fixed number of torch threads, in eval mode (no dropout),
one pair at a time with no padding, so a pair's score never depends on which other pairs were
scored with it (batch-invariant) and the same bytes in give the same float32 out in every
process on the same machine. By default the linear layers run as dynamic int8
(``torch.ao.quantization.quantize_dynamic``): about 3x faster on one CPU core than float32.
"""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from grounded.errors import ConfigError

__all__ = ["META_FILE", "MODEL_FILE", "CrossEncoder", "build_network"]

MODEL_FILE = "model.safetensors"
META_FILE = "checks.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
TASKS = {"support": 0, "answerable": 1}


def build_network(config: Any) -> Any:
    """The torch module: a BERT encoder, mean pooling over tokens, a linear head with two outputs."""
    import torch
    from transformers import BertModel

    class _Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = BertModel(config, add_pooling_layer=False)
            self.head = torch.nn.Linear(config.hidden_size, len(TASKS))

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return self.head(pooled)

    return _Net()


class CrossEncoder:
    """A trained checks model in ``directory`` (weights, tokenizer, ``checks.json``).

    >>> model = CrossEncoder(path)                                        # doctest: +SKIP
    >>> model.score(["Paris is in France."], ["Paris is the capital of France."])  # doctest: +SKIP
    array([0.97], dtype=float32)
    """

    def __init__(self, directory: str | Path, *, quantize: bool = True, threads: int = 1) -> None:
        self.directory = Path(directory)
        meta_path = self.directory / META_FILE
        if not meta_path.is_file() or not (self.directory / MODEL_FILE).is_file():
            raise ConfigError(
                f"{self.directory} is not a trained checks model (no {META_FILE} or {MODEL_FILE}); "
                "train one with `benchmarks/train_checker.py` (or `grounded tune checker`)"
            )
        self.meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
        self.fingerprint = str(self.meta["fingerprint"]) + (":int8" if quantize else ":fp32")
        self.max_tokens = int(self.meta.get("max_tokens", 128))
        self.quantize = quantize
        self.threads = threads
        self._net: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _load(self) -> None:
        import torch
        from safetensors.torch import load_file
        from transformers import AutoTokenizer, BertConfig

        config = BertConfig.from_pretrained(str(self.directory))
        net = build_network(config)
        net.load_state_dict(load_file(str(self.directory / MODEL_FILE)))
        net.eval()
        if self.quantize:
            # torch.ao.quantization warns that it moves to torchao; in torch 2.13 it still works,
            # and torchao would be one more dependency for one call. Revisit on a torch upgrade.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.filterwarnings("ignore", message=".*quantize.*", category=UserWarning)
                net = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
                    net, {torch.nn.Linear}, dtype=torch.qint8
                )
        self._tokenizer = AutoTokenizer.from_pretrained(str(self.directory))
        self._net = net

    def encode(self, text: str, evidence: str) -> dict[str, Any]:
        """Token ids of one pair: the text whole (up to half the budget), the evidence truncated."""
        assert self._tokenizer is not None
        return dict(
            self._tokenizer(text, evidence, truncation="longest_first", max_length=self.max_tokens, return_tensors="pt")
        )

    def score(
        self, texts: Sequence[str], evidence: Sequence[str], task: Literal["support", "answerable"] = "support"
    ) -> np.ndarray:
        """Probabilities (float32, one per pair) that ``evidence[i]`` supports / answers ``texts[i]``."""
        if len(texts) != len(evidence):
            raise ValueError(f"{len(texts)} texts but {len(evidence)} evidence strings; give one evidence per text")
        if task not in TASKS:
            raise ValueError(f"task {task!r} is not one of {sorted(TASKS)}")
        import torch

        out = np.zeros(len(texts), dtype=np.float32)
        if not texts:
            return out
        with self._lock:
            if self._net is None:
                self._load()
            previous = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                with torch.inference_mode():
                    for i, (text, ev) in enumerate(zip(texts, evidence, strict=True)):
                        logits = self._net(**self.encode(text, ev))
                        out[i] = torch.sigmoid(logits[0, TASKS[task]]).item()
            finally:
                torch.set_num_threads(previous)
        return out
