"""The corpus figures per sending-MTA family, and with each family's own rules taken out.

    python -m benchmarks.families [CORPUS_DIR] [--json] [--misses]

A sample's family is its file name without the number (``emails/lhost-postfix-17.eml`` is
``lhost-postfix``); a reply line belongs to the family of the e-mail it came from.  For each
family F this reports the figures of benchmarks/corpus.py over F's samples alone, twice:

* with all the default rules;
* leave-one-family-out: without the rules "written for F", the default rules with a pattern
  that match a text of F and no text of any other family (reply lines and every text
  parse_bounce classifies in the e-mails) nor any line of tests/outside/lines.jsonl.  Rules
  with codes only are generic and stay.

A family whose figures drop without its own rules passes only because of a rule naming its
exact wording: those samples count as failures in the leave-one-out totals, the honest
estimate of how the rules do on a family they were not written for.  ``--misses`` lists the
samples that fail only without their family's rules.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from benchmarks.corpus import ROOT, Result, _rows, evaluate
from sendguard import classify
from sendguard._bounces.classify import DEFAULT_RULES, Rule, Rules

CORPUS = ROOT / "tests" / "corpus"
OUTSIDE = ROOT / "tests" / "outside" / "lines.jsonl"
_NUMBER = re.compile(r"-\d+\Z")

Seen = tuple[str, str | None, int | None]
"""What a rule is matched against: the folded text, the enhanced code, the reply code."""


def family(file: str) -> str:
    """The sending-MTA family of a corpus sample (``emails/lhost-exim-03.eml``: lhost-exim)."""
    return _NUMBER.sub("", Path(file).stem)


def in_family(name: str) -> Callable[[str], bool]:
    """A filter of the samples of family *name*, for :func:`benchmarks.corpus.evaluate`."""

    def of(file: str) -> bool:
        return family(file) == name

    return of


class Recording(Rules):
    """The default table, remembering what classify() asks it and which rules decided."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[Seen] = set()
        self.decided: set[Rule] = set()

    def first_match(self, text: str, enhanced: str | None, reply_code: int | None) -> Rule | None:
        """The first rule that matches, as the default table answers; recorded."""
        self.seen.add((text, enhanced, reply_code))
        rule = super().first_match(text, enhanced, reply_code)
        if rule is not None:
            self.decided.add(rule)
        return rule


def matching(seen: Iterable[Seen], candidates: Iterable[Rule]) -> frozenset[Rule]:
    """The *candidates* that match at least one of the texts *seen*."""
    texts = list(seen)
    return frozenset(r for r in candidates if any(r.matches(*s) for s in texts))


PATTERN_RULES = tuple(r for r in DEFAULT_RULES if r.pattern is not None)
"""The default rules that name wording; the others (codes only) are generic."""


@dataclass
class Family:
    """One family's figures with all rules and without the rules written for it."""

    name: str
    full: Result
    held_out: Result
    matched: frozenset[Rule]
    """Pattern rules that match one of the family's texts."""
    decided: frozenset[Rule]
    """Rules that were the first match for one of the family's texts (all rules in force)."""
    own: tuple[Rule, ...]
    """The rules written for it (in table order): matched here and nowhere else."""

    @property
    def deciding_own(self) -> tuple[Rule, ...]:
        """Its own rules that decided one of its texts: only these can change a figure."""
        return tuple(r for r in self.own if r in self.decided)

    @property
    def drop(self) -> dict[str, int]:
        """How much each figure loses without the family's own rules (sender-side: gains)."""
        full, held = figures(self.full), figures(self.held_out)
        return {k: full[k] - held[k] for k in full}

    def lost(self) -> list[str]:
        """The disagreements that only the leave-one-out run has, marked when not new.

        A sample is known by the start of its line in :attr:`Result.misses` (``line FILE``,
        ``mail FILE#N``); one that disagreed already, differently, is marked "(was a miss)".
        """
        before = set(self.full.misses)
        sample = {m.split(": ", 1)[0] for m in before}
        return [
            ("(was a miss) " if m.split(": ", 1)[0] in sample else "") + m
            for m in self.held_out.misses
            if m not in before
        ]

    @property
    def overfitted(self) -> bool:
        """Whether some sample passes only because of a rule written for this family."""
        drop = self.drop
        return any(drop[k] > 0 for k in _AGREEMENTS) or drop["sender_side_suppressed"] < 0


_AGREEMENTS = ("lines_agree", "reason_agree", "hard_suppressed")


def figures(result: Result) -> dict[str, int]:
    """The counts this benchmark reports, by name."""
    return {
        "lines": result.lines,
        "lines_agree": result.lines_agree,
        "recipients": result.recipients,
        "reason_agree": result.reason_agree,
        "hard": result.hard,
        "hard_suppressed": result.hard_suppressed,
        "sender_side": result.sender_side,
        "sender_side_suppressed": result.sender_side_suppressed,
    }


def total(results: Iterable[Result]) -> Result:
    """The counts of *results* added up (the disagreements joined)."""
    out = Result()
    for result in results:
        for f in fields(Result):
            value = getattr(result, f.name)
            if isinstance(value, int):
                setattr(out, f.name, getattr(out, f.name) + value)
        out.misses += result.misses
        out.by_reason.update(result.by_reason)
    return out


@dataclass
class Study:
    """Every family of a corpus, all rules against leave-one-family-out."""

    families: list[Family]
    outside_matched: frozenset[Rule]
    """Pattern rules that match a line of the outside set (never anyone's own)."""

    @property
    def full(self) -> Result:
        """The all-rules totals (those of benchmarks/corpus.py)."""
        return total(f.full for f in self.families)

    @property
    def held_out(self) -> Result:
        """The totals of every family measured without its own rules."""
        return total(f.held_out for f in self.families)

    def census(self) -> dict[str, int]:
        """How many pattern rules match the texts of how many families, and outside lines."""
        families = {r: sum(r in f.matched for f in self.families) for r in set(PATTERN_RULES)}
        outside = self.outside_matched
        return {
            "pattern rules": len(families),
            "matched by two families or more": sum(n > 1 for n in families.values()),
            "by one family and an outside line": sum(
                n == 1 and r in outside for r, n in families.items()
            ),
            "by one family only (its own)": sum(
                n == 1 and r not in outside for r, n in families.items()
            ),
            "by outside lines only": sum(n == 0 and r in outside for r, n in families.items()),
            "by nothing": sum(n == 0 and r not in outside for r, n in families.items()),
        }

    def owner(self) -> dict[str, str]:
        """Every family-only rule's name, with the family it was written for."""
        return {r.name: f.name for f in self.families for r in f.own}


def _families(corpus: Path) -> list[str]:
    files = {
        row["file"] for name in ("lines.jsonl", "labels.jsonl") for row in _rows(corpus / name)
    }
    return sorted({family(f) for f in files})


def study(corpus: Path = CORPUS, outside: Path = OUTSIDE) -> Study:
    """Measure every family of *corpus* with all rules, then without its own."""
    runs: dict[str, tuple[Result, Recording]] = {}
    for name in _families(corpus):
        recording = Recording()
        result = evaluate(corpus, rules=recording, only=in_family(name))
        runs[name] = (result, recording)
    beyond = Recording()
    for row in _rows(outside):
        classify(row["line"], rules=beyond)
    outside_matched = matching(beyond.seen, PATTERN_RULES)
    matched = {name: matching(rec.seen, PATTERN_RULES) for name, (_, rec) in runs.items()}
    seen_by: dict[Rule, set[str]] = {}
    for name, rules in matched.items():
        for rule in rules:
            seen_by.setdefault(rule, set()).add(name)
    out = []
    for name, (result, recording) in runs.items():
        own = tuple(
            dict.fromkeys(
                r
                for r in DEFAULT_RULES
                if r in matched[name] and seen_by[r] == {name} and r not in outside_matched
            )
        )
        held_out = result
        if any(r in recording.decided for r in own):
            # Only a rule that decided a text can change a figure; otherwise the run is equal.
            reduced = Rules(base=[r for r in DEFAULT_RULES if r not in own])
            held_out = evaluate(corpus, rules=reduced, only=in_family(name))
        out.append(
            Family(
                name,
                full=result,
                held_out=held_out,
                matched=matched[name],
                decided=frozenset(recording.decided),
                own=own,
            )
        )
    return Study(out, outside_matched)


# -- output -------------------------------------------------------------------------------------


def _ratio(part: int, whole: int) -> str:
    return f"{part}/{whole}" if whole else "-"


def _pair(full: Result, held: Result, part: str, whole: str) -> str:
    a, b = getattr(full, part), getattr(held, part)
    shown = _ratio(a, getattr(full, whole))
    return shown if a == b else f"{shown} → **{b}**"


def table(s: Study) -> str:
    """Per family: the figures with all rules, and (in bold) what changes without its own."""
    out = [
        "| family | lines agree | e-mails agree | hard suppressed | sender-side suppressed "
        "| own rules (deciding) | passes only by its own rules |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    out += [
        f"| {f.name} | {_pair(f.full, f.held_out, 'lines_agree', 'lines')} "
        f"| {_pair(f.full, f.held_out, 'reason_agree', 'recipients')} "
        f"| {_pair(f.full, f.held_out, 'hard_suppressed', 'hard')} "
        f"| {_pair(f.full, f.held_out, 'sender_side_suppressed', 'sender_side')} "
        f"| {len(f.own)} ({len(f.deciding_own)}) | {'**yes**' if f.overfitted else ''} |"
        for f in s.families
    ]
    return "\n".join(out)


def totals(s: Study) -> str:
    """The all-rules totals beside the leave-one-family-out ones."""
    full, held = s.full, s.held_out
    rows = [
        ("reason agreement, lines.jsonl", "lines_agree", "lines"),
        ("reason agreement per recipient, e-mails", "reason_agree", "recipients"),
        ("hard bounces suppressed", "hard_suppressed", "hard"),
        ("sender-side reasons suppressed", "sender_side_suppressed", "sender_side"),
    ]
    out = [
        "| measure | all rules | % | leave-one-family-out | % |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, part, whole in rows:
        a, b, n = getattr(full, part), getattr(held, part), getattr(full, whole)
        out.append(f"| {label} | {a}/{n} | {full.pct(a, n):.1f} | {b}/{n} | {held.pct(b, n):.1f} |")
    return "\n".join(out)


def own_rules(s: Study) -> str:
    """Each family's own rules; those marked * decided one of its texts."""
    out = []
    for f in s.families:
        if f.own:
            out.append(f"- {f.name}:")
            out += [f"  - {'*' if r in f.decided else ' '} `{r.name}`" for r in f.own]
    return "\n".join(out)


def as_json(s: Study) -> dict[str, Any]:
    """The whole study as JSON-ready data."""
    return {
        "families": [
            {
                "family": f.name,
                "all_rules": figures(f.full),
                "leave_one_out": figures(f.held_out),
                "drop": f.drop,
                "own_rules": [r.name for r in f.own],
                "own_rules_deciding": [r.name for r in f.deciding_own],
                "passes_only_by_own_rules": f.overfitted,
            }
            for f in s.families
        ],
        "totals": {"all_rules": figures(s.full), "leave_one_out": figures(s.held_out)},
        "family_only_rules": s.owner(),
        "pattern_rules": s.census(),
    }


def main(argv: list[str]) -> int:
    """Print the tables (``--json``: the data; ``--misses``: samples lost without own rules)."""
    args = [a for a in argv if not a.startswith("--")]
    corpus = Path(args[0]) if args else CORPUS
    s = study(corpus)
    if "--json" in argv:
        print(json.dumps(as_json(s), indent=2, ensure_ascii=False))
        return 0
    print(f"corpus: {corpus}\n\n## Per family (bold: without its own rules)\n")
    print(table(s))
    print("\n## Totals\n")
    print(totals(s))
    print("\n## Pattern rules by the families whose texts they match\n")
    print("\n".join(f"- {k}: {v}" for k, v in s.census().items()))
    print("\n## Rules written for one family (* decided one of its texts)\n")
    print(own_rules(s))
    if "--misses" in argv:
        print("\n## What changes without the family's own rules\n")
        for f in s.families:
            if lost := f.lost():
                print(f"- {f.name}:")
                print("\n".join(f"  - {m}" for m in lost))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
