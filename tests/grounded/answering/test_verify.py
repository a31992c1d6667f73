"""The verifier: supported sentences stay, unsupported ones become quotes or go."""

from __future__ import annotations

import pytest

from grounded.answering.evidence import EvidencePool, build_pool
from grounded.answering.types import Citation
from grounded.answering.verify import check_support, is_quotable, verify
from grounded.config import AnswerSettings
from grounded.experts.embedding import SentenceEmbedder
from grounded.text import content_terms, key_terms

LOGAN = (
    "Mount Logan is the highest mountain in Canada and the second-highest peak in North America. "
    "It is located within Kluane National Park Reserve in southwestern Yukon. "
    "Mount Logan was named after Sir William Edmond Logan, a Canadian geologist."
)
INSULIN = (
    "Insulin is a peptide hormone produced by beta cells of the pancreatic islets. "
    "It regulates the metabolism of carbohydrates, fats and protein."
)


@pytest.fixture(scope="module")
def embedder() -> SentenceEmbedder:
    return SentenceEmbedder()


@pytest.fixture(scope="module")
def pool(embedder: SentenceEmbedder) -> EvidencePool:
    citations = [
        Citation(1, 11, "logan", "Mount Logan", "", 0, len(LOGAN), LOGAN, "wiki", None, 0.03),
        Citation(2, 12, "insulin", "Insulin", "", 0, len(INSULIN), INSULIN, "wiki", None, 0.02),
    ]
    return build_pool("where is mount logan located?", citations, embedder)


def test_terms_drop_stop_words_and_keep_numbers_and_names() -> None:
    assert content_terms("The mountains are located in Yukon 1925") == {"mountain", "locat", "yukon", "1925"}
    assert key_terms("It was named in 1925 after William Logan") == {"1925", "william", "logan"}


def test_pool_ranks_the_answering_sentence_first(pool: EvidencePool) -> None:
    assert pool.sentence(pool.closest() or 0).startswith("It is located within Kluane")
    assert pool.best_similarity() > 0.5


def test_supported_sentence_is_kept(pool: EvidencePool, embedder: SentenceEmbedder) -> None:
    settings = AnswerSettings()
    sentence = "Mount Logan is located in Kluane National Park Reserve in southwestern Yukon."
    check = check_support(sentence, embedder.embed([sentence])[0], (1,), pool, settings)
    assert check.supported
    assert check.word_support == 1.0
    assert not check.missing
    kept, checks = verify([(sentence, (1,))], pool, embedder, settings)
    assert [(s.text, s.citations, s.quoted) for s in kept] == [(sentence, (1,), False)]
    assert checks[0].supported


def test_wrong_citation_and_invented_facts_are_not_supported(pool: EvidencePool, embedder: SentenceEmbedder) -> None:
    settings = AnswerSettings()
    sentence = "Mount Logan is located in Kluane National Park Reserve in southwestern Yukon."
    assert not check_support(sentence, embedder.embed([sentence])[0], (2,), pool, settings).supported
    invented = "Mount Logan is located in Alberta and is 9000 metres high."
    check = check_support(invented, embedder.embed([invented])[0], (1,), pool, settings)
    assert not check.supported
    assert {"alberta", "9000"} <= set(check.missing)


def test_unsupported_sentence_is_replaced_by_a_verbatim_quote(pool: EvidencePool, embedder: SentenceEmbedder) -> None:
    kept, _ = verify([("Mount Logan is located in Alberta [1].", (1,))], pool, embedder, AnswerSettings())
    assert len(kept) == 1
    assert kept[0].quoted
    assert kept[0].text == "It is located within Kluane National Park Reserve in southwestern Yukon."
    assert kept[0].citations == (1,)
    assert kept[0].text in LOGAN


def test_uncited_sentence_gets_the_passage_that_supports_it(pool: EvidencePool, embedder: SentenceEmbedder) -> None:
    sentence = "Insulin is a peptide hormone produced by beta cells."
    kept, _ = verify([(sentence, ())], pool, embedder, AnswerSettings())
    assert [(s.text, s.citations, s.quoted) for s in kept] == [(sentence, (2,), False)]


def test_duplicates_are_dropped_and_length_is_capped(pool: EvidencePool, embedder: SentenceEmbedder) -> None:
    sentence = "Mount Logan is the highest mountain in Canada."
    kept, _ = verify([(sentence, (1,)), (sentence, (1,))], pool, embedder, AnswerSettings())
    assert len(kept) == 1
    many = [("Mount Logan is the highest mountain in Canada.", (1,)), ("It is located in southwestern Yukon.", (1,)),
            ("Insulin is a peptide hormone.", (2,))]  # fmt: skip
    assert len(verify(many, pool, embedder, AnswerSettings(max_sentences=2))[0]) == 2


LAMBDA = (
    'Lambdas\n*******\n\n   lambda_expr ::= "lambda" [parameter_list] ":" expression\n\n'
    "Lambda expressions (sometimes called lambda forms) are used to create anonymous functions. "
    "The unnamed object behaves like a function object defined with:\n\n   def <lambda>(parameters):\n"
    "       return expression\n\nNote that functions created with lambda expressions cannot contain statements."
)


def test_headings_and_code_are_never_kept_nor_quoted(embedder: SentenceEmbedder) -> None:
    # Without the trained checks, word overlap alone decides: a copied heading has every word in its source.
    citation = Citation(1, 11, "lambda", "Lambdas", "", 0, len(LAMBDA), LAMBDA, "docs", None, 0.03)
    question = "What is a lambda?"
    pool = build_pool(question, [citation], embedder)
    draft = [("Lambdas ******* def <lambda>(parameters):", (1,)), ("Lambdas are a kind of database table.", (1,))]
    kept, checks = verify(draft, pool, embedder, AnswerSettings())
    assert not checks[0].supported
    assert kept, "an unsupported sentence is replaced by a quote of the evidence"
    for sentence in kept:
        assert sentence.quoted
        assert is_quotable(sentence.text), sentence.text
        assert "*" not in sentence.text
        assert "::=" not in sentence.text
        assert "def <lambda>" not in sentence.text
