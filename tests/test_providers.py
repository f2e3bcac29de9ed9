"""The provider table (providers.toml) and rules files in the same format."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

import pytest

from sendguard import (
    DEFAULT_RULES,
    PROVIDER_RULES,
    Action,
    ConfigurationError,
    Rules,
    classify,
    load_rules,
)
from sendguard._bounces.classify import SENDER_REASONS
from sendguard.config import from_env

TABLE = tomllib.loads(
    resources.files("sendguard._bounces").joinpath("providers.toml").read_text(encoding="utf-8")
)["rule"]
EXAMPLES = [
    pytest.param(entry, text, id=f"{entry['provider']}-{n}-{i}")
    for n, entry in enumerate(TABLE)
    for i, text in enumerate(entry["example"])
]


def test_every_entry_names_its_source_and_an_example() -> None:
    assert len(TABLE) == len(PROVIDER_RULES) > 0
    for entry in TABLE:
        assert entry["source"].startswith("https://"), entry
        assert entry["example"], entry


@pytest.mark.parametrize(("entry", "text"), EXAMPLES)
def test_each_published_reply_gets_its_entrys_reason(entry: dict[str, object], text: str) -> None:
    found = classify(text)
    assert found.reason == entry["reason"], (found.rule, text)


@pytest.mark.parametrize(("entry", "text"), EXAMPLES)
def test_each_published_reply_is_decided_by_a_provider_rule_or_agrees_without_it(
    entry: dict[str, object], text: str
) -> None:
    # With the provider table taken out, the generic rules either reach the same reason or
    # the entry is what makes the difference; either way the entry's own rule matches its text.
    rule = PROVIDER_RULES[TABLE.index(entry)]
    found = classify(text)
    assert rule.matches(" ".join(text.split()), found.enhanced_code, found.reply_code), (
        f"{rule.name} does not match its own example {text!r}"
    )


@pytest.mark.parametrize(("entry", "text"), EXAMPLES)
def test_each_published_reply_gets_the_action_its_entry_implies(
    entry: dict[str, object], text: str
) -> None:
    # A sender-side reason never suppresses the recipient; an entry with pauses = false (one
    # mailbox's limit, one recipient's refusal of this sender) never pauses the sender.
    found = classify(text)
    if entry["reason"] in SENDER_REASONS:
        assert found.action is not Action.SUPPRESS, (found.rule, text)
    if entry.get("pauses") is False:
        assert found.action in (Action.RETRY, Action.FAIL), (found.rule, text)


def test_provider_rules_come_before_the_generic_ones() -> None:
    order = {rule: n for n, rule in enumerate(DEFAULT_RULES)}
    phrases = [order[r] for r in PROVIDER_RULES if r.pattern is not None]
    codes = [order[r] for r in PROVIDER_RULES if r.pattern is None]
    generic = [n for rule, n in order.items() if rule not in PROVIDER_RULES]
    assert max(phrases) < min(n for n in generic if DEFAULT_RULES[n].pattern is None)
    assert min(phrases) == 1  # right after greylisting
    # Codes alone: after every phrase, before every generic status code.
    generic_codes = [n for n in generic if DEFAULT_RULES[n].codes and not DEFAULT_RULES[n].pattern]
    assert max(codes) < min(generic_codes)


def test_a_rules_file_is_read_in_order_with_then_and_notes(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        """
[[rule]]
provider = "Example Mail"
reason = "mailboxfull"
pattern = 'casella'
then = 'piena'
source = "https://example.com/codes"
example = ["552 casella di posta piena"]

[[rule]]
reason = "userunknown"
pattern = 'utente sconosciuto'
definite = true
""",
        encoding="utf-8",
    )
    rules = load_rules(path)
    assert [r.reason for r in rules] == ["mailboxfull", "userunknown"]
    assert rules[0].name == "mailboxfull: Example Mail: casella...piena"
    found = classify("452 la casella di posta è piena", rules=Rules(rules))
    assert found.rule == rules[0].name
    assert classify("452 piena la casella", rules=Rules(rules)).rule != rules[0].name
    dead = classify("550 utente sconosciuto", rules=Rules(rules))
    assert dead.action is Action.SUPPRESS


def test_a_rules_file_is_a_configuration_value(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("[[rule]]\nreason = 'mailboxfull'\npattern = 'casella piena'\n", "utf-8")
    rules = from_env({"SENDGUARD_RULES": str(path)}).options["rules"]
    assert isinstance(rules, Rules)
    assert classify("552 casella piena", rules=rules).reason == "mailboxfull"
    assert rules.rules[-len(DEFAULT_RULES) :] == DEFAULT_RULES  # yours first, then the table


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("[[rule]]\nreason = 'nosuch'\npattern = 'x'\n", "unknown reason"),
        ("[[rule]]\nreason = 'blocked'\npatern = 'x'\n", "unknown key"),
        ("[[rule]]\nreason = 'blocked'\n", "needs a pattern"),
        ("[[rule]]\nreason = 'blocked'\nthen = 'x'\n", "needs a 'pattern'"),
        ("[[rule]]\nreason = 'blocked'\npattern = '('\n", "not a regular expression"),
        ("[[rule]]\nreason = 'blocked'\npattern = 'x'\ndefinite = 'yes'\n", "true or false"),
        ("[[rule]]\nreason = 'blocked'\ncodes = ['5.7']\n", "enhanced status codes"),
        ("[rules]\nreason = 'blocked'\n", "only [[rule]] tables"),
        ("rule = [", "not TOML"),
    ],
)
def test_a_bad_rules_file_is_a_clear_error(tmp_path: Path, text: str, complaint: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"bad\.toml") as caught:
        load_rules(path)
    assert complaint in str(caught.value)


def test_a_missing_rules_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot be read"):
        load_rules(tmp_path / "absent.toml")
