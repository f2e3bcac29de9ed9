"""Actions on reply lines labelled outside Sisimai (tests/outside, sources in SOURCES.md).

These lines were read while the evidence rules of issue 15 were written, so they are a floor
against regressions, not a held-out measure.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.outside import Outside, evaluate

LINES = Path(__file__).parent / "outside" / "lines.jsonl"
DOCS = Path(__file__).parent / "outside" / "docs.jsonl"


@pytest.fixture(scope="module")
def result() -> Outside:
    return evaluate(LINES)


def test_no_sender_side_reply_is_suppressed(result: Outside) -> None:
    assert result.pairs[("pause", "pause")] > 100
    assert result.sender_side_suppressed == 0


def test_floors(result: Outside) -> None:
    assert result.lines >= 400
    assert result.agree / result.lines >= 0.95
    assert result.wrongly_suppressed == 0
    assert result.dead_missed / result.dead <= 0.04


def test_floors_on_the_second_set() -> None:
    docs = evaluate(DOCS)
    assert docs.lines >= 339
    assert docs.agree / docs.lines >= 0.945
    assert docs.sender_side_suppressed == 0
    # Five good addresses are still suppressed where the labels and the corpus disagree
    # (Microsoft's 5.4.1 and 5.5.0, RFC 3463's 5.3.2, 5.2.1 "inactive", 5.1.3 STOREDRV).
    assert docs.wrongly_suppressed <= 5
    assert docs.dead_missed / docs.dead <= 0.02
