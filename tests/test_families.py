"""Leave-one-family-out on the corpus (benchmarks/families.py): which rules a family owns, and
what its figures are without them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks.corpus import evaluate
from benchmarks.families import (
    CORPUS,
    OUTSIDE,
    PATTERN_RULES,
    Family,
    Recording,
    Study,
    family,
    figures,
    in_family,
    main,
    study,
)
from sendguard import parse_bounce
from sendguard._bounces.classify import DEFAULT_RULES, Rule, Rules


@pytest.fixture(scope="module")
def whole() -> Study:
    return study()


def _family(s: Study, name: str) -> Family:
    return next(f for f in s.families if f.name == name)


def _rule(pattern: str) -> Rule:
    return next(r for r in DEFAULT_RULES if r.pattern == pattern)


def test_a_family_is_the_file_name_without_its_number() -> None:
    assert family("emails/lhost-postfix-17.eml") == "lhost-postfix"
    assert family("emails/rhost-google-03.eml") == "rhost-google"
    assert family("emails/arf-02.eml") == "arf"
    assert family("emails/lhost-x1-01.eml") == "lhost-x1"


def test_the_families_add_up_to_the_corpus(whole: Study) -> None:
    assert figures(whole.full) == figures(evaluate(CORPUS))
    assert len(whole.families) > 50


def test_own_rules_match_that_family_only_and_no_outside_line(whole: Study) -> None:
    for f in whole.families:
        for rule in f.own:
            assert rule.pattern is not None
            assert rule in f.matched
            assert rule not in whole.outside_matched
            assert all(rule not in g.matched for g in whole.families if g is not f)
    # Google Groups' help link is in its notices and nowhere else.
    groups = _family(whole, "lhost-googlegroups")
    assert _rule(r"groups\.google\.com/support") in groups.own


def test_without_its_own_rules_a_family_loses_what_they_decided(whole: Study) -> None:
    groups = _family(whole, "lhost-googlegroups")
    assert groups.full.lines_agree == groups.full.lines > 0
    assert groups.held_out.lines_agree == 0  # the e-mail path takes the reduced table too
    assert groups.held_out.reason_agree == 0
    assert groups.overfitted
    assert groups.lost()
    assert whole.held_out.lines_agree < whole.full.lines_agree


def test_rules_that_decided_nothing_change_nothing(whole: Study) -> None:
    # study() skips the second run when no own rule decided a text; check that it may.
    idle = [f for f in whole.families if f.own and not f.deciding_own]
    assert idle
    for f in idle[:3]:
        reduced = Rules(base=[r for r in DEFAULT_RULES if r not in f.own])
        again = evaluate(CORPUS, rules=reduced, only=in_family(f.name))
        assert figures(again) == figures(f.full)
        assert again.misses == f.full.misses
        assert not f.overfitted


def test_removing_other_families_rules_never_changes_a_family(whole: Study) -> None:
    for f in whole.families:
        others = {r for g in whole.families if g is not f for r in g.own}
        reduced = Rules(base=[r for r in DEFAULT_RULES if r not in others])
        again = evaluate(CORPUS, rules=reduced, only=in_family(f.name))
        assert figures(again) == figures(f.full), f.name
        assert again.misses == f.full.misses, f.name


def test_parse_bounce_classifies_with_the_table_it_is_given() -> None:
    names = {r.name for r in DEFAULT_RULES}
    for path in sorted((CORPUS / "emails").glob("lhost-*-0[1-3].eml"))[:20]:
        recording = Recording()
        parse_bounce(path.read_bytes(), rules=recording)
        for report in parse_bounce(path.read_bytes(), rules=Rules(base=())):
            assert report.classification is None or report.classification.rule not in names
        assert recording.seen or not parse_bounce(path.read_bytes()), path


def _corpus(tmp_path: Path, samples: dict[str, str], outside: list[str]) -> tuple[Path, Path]:
    """A corpus of *samples* (its name: a name in tests/corpus/emails), and an outside set."""
    rows = {
        name: [json.loads(x) for x in (CORPUS / name).read_text().splitlines() if x.strip()]
        for name in ("lines.jsonl", "labels.jsonl")
    }
    (tmp_path / "emails").mkdir(parents=True)
    for name, rows_of in rows.items():
        kept = []
        for new, old in samples.items():
            shutil.copy(CORPUS / "emails" / old, tmp_path / "emails" / new)
            kept += [
                {**r, "file": f"emails/{new}"} for r in rows_of if r["file"] == f"emails/{old}"
            ]
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in kept))
    lines = tmp_path / "outside.jsonl"
    lines.write_text("".join(json.dumps({"line": x, "action": "fail"}) + "\n" for x in outside))
    return tmp_path, lines


def test_a_wording_two_families_share_or_an_outside_line_has_is_nobodys(tmp_path: Path) -> None:
    policy = _rule("denied by policy")
    postfix, groups = "lhost-postfix-42.eml", "lhost-googlegroups-02.eml"

    alone = study(*_corpus(tmp_path / "a", {postfix: postfix, groups: groups}, []))
    assert policy in _family(alone, "lhost-postfix").own
    assert _family(alone, "lhost-postfix").overfitted

    outside = study(*_corpus(tmp_path / "b", {postfix: postfix}, ["550 Denied by policy"]))
    assert policy not in _family(outside, "lhost-postfix").own
    assert policy in outside.outside_matched

    shared = {postfix: postfix, "lhost-exim-99.eml": postfix}
    both = study(*_corpus(tmp_path / "c", shared, []))
    assert all(policy not in f.own for f in both.families)
    assert figures(both.held_out) == figures(both.full)


def test_json_output(capsys: pytest.CaptureFixture[str], whole: Study) -> None:
    assert main(["--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["all_rules"] == figures(whole.full)
    assert data["totals"]["leave_one_out"] == figures(whole.held_out)
    assert data["family_only_rules"] == whole.owner()
    assert {r.name for r in PATTERN_RULES} >= set(data["family_only_rules"])
    assert OUTSIDE.exists()


def test_every_pattern_rule_is_counted_once(whole: Study) -> None:
    census = whole.census()
    assert sum(census.values()) == 2 * census["pattern rules"]
    assert census["by one family only (its own)"] == len(whole.owner())
