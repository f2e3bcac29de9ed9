"""How the classifier's actions agree with reply lines labelled outside Sisimai.

    python3 dev.py run python benchmarks/outside.py [LINES_JSONL] [--misses]

LINES_JSONL defaults to tests/outside/lines.jsonl: reply lines from other public projects'
fixtures and published provider replies (sources in tests/outside/SOURCES.md), each labelled
with what a careful sender does: suppress, pause (the sender), retry, fail (the message).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sendguard import Action, classify

ROOT = Path(__file__).resolve().parent.parent
ACTIONS = {
    Action.SUPPRESS: "suppress",
    Action.PAUSE_SENDER: "pause",
    Action.RETRY: "retry",
    Action.FAIL: "fail",
    Action.NONE: "none",
}
STAGES = frozenset({"mail", "rcpt", "data"})


@dataclass
class Outside:
    """Counts of (label, ours) pairs, with the disagreements."""

    pairs: Counter[tuple[str, str]] = field(default_factory=Counter)
    misses: list[tuple[str, str, str, str]] = field(default_factory=list)

    @property
    def lines(self) -> int:
        return sum(self.pairs.values())

    @property
    def agree(self) -> int:
        return sum(n for (want, got), n in self.pairs.items() if want == got)

    @property
    def sender_side_suppressed(self) -> int:
        return self.pairs[("pause", "suppress")]

    @property
    def wrongly_suppressed(self) -> int:
        return sum(n for (w, g), n in self.pairs.items() if g == "suppress" and w != "suppress")

    @property
    def dead(self) -> int:
        return sum(n for (w, _), n in self.pairs.items() if w == "suppress")

    @property
    def dead_missed(self) -> int:
        return sum(n for (w, g), n in self.pairs.items() if w == "suppress" and g != "suppress")


def evaluate(path: Path) -> Outside:
    """Classify every line of *path* (with its stage, when the label gives one)."""
    result = Outside()
    for text in path.read_text().splitlines():
        if not text.strip():
            continue
        row = json.loads(text)
        stage = row.get("stage")
        found = classify(row["line"], stage=stage if stage in STAGES else None)
        got = ACTIONS[found.action]
        result.pairs[(row["action"], got)] += 1
        if got != row["action"]:
            result.misses.append((row["action"], got, found.rule, row["line"]))
    return result


def main(argv: list[str]) -> None:
    paths = [a for a in argv if not a.startswith("--")]
    path = Path(paths[0]) if paths else ROOT / "tests" / "outside" / "lines.jsonl"
    r = evaluate(path)
    print(f"lines: {path}\n")
    print("| measure | n | of | % |\n|---|---:|---:|---:|")
    print(f"| action agreement | {r.agree} | {r.lines} | {100 * r.agree / r.lines:.1f} |")
    missed = 100 * r.dead_missed / r.dead
    print(f"| dead addresses missed | {r.dead_missed} | {r.dead} | {missed:.1f} |")
    print(f"| others suppressed | {r.wrongly_suppressed} | {r.lines - r.dead} | |")
    print(f"| sender-side suppressed | {r.sender_side_suppressed} | | |")
    if "--misses" in argv:
        for want, got, rule, line in r.misses:
            print(f"{want} != {got} ({rule}): {line[:200]}")


if __name__ == "__main__":
    main(sys.argv[1:])
