"""How well classify() and parse_bounce() agree with Sisimai on the real bounce corpus.

    python3 dev.py run python benchmarks/corpus.py [CORPUS_DIR] [--misses]

CORPUS_DIR defaults to tests/corpus (a copy of the development split).  Reports:

* reason agreement on lines.jsonl (classify() on the reply text alone);
* per recipient (status, reason) agreement on the e-mails (parse_bounce(); labels carry no
  address, so recipients are matched by their order in the bounce);
* the suppression decision: the share of hard bounces (label ``hardbounce``) that parse_bounce
  marks ``hard``, and suppressions where the label's reason is sender-side (must be none).

Sisimai v4 reason names in the labels are mapped to v5 (mesgtoobig and exceedlimit are
emailtoolarge, toomanyconn and speeding are ratelimited).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sendguard import classify, parse_bounce
from sendguard._bounces.classify import DEFAULT, SENDER_REASONS, Rules

ROOT = Path(__file__).resolve().parent.parent
V4_TO_V5 = {
    "mesgtoobig": "emailtoolarge",
    "exceedlimit": "emailtoolarge",
    "toomanyconn": "ratelimited",
    "speeding": "ratelimited",
}


def _reason(label: dict[str, Any]) -> str:
    reason = str(label["reason"])
    return V4_TO_V5.get(reason, reason)


def _loose(reason: str) -> str:
    """Reasons that only the SMTP stage tells apart (see BENCHMARKS.md), as one."""
    return "userunknown" if reason == "filtered" else reason


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class Result:
    """Agreement counts, with the disagreements for inspection."""

    lines: int = 0
    lines_agree: int = 0
    lines_agree_loose: int = 0
    reason_agree_loose: int = 0
    recipients: int = 0
    reason_agree: int = 0
    status_agree: int = 0
    both_agree: int = 0
    found: int = 0
    hard: int = 0
    hard_suppressed: int = 0
    sender_side: int = 0
    sender_side_suppressed: int = 0
    soft_suppressed: int = 0
    misses: list[str] = field(default_factory=list)
    by_reason: Counter[str] = field(default_factory=Counter)

    def pct(self, part: int, whole: int) -> float:
        """*part* of *whole* in percent (100 when there is nothing to count)."""
        return 100.0 * part / whole if whole else 100.0

    @property
    def line_rate(self) -> float:
        """Reason agreement on the reply lines, in percent."""
        return self.pct(self.lines_agree, self.lines)

    @property
    def reason_rate(self) -> float:
        """Reason agreement per recipient on the e-mails, in percent."""
        return self.pct(self.reason_agree, self.recipients)

    @property
    def both_rate(self) -> float:
        """(status, reason) agreement per recipient on the e-mails, in percent."""
        return self.pct(self.both_agree, self.recipients)

    @property
    def hard_rate(self) -> float:
        """Hard bounces that parse_bounce marks for suppression, in percent."""
        return self.pct(self.hard_suppressed, self.hard)

    def table(self) -> str:
        """The results as a Markdown table."""
        rows = [
            ("reason agreement, lines.jsonl", self.lines_agree, self.lines),
            ("... counting filtered and userunknown as one", self.lines_agree_loose, self.lines),
            ("recipients found in the e-mails", self.found, self.recipients),
            ("reason agreement per recipient, e-mails", self.reason_agree, self.recipients),
            (
                "... counting filtered and userunknown as one",
                self.reason_agree_loose,
                self.recipients,
            ),
            ("status agreement per recipient, e-mails", self.status_agree, self.recipients),
            ("(status, reason) agreement per recipient", self.both_agree, self.recipients),
            ("hard bounces suppressed", self.hard_suppressed, self.hard),
            ("soft bounces suppressed at once", self.soft_suppressed, self.recipients - self.hard),
            ("sender-side reasons suppressed", self.sender_side_suppressed, self.sender_side),
        ]
        out = ["| measure | agree | of | % |", "|---|---:|---:|---:|"]
        out += [f"| {name} | {a} | {b} | {self.pct(a, b):.1f} |" for name, a, b in rows]
        return "\n".join(out)


def evaluate(
    corpus: Path, *, rules: Rules = DEFAULT, only: Callable[[str], bool] | None = None
) -> Result:
    """Run classify() and parse_bounce() over *corpus* and count agreement.

    *rules* is the table both use; *only*, given a sample's file (``emails/...eml``), tells
    whether to count it (benchmarks/families.py counts one family at a time).
    """
    result = Result()

    def counted(name: str) -> list[dict[str, Any]]:
        return [r for r in _rows(corpus / name) if only is None or only(r["file"])]

    for row in counted("lines.jsonl"):
        result.lines += 1
        got = classify(row["line"], rules=rules).reason
        result.lines_agree_loose += _loose(got) == _loose(_reason(row))
        if got == _reason(row):
            result.lines_agree += 1
        else:
            result.misses.append(f"line {row['file']}: {_reason(row)} != {got}: {row['line']}")

    by_file: dict[str, list[dict[str, Any]]] = {}
    for row in counted("labels.jsonl"):
        by_file.setdefault(row["file"], []).append(row)
    for name, labels in sorted(by_file.items()):
        reports = parse_bounce((corpus / name).read_bytes(), rules=rules)
        for label in sorted(labels, key=lambda r: int(r["recipient_index"])):
            result.recipients += 1
            want = _reason(label)
            index = int(label["recipient_index"]) - 1
            report = reports[index] if index < len(reports) else None
            if report is not None:
                result.found += 1
            got_reason = report.reason if report else "-"
            got_status = report.status if report else "-"
            status_ok = (label["status"] or "") == got_status
            reason_ok = got_reason == want
            result.reason_agree += reason_ok
            result.reason_agree_loose += _loose(got_reason) == _loose(want)
            result.status_agree += status_ok
            result.both_agree += reason_ok and status_ok
            hard = bool(report and report.hard)
            if label["hardbounce"]:
                result.hard += 1
                result.hard_suppressed += hard
            elif hard:
                result.soft_suppressed += 1
            if want in SENDER_REASONS:
                result.sender_side += 1
                result.sender_side_suppressed += hard
            if not (reason_ok and status_ok) or hard != bool(label["hardbounce"]):
                result.by_reason[want] += 1
                result.misses.append(
                    f"mail {name}#{index + 1}: want {want} {label['status']} "
                    f"hard={label['hardbounce']}, got {got_reason} {got_status} hard={hard}"
                    + (f" | {report.diagnostic[:160]}" if report else " | no report")
                )
    return result


def main(argv: list[str]) -> int:
    """Print the table (and with ``--misses`` every disagreement)."""
    args = [a for a in argv if not a.startswith("--")]
    corpus = Path(args[0]) if args else ROOT / "tests" / "corpus"
    result = evaluate(corpus)
    print(f"corpus: {corpus}\n")
    print(result.table())
    if "--misses" in argv:
        print()
        print("\n".join(result.misses))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
