"""Actions on reply lines labelled outside Sisimai (tests/outside, sources in SOURCES.md).

These lines were read while the evidence rules of issue 15 were written, so they are a floor
against regressions, not a held-out measure.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.outside import Outside, evaluate

LINES = Path(__file__).parent / "outside" / "lines.jsonl"


@pytest.fixture(scope="module")
def result() -> Outside:
    return evaluate(LINES)


def test_no_sender_side_reply_is_suppressed(result: Outside) -> None:
    assert result.pairs[("pause", "pause")] > 100
    assert result.sender_side_suppressed == 0


def test_floors(result: Outside) -> None:
    assert result.lines >= 400
    assert result.agree / result.lines >= 0.85
    assert result.wrongly_suppressed <= 1
    assert result.dead_missed / result.dead <= 0.10
