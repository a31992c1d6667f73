"""The router: what kind of question is this, and so which tools should answer it?

Four routes:

* ``unstructured``: a fact to find in passages (search, then the writer cites them);
* ``structured``: a count, sum, ranking or lookup over mirrored tables (SQL);
* ``multi_step``: several facts to combine (a comparison, two questions in one);
* ``not_fact_seeking``: clearly conversational turns only (greetings, thanks, farewells, "what
  can you do?"): a fixed reply without retrieval that states no facts, marked ungrounded. Anything
  else is grounded: in doubt, ground.

The classifier is small and fast (a few milliseconds): cosine similarity of the question's
MiniLM embedding to the centroid of a handful of example questions per route, plus cheap
features: aggregate words ("how many", "average", "largest"), and schema linking against the
mirrored tables (a question can only go to SQL when some table matches what it names). Every
decision records its reason.

Routing tries the tables: a fact-seeking question that names a table's cell values
(``texas``, ``san francisco``: value linking) goes to SQL even when its words look like a
passage question; and where the knowledge base holds only
tables (``passages=False``), any question linked to a table goes to SQL, since there is nothing
else to search.

Example::

    router = Router(embedder)
    decision = router.route("how many states border texas?", links=linker.link(question))
    decision.route, decision.reason     # ('structured', "aggregate word 'how many'; table geo.border_info ...")
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from grounded.experts.embedding import SentenceEmbedder
from grounded.sql.schema_link import Link

__all__ = ["EXAMPLES", "ROUTES", "Route", "RouteDecision", "Router"]

Route = Literal["unstructured", "structured", "multi_step", "not_fact_seeking"]
ROUTES: tuple[Route, ...] = ("unstructured", "structured", "multi_step", "not_fact_seeking")

EXAMPLES: dict[Route, tuple[str, ...]] = {
    "unstructured": (
        "who wrote the declaration of independence",
        "what does the with statement do",
        "when was the eiffel tower built",
        "why is the sky blue",
        "where is mount logan located",
        "what is the capital of australia",
        "who plays the lead role in the movie",
        "what is the meaning of the song",
        "how does photosynthesis work",
        "who won the world cup in 2010",
        "what causes the northern lights",
        "what is a lambda expression",
    ),
    "structured": (
        "how many customers placed more than ten orders",
        "what is the average price of products in each category",
        "which state has the largest population",
        "list the cities with a population over one million",
        "what is the total revenue for 2023",
        "how many rows have status open",
        "which product has the highest stock",
        "count the employees in the sales department",
        "what is the longest river in the country",
        "give the sum of sales by region",
        "what is the population of the largest city",
        "which year had the most medals",
    ),
    "multi_step": (
        "compare the population of oslo and bergen",
        "what is the difference between the heights of the two mountains",
        "who was president when the company was founded",
        "is the river longer than the one in the neighbouring country",
        "what percentage of the total does the first one account for",
        "which is older, the bridge or the cathedral",
    ),
    "not_fact_seeking": (
        "hello",
        "hi there, how are you",
        "thanks, that was helpful",
        "write a poem about the sea",
        "tell me a joke",
        "what can you do",
        "translate good morning into french",
        "good night",
        "you are great",
        "summarise our conversation",
    ),
}

# A turn goes without evidence only when it is clearly conversational, all of it: a greeting, thanks, a
# farewell, an acknowledgement, a compliment, or a question about the assistant itself. Anything else,
# "write a poem about the sea" or "the latin phrase parens patriae was used to refer to" included, is
# grounded: in doubt, ground (an ungrounded reply states no facts, so it can help with nothing else).
_CONVERSATIONAL = re.compile(
    r"^(?:(?:hi|hello|hey|hiya|howdy|greetings|good (?:morning|afternoon|evening|night|day)|"
    r"thanks?(?: you)?(?: (?:so|very) much)?|thank you|thx|cheers|many thanks|"
    r"bye|goodbye|good ?bye|see you(?: later| soon)?|farewell|"
    r"ok(?:ay)?|cool|great|nice|perfect|awesome|got it|i see|understood|sounds good|"
    r"(?:that|this|it) (?:was|is) (?:very |really |so )?(?:helpful|great|useful|perfect|nice)|"
    r"you(?:'re| are) (?:great|awesome|helpful|the best|amazing)|"
    r"how are you(?: doing)?(?: today)?|how's it going|what's up|"
    r"who are you|what are you|what can you do|what do you do|how can you help(?: me)?|"
    r"there|everyone|all|again|a lot|for (?:the|your) help|for that|for everything|that's all|"
    r"no|yes|sure|please|(?:my|the) friend|bot|grounded)"
    r"[\s,.!?;:)(-]*)+$"
)

_AGGREGATE = re.compile(
    r"\b(how many|how much|number of|count|total|sum|average|avg|mean|median|maximum|minimum|most|least|"
    r"largest|smallest|biggest|highest|lowest|longest|shortest|top \d+|rank|more than|less than|fewer|greater|"
    r"at least|list (all|the)|which|what (is|are) the (names?|total))\b"
)
_MULTI = re.compile(
    r"\b(compare|comparison|difference between|differ|both|versus|vs\.?|ratio of|percentage of|"
    r"and (what|who|when|where|how|which)|older|younger|earlier|later) \b"
)


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """The route taken, why, and the numbers behind it."""

    route: Route
    reason: str
    scores: dict[str, float] = field(default_factory=dict)
    links: tuple[Link, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "route": self.route,
            "reason": self.reason,
            "scores": dict(self.scores),
            "tables": [link.table.qualified for link in self.links],
        }


class Router:
    """Nearest-centroid routing over MiniLM embeddings plus cue words and schema links."""

    def __init__(
        self,
        embedder: SentenceEmbedder,
        *,
        examples: dict[Route, tuple[str, ...]] | None = None,
        min_link_score: float = 0.55,
    ) -> None:
        self.embedder = embedder
        examples = examples or EXAMPLES
        self.routes: tuple[Route, ...] = tuple(r for r in ROUTES if examples.get(r))
        centroids = []
        for route in self.routes:
            vectors = embedder.embed(list(examples[route]))
            centroid = vectors.mean(axis=0)
            centroids.append(centroid / np.linalg.norm(centroid))
        self.centroids = np.stack(centroids)
        self.min_link_score = min_link_score

    def scores(self, question: str) -> dict[str, float]:
        sims = self.centroids @ self.embedder.embed_query(question)
        return {route: round(float(s), 4) for route, s in zip(self.routes, sims, strict=True)}

    def route(self, question: str, links: Sequence[Link] = (), *, passages: bool = True) -> RouteDecision:
        """Classify ``question``; ``links`` are its schema links (best first), if tables exist.

        ``passages=False``: the caller can read no passage, only tables (see the module docstring).
        """
        lowered = " ".join(question.lower().split()) + " "
        scores = self.scores(question)
        best = max(scores, key=lambda r: scores[r])
        # With nothing but tables to read, a weaker link is still the best place to look.
        threshold = self.min_link_score if passages else self.min_link_score * 0.6
        linked = tuple(link for link in links if link.score >= threshold)[:3]
        aggregate = _AGGREGATE.search(lowered)
        multi = _MULTI.search(lowered)
        if _CONVERSATIONAL.match(lowered.strip()) and not linked:
            return RouteDecision("not_fact_seeking", "conversational: greeting, thanks or small talk", scores)
        # Values are precise (whole cell values, longest spans first); shared column words alone
        # ("name", "city") are not, so they do not override a passage-like question.
        names_table = bool(linked) and bool(linked[0].values)
        tables_only = not passages and bool(linked)
        if linked and (aggregate or best == "structured" or names_table or tables_only):
            top = linked[0]
            why = [f"table {top.table.qualified} matches (score {top.score:.2f}"]
            if top.names:
                why.append(f"names {', '.join(top.names)}")
            if top.values:
                why.append(f"values {', '.join(top.values[:3])}")
            if aggregate:
                cue = f"aggregate word {aggregate.group(0)!r}"
            elif best == "structured":
                cue = "closest to structured examples"
            elif names_table:
                cue = f"names what table {top.table.qualified} holds, though closest to {best} examples"
            else:
                cue = "only tables to read (no passages)"
            route: Route = "multi_step" if multi and best == "multi_step" else "structured"
            return RouteDecision(route, f"{cue}; {'; '.join(why)})", scores, linked)
        if multi and (best == "multi_step" or " and " in lowered):
            return RouteDecision("multi_step", f"combines facts ({multi.group(0).strip()!r})", scores, linked)
        reason = "no mirrored table matches" if not linked else "tables match but nothing asks for an aggregate"
        return RouteDecision("unstructured", f"fact-seeking; {reason}; search the passages", scores, linked)
