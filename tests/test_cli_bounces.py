"""`sendguard classify` and `sendguard ingest` (eml, mbox, maildir; --apply against Redis)."""

from __future__ import annotations

import asyncio
import mailbox
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sendguard import DEFAULT_RULES, RedisStore, Suppression
from sendguard._cli import app

CORPUS = Path(__file__).parent / "corpus" / "emails"
runner = CliRunner()


def test_classify_prints_reason_action_and_the_rule() -> None:
    result = runner.invoke(app, ["classify", "550 5.1.1 <a@b.example>: User unknown"])
    assert result.exit_code == 0
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines() if " " in line)
    assert lines["reason"].strip() == "userunknown"
    assert lines["action"].strip() == "suppress"
    assert lines["status"].strip() == "5.1.1"
    assert "why" in lines


def test_classify_takes_the_stage() -> None:
    result = runner.invoke(app, ["classify", "550 5.1.1 User unknown", "--stage", "MAIL"])
    assert "rejected" in result.stdout


def test_rules_prints_the_table_in_order() -> None:
    result = runner.invoke(app, ["rules"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == len(DEFAULT_RULES)
    assert lines[0].split()[:2] == ["1", DEFAULT_RULES[0].reason]
    assert any("status 5.7.26" in line or "x.7.26" in line for line in lines)


def test_ingest_an_eml_file_shows_each_recipient() -> None:
    result = runner.invoke(app, ["ingest", str(CORPUS / "lhost-aol-03.eml")])
    assert result.exit_code == 0
    rows = [line.split() for line in result.stdout.splitlines()[1:3]]
    assert [(r[1], r[4], r[5]) for r in rows] == [
        ("sabineko@example.jp", "mailboxfull", "no"),
        ("mikeneko@example.jp", "userunknown", "yes"),
    ]
    assert "1 messages, 2 reports" in result.stdout


def _samples() -> list[bytes]:
    return [(CORPUS / n).read_bytes() for n in ("lhost-exim-02.eml", "lhost-qmail-01.eml")]


def test_ingest_reads_an_mbox(tmp_path: Path) -> None:
    box = mailbox.mbox(tmp_path / "bounces.mbox")
    for raw in _samples():
        box.add(raw)
    box.close()
    result = runner.invoke(app, ["ingest", str(tmp_path / "bounces.mbox")])
    assert result.exit_code == 0
    assert "bounces.mbox#1" in result.stdout
    assert "bounces.mbox#2" in result.stdout
    assert "2 messages, 3 reports: userunknown 3" in result.stdout


def test_ingest_reads_a_maildir(tmp_path: Path) -> None:
    box = mailbox.Maildir(tmp_path / "Maildir")
    for raw in _samples():
        box.add(raw)
    box.close()
    result = runner.invoke(app, ["ingest", str(tmp_path / "Maildir")])
    assert result.exit_code == 0
    assert "2 messages, 3 reports: userunknown 3" in result.stdout


def test_ingest_reports_unreadable_files_and_ordinary_mail(tmp_path: Path) -> None:
    (tmp_path / "junk.eml").write_bytes(b"\x00\x01 not mail")
    (tmp_path / "hello.eml").write_bytes(b"From: a@b.example\nSubject: hi\n\nhello\n")
    result = runner.invoke(app, ["ingest", str(tmp_path)])
    assert result.exit_code == 0
    assert "not a bounce" in result.stdout
    assert "junk.eml: not an e-mail message" in result.stderr
    assert "1 messages could not be read" in result.stdout


def test_ingest_of_a_missing_path_fails(tmp_path: Path) -> None:
    result = runner.invoke(app, ["ingest", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def stored(redis_url: str, prefix: str, address: str) -> Suppression | None:
    async def get() -> Suppression | None:
        async with RedisStore.from_url(redis_url, prefix=prefix) as store:
            return await store.get(address)

    return asyncio.run(get())


@pytest.mark.usefixtures("redis_store")
def test_ingest_apply_suppresses_in_redis(redis_url: str, prefix: str) -> None:
    env = {"SENDGUARD_REDIS_URL": redis_url, "SENDGUARD_PREFIX": prefix}
    shown = runner.invoke(app, ["ingest", str(CORPUS / "lhost-exim-02.eml")], env=env)
    assert "suppressed" not in shown.stdout  # without --apply nothing is written
    assert stored(redis_url, prefix, "kijitora@example.jp") is None
    result = runner.invoke(app, ["ingest", "--apply", str(CORPUS / "lhost-exim-02.eml")], env=env)
    assert result.exit_code == 0, result.stderr
    assert "trusted" in result.stdout
    entry = stored(redis_url, prefix, "kijitora@example.jp")
    assert entry is not None
    assert (entry.reason, entry.source) == ("userunknown", "bounce")


@pytest.mark.usefixtures("redis_store")
def test_ingest_apply_with_a_secret_trusts_only_signed_bounces(redis_url: str, prefix: str) -> None:
    env = {
        "SENDGUARD_REDIS_URL": redis_url,
        "SENDGUARD_PREFIX": prefix,
        "SENDGUARD_BOUNCE_SECRET": "sixteen bytes or more, surely",
    }
    result = runner.invoke(app, ["ingest", "--apply", str(CORPUS / "lhost-exim-02.eml")], env=env)
    assert result.exit_code == 0
    assert stored(redis_url, prefix, "kijitora@example.jp") is None
