"""`sendguard suppress export` and `import` as a pair: no cell a spreadsheet would evaluate,
and every exported file reads back to the entries it was written from."""

from __future__ import annotations

import asyncio
import codecs
import csv
import io
import os
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from sendguard import InvalidAddressError, SQLiteStore, Suppression
from sendguard._address import normalize_address
from sendguard.cli import app

# What OWASP lists (=, +, -, @, tab, CR), LF, and the full-width forms some spreadsheets take.
TRIGGERS = "=+-@\t\r\n\uff1d\uff0b\uff0d\uff20"
runner = CliRunner()


def spreadsheet_would_evaluate(cell: str) -> bool:
    """The oracle: a cell that starts with a trigger, also after leading spaces."""
    return bool(cell) and (cell[0] in TRIGGERS or cell.lstrip()[:1] in set(TRIGGERS))


# Local parts email-validator accepts that start with quotes and triggers; the full-width
# forms are legal under SMTPUTF8.
_LOCAL_START = st.sampled_from(
    ["=", "+", "-", "'", "''", "'=", "''+", "'-", "\uff1d", "\uff0b", "\uff0d", "\uff20", "'\uff1d"]
)
_LOCAL_BODY = st.text(
    alphabet="abcXYZ019!#$%&'*+/=?^_`{|}~-\uff1d\uff0b\uff0d\uff20é", min_size=1, max_size=12
)


@st.composite
def addresses(draw: st.DrawFn) -> str:
    local = draw(st.one_of(_LOCAL_START, st.just(""))) + draw(_LOCAL_BODY)
    domain = draw(st.sampled_from(["example.com", "b.example", "xn--bcher-kva.example"]))
    try:
        return normalize_address(f"{local}@{domain}").key
    except InvalidAddressError:
        assume(False)
        raise


def _cell_text(first: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda a, b: a + b, first, st.text(max_size=30))


_HOSTILE_START = st.one_of(
    st.sampled_from(list(TRIGGERS)),
    st.sampled_from(["'", "''", "' ", " =", "\u3000=", "'\t", "=cmd|' /C calc'!A0", "@SUM(1+1)*"]),
    st.just(""),
)
reasons = _cell_text(_HOSTILE_START).map(str.strip).filter(bool)
instants = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
)
entries = st.lists(
    st.builds(
        Suppression,
        address=addresses(),
        reason=reasons,
        reply_code=st.none() | st.integers(200, 599),
        enhanced_code=st.none() | st.sampled_from(["5.1.1", "4.2.2", "5.7.26"]) | reasons,
        # A remote server's words, kept verbatim: leading spaces, CR, LF, NUL, quotes and all.
        detail=_cell_text(_HOSTILE_START),
        source=reasons,
        created_at=instants,
    ),
    max_size=6,
    unique_by=lambda e: e.address,
)


def _seed(path: Path, suppressions: list[Suppression]) -> None:
    async def go() -> None:
        store = SQLiteStore(path)
        try:
            await store.add(suppressions)
        finally:
            await store.aclose()

    asyncio.run(go())


def _listed(path: Path) -> list[Suppression]:
    async def go() -> list[Suppression]:
        store = SQLiteStore(path)
        try:
            return sorted([e async for e in store.scan()], key=lambda e: e.address)
        finally:
            await store.aclose()

    return asyncio.run(go())


def _suppress(db: Path, *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, ["suppress", *args, "--store", f"sqlite:///{db}"], input=stdin)
    return result.exit_code, result.stdout, result.stderr


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries)
def test_export_neutralises_every_cell_and_import_reads_back_the_same_entries(
    suppressions: list[Suppression],
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        before, after, exported = (Path(scratch) / n for n in ("a.db", "b.db", "list.csv"))
        _seed(before, suppressions)
        assert _suppress(before, "export", str(exported))[0] == 0
        raw = exported.read_bytes()
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
        assert len(rows) == 1 + len(suppressions)
        for cell in (cell for row in rows for cell in row):
            assert not spreadsheet_would_evaluate(cell), cell
        code, out, err = _suppress(after, "import", str(exported))
        assert code == 0, err
        assert out == f"imported {len(suppressions)}, already listed 0, bad rows 0\n"
        assert _listed(after) == sorted(suppressions, key=lambda e: e.address)


def test_a_leading_quote_is_kept_unless_it_escapes_a_formula(tmp_path: Path) -> None:
    """A hand-written file: a quote is dropped only before a trigger (or before more quotes
    and a trigger), so 'o'brien-style addresses keep theirs."""
    db = tmp_path / "s.db"
    source = tmp_path / "hand.csv"
    source.write_text(
        "'plain@example.com,manual\n"
        "'=1+2@example.com,manual\n"
        "''=x@example.com,manual\n"
        "''y@example.com,'note\n"
        "a@example.com,'-1\n"
        "b@example.com,' =1\n",
        encoding="utf-8",
    )
    assert _suppress(db, "import", str(source))[:2] == (
        0,
        "imported 6, already listed 0, bad rows 0\n",
    )
    assert [(e.address, e.reason) for e in _listed(db)] == [
        ("''y@example.com", "'note"),
        ("'=x@example.com", "manual"),
        ("'plain@example.com", "manual"),
        ("=1+2@example.com", "manual"),
        ("a@example.com", "-1"),
        ("b@example.com", "=1"),
    ]


# -- what import accepts as text ----------------------------------------------------------------

CSV_TEXT = "address,reason\r\njosé@example.com,manual\r\n=x@example.com,manual\r\n"
IMPORTED = [("=x@example.com", "manual"), ("josé@example.com", "manual")]


def _import(tmp_path: Path, raw: bytes) -> tuple[int, str, str, list[tuple[str, str]]]:
    db, source = tmp_path / "s.db", tmp_path / "in.csv"
    source.write_bytes(raw)
    code, out, err = _suppress(db, "import", str(source))
    return code, out, err, [(e.address, e.reason) for e in _listed(db)]


@pytest.mark.parametrize(
    "raw",
    [
        codecs.BOM_UTF8 + CSV_TEXT.encode(),
        codecs.BOM_UTF8 + CSV_TEXT.split("\r\n", 1)[1].encode(),  # no header: BOM, then a row
        CSV_TEXT.encode("utf-16"),  # with the platform's BOM
        codecs.BOM_UTF16_LE + CSV_TEXT.encode("utf-16-le"),
        codecs.BOM_UTF16_BE + CSV_TEXT.encode("utf-16-be"),
        codecs.BOM_UTF32_LE + CSV_TEXT.encode("utf-32-le"),
        codecs.BOM_UTF32_BE + CSV_TEXT.encode("utf-32-be"),
        CSV_TEXT.replace("\r\n", "\n").encode(),
        CSV_TEXT.replace("\r\n", "\r").encode(),  # old Mac line ends
    ],
    ids=[
        "utf8-bom",
        "utf8-bom-no-header",
        "utf16",
        "utf16le",
        "utf16be",
        "utf32le",
        "utf32be",
        "lf",
        "cr",
    ],
)
def test_import_accepts_byte_order_marks_and_any_line_end(tmp_path: Path, raw: bytes) -> None:
    code, out, err, listed = _import(tmp_path, raw)
    assert (code, out, err) == (0, "imported 2, already listed 0, bad rows 0\n", err)
    assert "bad" not in err
    assert listed == IMPORTED


@pytest.mark.parametrize(
    ("raw", "line", "offset"),
    [
        (b"address\ncaf\xe9@example.com,manual\n", 2, 11),  # Latin-1 in an address
        (b"a@example.com,r\xe9sili\xe9\nb@example.com\n", 1, 15),  # and in a reason
        (b"\xe9mail,reason\n", 1, 0),  # in the header
        (b"a@example.com\r\nb@example.com\r\n\x80@example.com\r\n", 3, 30),  # continuation byte
        (b"a@example.com\n\xc0\xafb@example.com\n", 2, 14),  # overlong /
        (b"a@example.com\n\xed\xa0\x80@example.com\n", 2, 14),  # an encoded surrogate
        (b"a@example.com\nb@example.com\xc3", 2, 27),  # cut in the middle of a character
        (codecs.BOM_UTF8 + b"a@example.com\n\xff\n", 2, 17),  # a BOM does not excuse the rest
        (codecs.BOM_UTF16_LE + "a@example.com\n".encode("utf-16-le") + b"\x00\xdc", 2, 30),
        (codecs.BOM_UTF16_LE + "a@example.com\nb".encode("utf-16-le") + b"x", 2, 32),  # odd
    ],
)
def test_undecodable_input_is_an_error_naming_the_line_and_imports_nothing(
    tmp_path: Path, raw: bytes, line: int, offset: int
) -> None:
    code, out, err, listed = _import(tmp_path, raw)
    assert code == 2
    assert out == ""
    assert err.startswith(f"error: {tmp_path / 'in.csv'}:{line}: not UTF-")
    assert f"at offset {offset};" in err
    assert "nothing was imported" in err
    assert "Traceback" not in err
    assert listed == []


def test_undecodable_standard_input_is_named_stdin(tmp_path: Path) -> None:
    code, _, err = _suppress(tmp_path / "s.db", "import", "-", stdin=b"ok@example.com\n\xe9\n")
    assert code == 2
    assert err.startswith("error: stdin:2: not UTF-8: byte e9 at offset 15;")


def test_standard_input_is_read_as_bytes_too(tmp_path: Path) -> None:
    code, out, _ = _suppress(
        tmp_path / "s.db", "import", "-", stdin=codecs.BOM_UTF8 + CSV_TEXT.encode()
    )
    assert (code, out) == (0, "imported 2, already listed 0, bad rows 0\n")


@pytest.mark.parametrize(
    "raw", [b"", codecs.BOM_UTF8, b"address,reason,created_at\n", b"\r\n\r\n", b"address"]
)
def test_an_empty_file_or_a_header_alone_imports_nothing_and_succeeds(
    tmp_path: Path, raw: bytes
) -> None:
    code, out, err, listed = _import(tmp_path, raw)
    assert (code, out, listed) == (0, "imported 0, already listed 0, bad rows 0\n", [])
    assert "Traceback" not in err


def test_nul_bytes_make_a_bad_row_not_a_crash(tmp_path: Path) -> None:
    code, out, err, listed = _import(
        tmp_path, b"a\x00@example.com,manual\nb@example.com,man\x00ual\n\x00\n"
    )
    assert code == 1
    assert out == "imported 1, already listed 0, bad rows 2\n"
    assert f"{tmp_path / 'in.csv'}:1:" in err
    assert f"{tmp_path / 'in.csv'}:3:" in err
    assert listed == [("b@example.com", "man\x00ual")]


def test_bad_rows_are_named_by_their_physical_line(tmp_path: Path) -> None:
    """A quoted field with line breaks spans lines: later rows keep their own numbers."""
    raw = (
        b'a@example.com,manual,,550,5.1.1,"line one\r\nline two\nline three",smtp\r\n'
        b"not an address\r\n"
        b'"b@example.com","manual","","","","x\ny",""\n'
        b"also bad\n"
    )
    code, _, err, listed = _import(tmp_path, raw)
    assert code == 1
    source = tmp_path / "in.csv"
    named = [line.split(": ")[0] for line in err.splitlines() if line.startswith(str(source))]
    assert named == [f"{source}:4", f"{source}:7"]
    assert listed == [("a@example.com", "manual"), ("b@example.com", "manual")]


def test_extremely_long_lines(tmp_path: Path) -> None:
    """A megabyte-long reply text reads back; a megabyte-long junk line is one bad row."""
    detail = "=" + "x" * 1_000_000 + "\r\n" + "y" * 200_000
    before, after, exported = tmp_path / "a.db", tmp_path / "b.db", tmp_path / "out.csv"
    _seed(before, [Suppression("a@example.com", "userunknown", detail=detail)])
    assert _suppress(before, "export", str(exported))[0] == 0
    assert _suppress(after, "import", str(exported))[0] == 0
    assert _listed(after) == _listed(before)

    code, out, err, listed = _import(tmp_path, b"z" * 2_000_000 + b"\nok@example.com\n")
    assert (code, out) == (1, "imported 1, already listed 0, bad rows 1\n")
    assert err.startswith(f"{tmp_path / 'in.csv'}:1: ")
    assert len(err) < 1000, "the message does not repeat the line"
    assert listed == [("ok@example.com", "import")]


def test_a_file_name_that_is_not_utf8_is_shown_escaped(tmp_path: Path) -> None:
    source = tmp_path / os.fsdecode(b"caf\xe9.csv")
    source.write_bytes(b"not an address\nok@example.com\n\xe9\n")
    code, _, err = _suppress(tmp_path / "s.db", "import", str(source))
    assert code == 2
    assert err.startswith(f"error: {tmp_path}/caf\\xe9.csv:3: not UTF-8: byte e9 at offset 30;")
    source.write_bytes(b"not an address\nok@example.com\n")
    code, _, err = _suppress(tmp_path / "s.db", "import", str(source))
    assert code == 1
    assert f"{tmp_path}/caf\\xe9.csv:1: invalid e-mail address" in err
