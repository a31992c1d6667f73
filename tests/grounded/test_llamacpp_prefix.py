"""llama.cpp's shortcuts, on the real GGUF: the same text as the plain path.

``LlamaCppGenerator`` evaluates only what follows the prompt tokens already cached (a shared
system message and schema, a repair turn that repeats the first exchange) in whole blocks, and asks the grammar
about the greedy token before the whole vocabulary. Greedy decoding must not notice: each prompt,
after any other, gives the text it gives from an empty cache with the grammar in llama.cpp's
sampler chain (``fast=False``). Run on Qwen2.5-Coder-0.5B (the SQL expert), under the SQL grammar
as the writer decodes, and without it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from grounded.config import ExpertSpec
from grounded.experts.base import Generation, Message
from grounded.experts.fetch import KNOWN, experts_cache
from grounded.experts.llamacpp_backend import LlamaCppGenerator
from grounded.sql.database import TableInfo
from grounded.sql.grammar import sql_grammar
from grounded.sql.writer import SYSTEM
from tests.ci import import_or_skip, skip_or_fail

pytestmark = pytest.mark.slow

TABLES = [
    TableInfo("geo", "state", (("state_name", "VARCHAR"), ("population", "BIGINT"), ("area", "DOUBLE"))),
    TableInfo("geo", "city", (("city_name", "VARCHAR"), ("state_name", "VARCHAR"), ("population", "BIGINT"))),
    TableInfo("geo", "river", (("river_name", "VARCHAR"), ("length", "BIGINT"), ("traverse", "VARCHAR"))),
]
SCHEMA = (
    "Tables:\nCREATE TABLE geo.state (state.state_name VARCHAR, -- e.g. 'alabama', 'alaska'\n"
    "  state.population BIGINT, state.area DOUBLE);\n\n"
    "CREATE TABLE geo.city (city.city_name VARCHAR, -- e.g. 'austin', 'boston'\n"
    "  city.state_name VARCHAR, city.population BIGINT);\n\n"
    "CREATE TABLE geo.river (river.river_name VARCHAR, -- e.g. 'mississippi'\n"
    "  river.length BIGINT, river.traverse VARCHAR);\n"
)


def chat(question: str, *turns: str) -> list[Message]:
    messages = [Message("system", SYSTEM), Message("user", f"{SCHEMA}\nQuestion: {question}\nSQL:")]
    for i, turn in enumerate(turns):
        messages.append(Message("assistant" if i % 2 == 0 else "user", turn))
    return messages


@pytest.fixture(scope="module")
def generators() -> Iterator[tuple[LlamaCppGenerator, LlamaCppGenerator]]:
    import_or_skip("llama_cpp", "`make llama` builds llama-cpp-python once per machine (.ci/run does)")
    path = experts_cache() / KNOWN["qwen2.5-coder-0.5b"].file_name
    if not path.is_file():
        skip_or_fail(f"{path} is missing: python -m grounded.experts.fetch qwen2.5-coder-0.5b")
    spec = ExpertSpec(backend="llama-cpp", model=str(path), threads=1, timeout_s=300)
    cached, fresh = LlamaCppGenerator(spec), LlamaCppGenerator(spec, fast=False)
    yield cached, fresh
    cached.close()
    fresh.close()


def test_a_cached_prefix_and_the_greedy_grammar_check_give_the_plain_paths_text(
    generators: tuple[LlamaCppGenerator, LlamaCppGenerator],
) -> None:
    cached, fresh = generators
    grammar = sql_grammar(TABLES, qualified=True)
    first = chat("what is the population of the largest city in texas?")
    turns = [
        (first, True),
        (first, True),  # the same prompt again: all but its last token cached
        # The same system message and schema, another question (only the question is evaluated).
        (chat("which rivers run through the state with the largest area?"), True),
        # A repair turn: the whole first exchange, then the feedback.
        (
            chat(
                "what is the population of the largest city in texas?",
                "SELECT city.population FROM geo.city AS city WHERE city.state_name = 'texas'",
                "That query returns every city. Write a corrected query. SQL:",
            ),
            True,
        ),
        (chat("how many states are there?"), False),  # a prompt shorter than what is cached
        (first, True),  # the first prompt again, after others
    ]
    # The plain path starts from an empty cache every time, so its text for a prompt is asked once.
    wants: dict[tuple[object, ...], Generation] = {}
    for messages, constrained in turns:
        key = (constrained, *((m.role, m.content) for m in messages))
        if constrained:
            got = cached.generate_grammar(messages, grammar, max_tokens=64)
            if key not in wants:
                wants[key] = fresh.generate_grammar(messages, grammar, max_tokens=64)
        else:
            got = cached.generate(messages, max_tokens=64)
            if key not in wants:
                wants[key] = fresh.generate(messages, max_tokens=64)
        want = wants[key]
        assert got.text == want.text, messages[-1].content
        assert got.prompt_tokens == want.prompt_tokens
        assert got.text.upper().startswith("SELECT")
    assert cached._llm.n_tokens > 0  # the cache was kept between calls (a reset empties it)
