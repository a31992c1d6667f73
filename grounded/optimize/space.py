"""The search space of ``grounded optimize``: real settings, and the values valid on this machine.

A :class:`SearchSpace` is an ordered list of :class:`Dimension` s, each a setting (``answer.k``,
``search.rrf_k``, ``experts.answer.backend`` ...) or the one derived dimension ``retrieval``
(``hybrid``, ``bm25`` or ``dense``: the weights ``search.bm25_weight`` / ``search.dense_weight``),
with the values to try. A configuration is one value per dimension; :meth:`SearchSpace.settings`
turns it into validated :class:`~grounded.config.Settings`, so a value the settings refuse is
refused here, with the setting's own message.

:func:`default_space` declares the space for this machine: backends that are installed and can
load the configured model, thread counts up to the cores there are, the trained checks only when
a checks model is trained. The configured value of each dimension is always one of its values,
so the configured settings are always a candidate (the baseline every report compares with).

Example::

    space = default_space(kb.settings)
    space = space.override({"answer.k": [1, 2, 3]})      # what `--space answer.k=1,2,3` does
    settings = space.settings(kb.settings, space.baseline(kb.settings))
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any

from pydantic import BaseModel, ValidationError

from grounded.config import AnswerSettings, ExpertSpec, SearchSettings, Settings
from grounded.errors import ConfigError

__all__ = ["RETRIEVAL_MODES", "Config", "Dimension", "SearchSpace", "config_key", "default_space", "parse_values"]

Config = dict[str, Any]
"""One value per dimension name."""

RETRIEVAL_MODES: dict[str, tuple[float, float]] = {"hybrid": (1.0, 1.0), "bm25": (1.0, 0.0), "dense": (0.0, 1.0)}
"""The ``retrieval`` dimension: (``search.bm25_weight``, ``search.dense_weight``) per mode."""

_SECTIONS: dict[str, type[BaseModel]] = {
    "answer": AnswerSettings,
    "search": SearchSettings,
    "experts.answer": ExpertSpec,
}
"""The settings sections a dimension may name (a field of one of them), and their models."""


def config_key(config: Mapping[str, Any]) -> str:
    """The canonical text of a configuration (sorted JSON): its identity in journals and reports."""
    return json.dumps(dict(config), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Dimension:
    """One setting to search and the values to try, in the order they are declared."""

    name: str
    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise ConfigError(f"search space: {self.name} has no values to try")
        if len({json.dumps(v) for v in self.values}) != len(self.values):
            raise ConfigError(f"search space: {self.name} lists a value twice: {list(self.values)}")


def _section(name: str) -> tuple[str, str]:
    """``("answer", "k")`` for ``answer.k``; a name outside the searchable sections is an error."""
    if name == "retrieval":
        return "search", "retrieval"
    section, _, field = name.rpartition(".")
    model = _SECTIONS.get(section)
    if model is None or field not in model.model_fields:
        known = ", ".join(f"{s}.<field>" for s in _SECTIONS)
        raise ConfigError(
            f"search space: unknown setting {name!r}; a dimension is `retrieval` or a field of {known} "
            "(see docs/optimize.md)"
        )
    return section, field


class SearchSpace:
    """Dimensions to search; every configuration it yields is valid :class:`Settings`."""

    def __init__(self, dimensions: Sequence[Dimension]) -> None:
        names = [d.name for d in dimensions]
        if len(set(names)) != len(names):
            raise ConfigError(f"search space: a setting is declared twice in {names}")
        for d in dimensions:
            _section(d.name)
            if d.name == "retrieval":
                unknown = [v for v in d.values if v not in RETRIEVAL_MODES]
                if unknown:
                    raise ConfigError(
                        f"search space: retrieval must be one of {', '.join(RETRIEVAL_MODES)}; got {unknown}"
                    )
        self.dimensions = tuple(dimensions)

    def __repr__(self) -> str:
        return f"SearchSpace({', '.join(f'{d.name}={list(d.values)}' for d in self.dimensions)})"

    @property
    def size(self) -> int:
        """How many configurations the full grid holds."""
        n = 1
        for d in self.dimensions:
            n *= len(d.values)
        return n

    def describe(self) -> dict[str, list[Any]]:
        return {d.name: list(d.values) for d in self.dimensions}

    def override(self, declared: Mapping[str, Sequence[Any]]) -> SearchSpace:
        """This space with ``declared`` dimensions replaced (or added, after the others)."""
        given = {name: Dimension(name, tuple(values)) for name, values in declared.items()}
        kept = [given.pop(d.name, d) for d in self.dimensions]
        return SearchSpace([*kept, *given.values()])

    def baseline(self, settings: Settings) -> Config:
        """The configured value of each dimension: the configuration to beat."""
        return {d.name: current_value(settings, d.name) for d in self.dimensions}

    def with_baseline(self, settings: Settings) -> SearchSpace:
        """Each dimension with the configured value added in front when it is not listed."""
        base = self.baseline(settings)
        return SearchSpace(
            [d if base[d.name] in d.values else Dimension(d.name, (base[d.name], *d.values)) for d in self.dimensions]
        )

    def settings(self, settings: Settings, config: Mapping[str, Any]) -> Settings:
        """``settings`` with ``config`` applied, every changed section validated again."""
        patch = settings_patch(config)
        updates: dict[str, Any] = {}
        for section, fields in patch.items():
            model = _SECTIONS[section]
            current = settings.experts.answer if section == "experts.answer" else getattr(settings, section)
            try:
                updates[section] = model.model_validate({**current.model_dump(), **fields})
            except ValidationError as exc:
                problems = "; ".join(
                    f"{section}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (got {e.get('input')!r})"
                    for e in exc.errors()
                )
                raise ConfigError(f"search space: invalid value ({problems})") from exc
        experts = updates.pop("experts.answer", None)
        if experts is not None:
            updates["experts"] = settings.experts.model_copy(update={"answer": experts})
        return settings.model_copy(update=updates)

    def validate(self, settings: Settings) -> None:
        """Raise :class:`ConfigError` when some value of some dimension is not a valid setting."""
        base = self.baseline(settings)
        for d in self.dimensions:
            for value in d.values:
                self.settings(settings, {**base, d.name: value})
        names = {d.name: d for d in self.dimensions}
        threads = names.get("experts.answer.threads")
        backends = (
            names["experts.answer.backend"].values
            if "experts.answer.backend" in names
            else (base.get("experts.answer.backend", settings.experts.answer.backend),)
        )
        if threads is not None and len(threads.values) > 1 and "transformers" in backends:
            raise ConfigError(
                "search space: experts.answer.threads cannot be searched with the transformers backend "
                "(torch has one thread count per process, so the configurations would share it); "
                "search it with backend llama-cpp, or leave it out"
            )

    def candidates(self, settings: Settings, limit: int, *, seed: int = 0) -> list[Config]:
        """At most ``limit`` configurations, always the same for the same space, settings and seed.

        First the baseline (the configured settings), then each single change from it (one
        dimension at a time, in declared order), then configurations drawn from the whole grid
        by a seeded generator: what a setting does alone is measured before combinations.
        """
        if limit < 1:
            raise ConfigError(f"--trials must be at least 1; got {limit}")
        base = self.baseline(settings)
        out: dict[str, Config] = {config_key(base): base}

        def add(config: Config) -> None:
            if len(out) < limit:
                out.setdefault(config_key(config), config)

        for d in self.dimensions:
            for value in d.values:
                add({**base, d.name: value})
        if self.size <= 4096:
            grid = [dict(zip([d.name for d in self.dimensions], combo, strict=True)) for combo in self._grid()]
            random.Random(seed).shuffle(grid)
            for config in grid:
                add(config)
        else:
            rng = random.Random(seed)
            for _ in range(50 * limit):
                add({d.name: rng.choice(d.values) for d in self.dimensions})
        return list(out.values())

    def _grid(self) -> Iterator[tuple[Any, ...]]:
        return product(*(d.values for d in self.dimensions))


def settings_patch(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{section: {field: value}}`` for a configuration (``retrieval`` becomes the two weights)."""
    patch: dict[str, dict[str, Any]] = {}
    for name, value in config.items():
        section, field = _section(name)
        if name == "retrieval":
            bm25, dense = RETRIEVAL_MODES[value]
            patch.setdefault("search", {}).update(bm25_weight=bm25, dense_weight=dense)
        else:
            patch.setdefault(section, {})[field] = value
    return patch


def current_value(settings: Settings, name: str) -> Any:
    """The configured value of dimension ``name``."""
    if name == "retrieval":
        weights = (settings.search.bm25_weight, settings.search.dense_weight)
        if weights[0] > 0 and weights[1] > 0:
            return "hybrid"
        return "bm25" if weights[0] > 0 else "dense"
    section, field = _section(name)
    owner = settings.experts.answer if section == "experts.answer" else getattr(settings, section)
    return getattr(owner, field)


def parse_values(text: str) -> tuple[str, list[Any]]:
    """``answer.k=1,2,3`` -> ``("answer.k", [1, 2, 3])``; values are JSON when they parse, else strings."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip() or not raw.strip():
        raise ConfigError(f"--space {text!r}: expected SETTING=V1,V2,... (e.g. answer.k=1,2,3)")
    values: list[Any] = []
    for item in raw.split(","):
        item = item.strip()
        try:
            values.append(json.loads(item))
        except json.JSONDecodeError:
            values.append(item)
    return name.strip(), values


def _backends(settings: Settings) -> list[str]:
    """The answer backends that can serve the configured model here (installed, and the model found)."""
    from grounded.experts.models import resolve_local_model

    found = [settings.experts.answer.backend]
    spec = settings.experts.answer
    if spec.backend in ("transformers", "llama-cpp"):
        try:
            local = resolve_local_model(spec.model)
        except ConfigError:
            return found
        if local.kind == "gguf":
            for backend, module in (("transformers", "transformers"), ("llama-cpp", "llama_cpp")):
                if backend not in found and importlib.util.find_spec(module) is not None:
                    found.append(backend)
    return found


def default_space(settings: Settings) -> SearchSpace:
    """The space searched when none is declared, restricted to what this machine can run.

    Retrieval (mode, ``rrf_k``, candidates), evidence (passages ``answer.k``, sentences per
    passage), the evidence threshold (``answer.min_evidence_similarity``, lexical checks) or the
    trained checks and their relevance policy (when a checks model is trained), the answer length
    (``answer.max_new_tokens``), and the writer's backend and threads (local backends).
    """
    from grounded.checks.store import active_model_dir

    dims = [
        Dimension("retrieval", ("hybrid", "bm25", "dense")),
        Dimension("search.rrf_k", (20, 60)),
        Dimension("search.candidates", (30, 100)),
        Dimension("answer.k", (1, 2, 3, 5)),
        Dimension("answer.sentences_per_passage", (1, 2, 3)),
        Dimension("answer.max_new_tokens", (32, 64)),
    ]
    try:
        active_model_dir()
        trained = True
    except ConfigError:
        trained = False
    checks = settings.answer.checks
    if trained:
        # `auto` is the model when one is trained: trying both would measure one thing twice.
        dims += [
            Dimension("answer.checks", ("lexical",) if checks == "auto" else ("lexical", "model")),
            Dimension("answer.relevance", ("answer", "off")),
        ]
    if not trained or checks == "lexical":  # the evidence threshold decides only under the lexical checks
        dims.append(Dimension("answer.min_evidence_similarity", (0.35, 0.45, 0.55)))
    spec = settings.experts.answer
    backends = _backends(settings)
    if len(backends) > 1:
        dims.append(Dimension("experts.answer.backend", tuple(backends)))
    if spec.backend == "llama-cpp" and len(backends) == 1:  # torch: one thread count per process
        cores = os.cpu_count() or 1
        threads = sorted({1, max(1, cores // 2), cores})
        configured = spec.threads or max(1, cores // 2)
        if len(threads) > 1:
            dims.append(Dimension("experts.answer.threads", tuple(t for t in threads if t != configured)))
    return SearchSpace(dims).with_baseline(settings)
