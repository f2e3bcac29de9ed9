"""`sendguard classify` and `sendguard ingest` (eml, mbox, maildir; --apply against Redis)."""

from __future__ import annotations

import asyncio
import codecs
import mailbox
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sendguard import DEFAULT_RULES, RedisStore, Suppression
from sendguard.cli import app

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


# -- whatever the bytes: a byte-order mark, Latin-1, UTF-16 ------------------------------------


def _latin1(raw: bytes) -> bytes:
    """A Latin-1 byte in a header and in the body, as old MTAs and Windows editors write."""
    return raw.replace(b"\nSubject:", b"\nX-Note: caf\xe9 \xff\nSubject:", 1) + b"\n\xe9t\xe9\n"


ENCODINGS: dict[str, Callable[[bytes], bytes]] = {
    "as-is": lambda raw: raw,
    "latin-1": _latin1,
    "utf8-bom": lambda raw: codecs.BOM_UTF8 + raw,
    "utf8-bom-latin-1": lambda raw: codecs.BOM_UTF8 + _latin1(raw),
    "utf16": lambda raw: raw.decode("latin-1").encode("utf-16"),
    "utf16be-bom": lambda raw: codecs.BOM_UTF16_BE + raw.decode("latin-1").encode("utf-16-be"),
    "utf32": lambda raw: raw.decode("latin-1").encode("utf-32"),
}


def _write(kind: str, encode: Callable[[bytes], bytes], tmp_path: Path) -> Path:
    samples = _samples()
    if kind == "directory":
        for number, raw in enumerate(samples):
            (tmp_path / f"{number}.eml").write_bytes(encode(raw))
        return tmp_path
    if kind == "maildir":
        box = mailbox.Maildir(tmp_path / "Maildir")
        for raw in samples:
            box.add(encode(raw))
        box.close()
        return tmp_path / "Maildir"
    # An mbox as one file in one encoding: the mark, if any, before the first From line.
    body = b"".join(
        b"From MAILER-DAEMON Thu Jan  1 00:00:00 2026\n" + raw + b"\n" for raw in samples
    )
    (tmp_path / "bounces.mbox").write_bytes(encode(body))
    return tmp_path / "bounces.mbox"


@pytest.mark.parametrize("kind", ["directory", "maildir", "mbox"])
@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_ingest_reads_bounces_whatever_their_bytes(
    tmp_path: Path, kind: str, encoding: str
) -> None:
    path = _write(kind, ENCODINGS[encoding], tmp_path)
    result = runner.invoke(app, ["ingest", str(path)])
    assert (result.exit_code, result.stderr) == (0, "")
    assert "2 messages, 3 reports: userunknown 3" in result.stdout


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_ingest_reads_one_eml_whatever_its_bytes(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "bounce.eml"
    path.write_bytes(ENCODINGS[encoding]((CORPUS / "lhost-aol-03.eml").read_bytes()))
    result = runner.invoke(app, ["ingest", str(path)])
    assert (result.exit_code, result.stderr) == (0, "")
    assert "1 messages, 2 reports: mailboxfull 1, userunknown 1" in result.stdout


def test_ingest_names_an_undecodable_message_and_reads_the_rest(tmp_path: Path) -> None:
    good = (CORPUS / "lhost-aol-03.eml").read_bytes()
    (tmp_path / "a.eml").write_bytes(good)
    # A UTF-16 mark, then a lone low surrogate on line 2 of the text.
    (tmp_path / "b.eml").write_bytes("From: x\n".encode("utf-16") + b"\x00\xdc")
    (tmp_path / "c.eml").write_bytes(codecs.BOM_UTF32_LE + b"\xff\xff\xff\xff")
    (tmp_path / "d.eml").write_bytes(codecs.BOM_UTF16_LE + b"x")  # half a character
    result = runner.invoke(app, ["ingest", str(tmp_path)])
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        "b.eml: b.eml:2: not UTF-16: byte 00 dc at offset 18",
        "c.eml: c.eml:1: not UTF-32: byte ff ff ff ff at offset 4",
        "d.eml: d.eml:1: not UTF-16: byte 78 at offset 2",
    ]
    assert "4 messages, 2 reports" in result.stdout
    assert "3 messages could not be read" in result.stdout


def test_ingest_apply_records_a_bounce_behind_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "bounce.eml"
    path.write_bytes(codecs.BOM_UTF8 + (CORPUS / "lhost-exim-02.eml").read_bytes())
    db = tmp_path / "s.db"
    result = runner.invoke(app, ["ingest", "--apply", str(path), "--store", f"sqlite:///{db}"])
    assert result.exit_code == 0, result.stderr
    check = runner.invoke(
        app, ["suppress", "check", "kijitora@example.jp", "--store", f"sqlite:///{db}"]
    )
    assert check.stdout.startswith("suppressed kijitora@example.jp reason=userunknown")


def test_ingest_shows_a_file_name_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / os.fsdecode(b"caf\xe9.eml")).write_bytes((CORPUS / "lhost-aol-03.eml").read_bytes())
    result = runner.invoke(app, ["ingest", str(tmp_path)])
    assert result.exit_code == 0
    assert "caf\\xe9.eml  sabineko@example.jp" in result.stdout
    assert "1 messages, 2 reports" in result.stdout
