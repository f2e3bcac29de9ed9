"""`sendguard suppress export` and `import` as a pair: no cell a spreadsheet would evaluate,
and every exported file reads back to the entries it was written from."""

from __future__ import annotations

import asyncio
import csv
import io
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from sendguard import InvalidAddressError, SQLiteStore, Suppression
from sendguard._address import normalize_address
from sendguard._cli import app

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
