"""The ``sendguard`` command: manage the suppression list from a shell."""

from __future__ import annotations

import asyncio
import codecs
import csv
import datetime as dt
import importlib
import io
import mailbox
import math
import os
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TextIO, TypeVar, cast

import typer

from sendguard import config as sendguard_config
from sendguard._address import normalize_address
from sendguard._bounces.classify import DEFAULT_RULES, Rules, classify
from sendguard._bounces.dsn import BounceReport, parse_bounce
from sendguard._errors import (
    BounceParseError,
    ConfigurationError,
    InvalidAddressError,
    StoreError,
)
from sendguard._guard import Guard
from sendguard._guard.outbox import OutboxRun, drain
from sendguard._log import handled, to_stderr
from sendguard._models import Suppression
from sendguard._pacing.breaker import Breaker, SenderStatus
from sendguard._pacing.warmup import PRESETS, WarmupSchedule
from sendguard._store import Store
from sendguard._store.open import open_store, sqlite_path, store_url
from sendguard._store.outbox import Backlog, Held, Kept, Letter

__all__ = ["Defaults", "app", "main"]

T = TypeVar("T")

EXIT_NOT_FOUND = 1
"""``check``: the address is not suppressed; ``add``/``import``: some input was refused."""
EXIT_ERROR = 2

app = typer.Typer(
    name="sendguard",
    help="Keep a sender's reputation clean: the suppression list, bounce classification.",
    no_args_is_help=True,
    add_completion=False,
)


@dataclass(frozen=True)
class Defaults:
    """What the commands use when neither an option nor the environment says otherwise.

    An integration passes its own as the click context's ``obj`` (``app(args, obj=...)``, or
    ``context_settings["obj"]`` of a command it mounts), so ``manage.py sendguard`` and
    ``flask sendguard`` work on the store the app uses.
    """

    store: str = "sqlite:///sendguard.db"
    prefix: str = "sendguard"
    options: dict[str, Any] = field(default_factory=dict)
    """The app's Guard options (warmup, breaker, rules, bounce secret, ...): ``status``,
    ``warmup plan``, ``classify`` and ``ingest`` show and do what the app's guard does."""
    guard: Callable[[], Guard] | None = None
    """Builds the app's own guard (its adapter and store): what ``worker`` sends with."""

    @classmethod
    def from_settings(cls, settings: sendguard_config.Settings, store: str) -> Defaults:
        """The defaults of a configuration read by :mod:`sendguard.config` (its store URL)."""
        options = {k: v for k, v in settings.options.items() if k not in ("adapter", "store")}
        return cls(store, settings.prefix, options)


_STANDALONE = Defaults()
_defaults: ContextVar[Defaults] = ContextVar("sendguard_cli_defaults", default=_STANDALONE)


@app.callback()
def _setup(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            envvar="SENDGUARD_CONFIG",
            help="A sendguard.toml or pyproject.toml ([tool.sendguard]); default: the first "
            "found in this directory or above. Not used under manage.py and flask.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Keep stdout for the output: logs go to the app's logging if it has any, else stderr."""
    if not handled():
        ctx.call_on_close(to_stderr())
    if isinstance(ctx.obj, Defaults):  # an app's (manage.py, flask): its configuration
        _defaults.set(ctx.obj)
        return
    _defaults.set(_standalone(config))


def _standalone(path: Path | None) -> Defaults:
    """The plain CLI's defaults: the config file's, with SENDGUARD_* variables over them."""
    try:
        found = path if path is not None else sendguard_config.find_file()
        settings = sendguard_config.from_file(found) if found is not None else None
        env = sendguard_config.from_env()
    except ConfigurationError as exc:
        raise _fail(str(exc)) from exc
    if settings is None and not env.options:
        return _STANDALONE
    options = {**(settings.options if settings else {}), **env.options}
    store = _STANDALONE.store
    prefix = _STANDALONE.prefix
    if settings is not None:
        if isinstance(settings.store, Store):
            raise _fail(f"{settings.source}: STORE must be a URL")
        store = settings.store or store
        prefix = settings.prefix
    return Defaults(store, prefix, options)


def _options(**given: object) -> dict[str, Any]:
    """The configured Guard options, with those *given* (not None) over them."""
    return {**_defaults.get().options, **{k: v for k, v in given.items() if v is not None}}


suppress_app = typer.Typer(
    help="Add, remove, check, list, import and export suppressions.", no_args_is_help=True
)
app.add_typer(suppress_app, name="suppress")

StoreURL = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar="SENDGUARD_STORE",
        help="The store holding the list: sqlite:///path, redis://... "
        f"(default: {Defaults.store}, or the app's store under manage.py and flask)",
        show_default=False,
    ),
]
RedisURL = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        envvar="SENDGUARD_REDIS_URL",
        help="Redis holding the list (the same as --store redis://...).",
    ),
]
Prefix = Annotated[
    str | None,
    typer.Option(
        "--prefix",
        envvar="SENDGUARD_PREFIX",
        help="Key prefix of a Redis store (default: sendguard).",
        show_default=False,
    ),
]
CSV_FIELDS = (
    "address",
    "reason",
    "created_at",
    "reply_code",
    "enhanced_code",
    "detail",
    "source",
)
_BATCH = 1000


def _shown(name: str | Path) -> str:
    """A file name as printable text: bytes that are not UTF-8 as backslash escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _store_url(store: str | None, redis_url: str | None) -> str:
    if store and redis_url:
        raise _fail("give --store or --redis-url, not both")
    return store_url(store, redis_url, default=_defaults.get().store)


def _run(
    store: str | None,
    redis_url: str | None,
    prefix: str | None,
    work: Callable[[Store], Awaitable[T]],
) -> T:
    url = _store_url(store, redis_url)

    async def go() -> T:
        async with open_store(url, prefix=prefix or _defaults.get().prefix) as opened:
            return await work(opened)

    try:
        if (path := sqlite_path(url)) is not None and not path.exists():
            typer.echo(f"note: {url} did not exist; starting an empty store there", err=True)
        return asyncio.run(go())
    except (StoreError, ConfigurationError) as exc:
        raise _fail(str(exc)) from exc


@contextmanager
def _open_for_writing(path: str) -> Iterator[TextIO]:
    if path == "-":
        yield sys.stdout
        return
    try:
        with Path(path).open("w", newline="", encoding="utf-8") as handle:
            yield cast(TextIO, handle)
    except OSError as exc:
        raise _fail(f"cannot open {_shown(path)}: {exc.strerror}") from exc


def _read_bytes(path: str) -> bytes:
    if path == "-":
        stdin = getattr(sys.stdin, "buffer", None)
        return cast(bytes, stdin.read()) if stdin is not None else sys.stdin.read().encode()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise _fail(f"cannot open {_shown(path)}: {exc.strerror}") from exc


# Byte-order marks, UTF-32-LE before UTF-16-LE (whose mark it begins with).
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "UTF-32"),
    (codecs.BOM_UTF8, "utf-8", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16"),
)


def _decode(raw: bytes, name: str) -> str:
    """*raw* as text: UTF-8, or what its byte-order mark says (the mark dropped).

    Raises ValueError naming the line and byte offset of the first undecodable byte.
    """
    bom, codec, label = next((m for m in _BOMS if raw.startswith(m[0])), (b"", "utf-8", "UTF-8"))
    body = raw[len(bom) :]
    try:
        return body.decode(codec)
    except UnicodeDecodeError as exc:
        line = body[: exc.start].decode(codec).count("\n") + 1
        found = body[exc.start : exc.end].hex(" ")
        message = f"{name}:{line}: not {label}: byte {found} at offset {len(bom) + exc.start}"
        raise ValueError(message) from None


@contextmanager
def _any_field_size() -> Iterator[None]:
    # A detail is a server's reply, of any length; csv refuses fields over 128 KiB by default.
    previous = csv.field_size_limit(2**31 - 1)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _key(address: str) -> str:
    try:
        return normalize_address(address).key
    except InvalidAddressError as exc:
        raise _fail(f"{address!r}: {exc}") from exc


@suppress_app.command("add")
def add(
    addresses: Annotated[list[str], typer.Argument(help="Addresses to suppress.")],
    *,
    reason: Annotated[str, typer.Option(help="Why they are suppressed.")] = "manual",
    detail: Annotated[str, typer.Option(help="Free text kept with the entry.")] = "",
    store: StoreURL = None,
    redis_url: RedisURL = None,
    prefix: Prefix = None,
) -> None:
    """Suppress ADDRESSES (an existing entry is replaced)."""
    keys = [_key(a) for a in addresses]
    now = datetime.now(UTC)
    entries = [Suppression(k, reason, detail=detail, source="cli", created_at=now) for k in keys]
    _run(store, redis_url, prefix, lambda opened: opened.add(entries, replace=True))
    for key in keys:
        typer.echo(f"suppressed {key}")


@suppress_app.command("remove")
def remove(
    addresses: Annotated[list[str], typer.Argument(help="Addresses to take off the list.")],
    store: StoreURL = None,
    redis_url: RedisURL = None,
    prefix: Prefix = None,
) -> None:
    """Take ADDRESSES off the suppression list."""
    keys = [_key(a) for a in addresses]

    async def work(store: Store) -> list[bool]:
        return [await store.remove(k) for k in keys]

    for key, removed in zip(keys, _run(store, redis_url, prefix, work), strict=True):
        typer.echo(f"removed {key}" if removed else f"not suppressed {key}")


@suppress_app.command("check")
def check(
    address: Annotated[str, typer.Argument(help="The address to look up.")],
    store: StoreURL = None,
    redis_url: RedisURL = None,
    prefix: Prefix = None,
) -> None:
    """Say whether ADDRESS is suppressed and why; exit 0 if it is, 1 if not."""
    key = _key(address)
    entry = _run(store, redis_url, prefix, lambda opened: opened.get(key))
    if entry is None:
        typer.echo(f"not suppressed {key}")
        raise typer.Exit(EXIT_NOT_FOUND)
    codes = " ".join(str(c) for c in (entry.reply_code, entry.enhanced_code) if c)
    typer.echo(
        f"suppressed {key} reason={entry.reason} source={entry.source} "
        f"since={entry.created_at.isoformat()}" + (f" reply={codes}" if codes else "")
    )


async def _all(store: Store) -> list[Suppression]:
    return [entry async for entry in store.scan()]


@suppress_app.command("list")
def list_(
    store: StoreURL = None,
    redis_url: RedisURL = None,
    prefix: Prefix = None,
) -> None:
    """List every suppressed address with its reason and date, sorted by address."""
    entries = sorted(_run(store, redis_url, prefix, _all), key=lambda e: e.address)
    for entry in entries:
        typer.echo(f"{entry.address}\t{entry.reason}\t{entry.created_at.isoformat()}")
    typer.echo(f"{len(entries)} suppressed", err=True)


# Cells a spreadsheet would evaluate as a formula (OWASP "CSV injection"): those starting with
# one of these, full-width forms included (Excel and LibreOffice take those in CJK locales).
_FORMULA_START = frozenset("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")


def _formula_like(cell: str) -> bool:
    """Whether *cell*, past any leading quotes and spaces, starts a formula.

    Skipping leading quotes makes the escape unambiguous (a genuine leading quote before a
    trigger is escaped too); skipping spaces guards readers that trim a cell before looking.
    """
    for char in cell:
        if char in _FORMULA_START:
            return True
        if char != "'" and not char.isspace():
            return False
    return False


def _escape_cell(cell: str) -> str:
    """*cell* as a spreadsheet shows it as text: a formula-like cell gets a leading quote."""
    return f"'{cell}" if _formula_like(cell) else cell


def _unescape_cell(cell: str) -> str:
    """The inverse of :func:`_escape_cell`; any other cell, leading quote or not, is as written."""
    return cell[1:] if cell.startswith("'") and _formula_like(cell[1:]) else cell


def _write_csv(handle: TextIO, entries: list[Suppression]) -> None:
    # Every cell quoted and formula-like cells escaped, as OWASP advises.
    writer = csv.writer(handle, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(CSV_FIELDS)
    for entry in entries:
        cells = (
            entry.address,
            entry.reason,
            entry.created_at.isoformat(),
            "" if entry.reply_code is None else str(entry.reply_code),
            entry.enhanced_code or "",
            entry.detail,
            entry.source,
        )
        writer.writerow([_escape_cell(cell) for cell in cells])


@suppress_app.command("export")
def export(
    file: Annotated[str, typer.Argument(help="CSV file to write, - for standard output.")] = "-",
    store: StoreURL = None,
    redis_url: RedisURL = None,
    prefix: Prefix = None,
) -> None:
    """Write the list as CSV, every field of each entry (formula-like cells start with ')."""
    entries = sorted(_run(store, redis_url, prefix, _all), key=lambda e: e.address)
    with _open_for_writing(file) as handle:
        _write_csv(handle, entries)
    typer.echo(f"exported {len(entries)}", err=True)


def _parse_row(cells: list[str], now: datetime) -> Suppression:
    row = [_unescape_cell(cell) for cell in cells]
    if not row or not row[0].strip():
        raise ValueError("no address")
    if len(row) > len(CSV_FIELDS):
        raise ValueError(f"{len(row)} fields, expected at most {len(CSV_FIELDS)}")
    key = normalize_address(row[0]).key
    reason, created, reply, enhanced, detail, source = (row[1:] + [""] * len(CSV_FIELDS))[:6]
    created_at = now
    if created.strip():
        try:
            created_at = datetime.fromisoformat(created.strip())
        except ValueError:
            raise ValueError(f"created_at {created!r} is not an ISO 8601 date") from None
        if created_at.tzinfo is None:
            created_at = created_at.replace(tzinfo=UTC)
    reply = reply.strip()
    if reply and not (reply.isascii() and reply.isdigit()):
        raise ValueError(f"reply_code {reply!r} is not a number")
    return Suppression(
        key,
        reason.strip() or "import",
        reply_code=int(reply) if reply else None,
        enhanced_code=enhanced.strip() or None,
        detail=detail,  # verbatim: a server's reply text, spaces and line breaks included
        source=source.strip() or "import",
        created_at=created_at,
    )


@suppress_app.command("import")
def import_(
    file: Annotated[str, typer.Argument(help="CSV file to read, - for standard input.")],
    replace: Annotated[bool, typer.Option(help="Overwrite entries already listed.")] = False,
    store: StoreURL = None,
    redis_url: RedisURL = None,
    prefix: Prefix = None,
) -> None:
    """Read CSV rows address[,reason[,created_at[,reply_code,enhanced_code,detail,source]]].

    A header row is optional; what export writes reads back to the same entries.

    The file is UTF-8 (or UTF-16 or UTF-32 with a byte-order mark); one that is not is an
    error naming the line, and nothing is imported. Bad rows are reported with their line
    numbers and skipped; good rows are imported. Exits 1 if any row was bad.
    """
    name = "stdin" if file == "-" else _shown(file)
    try:
        # All of it decoded before any row is read: undecodable input imports nothing.
        text = _decode(_read_bytes(file), name)
    except ValueError as exc:
        raise _fail(f"{exc}; nothing was imported (save the file as UTF-8)") from exc
    now = datetime.now(UTC)
    entries: list[Suppression] = []
    bad = 0
    reader = csv.reader(io.StringIO(text, newline=""))
    next_line = 1
    with _any_field_size():
        for row in reader:
            # A quoted field may hold line breaks: a row starts after the previous one ended.
            line, next_line = next_line, reader.line_num + 1
            if line == 1 and row and row[0].strip().lower() == "address":
                continue
            if not any(field.strip() for field in row):
                continue
            try:
                entries.append(_parse_row(row, now))
            except (ValueError, InvalidAddressError) as exc:
                bad += 1
                typer.echo(f"{name}:{line}: {exc}", err=True)

    async def work(store: Store) -> int:
        written = 0
        for start in range(0, len(entries), _BATCH):
            written += await store.add(entries[start : start + _BATCH], replace=replace)
        return written

    written = _run(store, redis_url, prefix, work)
    skipped = len(entries) - written
    typer.echo(f"imported {written}, already listed {skipped}, bad rows {bad}")
    if bad:
        raise typer.Exit(EXIT_NOT_FOUND)


@app.command("migrate")
def migrate(
    source: Annotated[
        str, typer.Option("--from", help="The store to copy from: sqlite:///a.db, redis://...")
    ],
    target: Annotated[str, typer.Option("--to", help="The store to copy into.")],
    replace: Annotated[
        bool, typer.Option(help="Overwrite entries the target already lists.")
    ] = False,
    prefix: Prefix = None,
) -> None:
    """Copy every suppression, with its reason, codes and date, from one store to another.

    Entries the target already lists are kept unless --replace.

    Afterwards each address of the source is looked up on the target: one missing, exit 2.

    Safe to run again: a second run copies nothing new.
    """
    if source == target:
        raise _fail("--from and --to name the same store")

    async def work() -> tuple[int, int, int]:
        async with (
            open_store(source, prefix=prefix or _defaults.get().prefix) as src,
            open_store(target, prefix=prefix or _defaults.get().prefix) as dst,
        ):
            keys: set[str] = set()
            written = 0
            batch: list[Suppression] = []
            async for entry in src.scan():
                keys.add(entry.address)
                batch.append(entry)
                if len(batch) == _BATCH:
                    written += await dst.add(batch, replace=replace)
                    batch = []
            if batch:
                written += await dst.add(batch, replace=replace)
            total = len(keys)
            async for entry in dst.scan():
                keys.discard(entry.address)
            return total, written, len(keys)

    try:
        if (path := sqlite_path(source)) is not None and not path.exists():
            raise _fail(f"{source}: no such file")
        total, written, missing = asyncio.run(work())
    except (StoreError, ConfigurationError) as exc:
        raise _fail(str(exc)) from exc
    if missing:
        raise _fail(f"{missing} suppressions of {source} are not on {target}")
    typer.echo(f"copied {written} of {total} suppressions, already listed {total - written}")


# -- bounces ------------------------------------------------------------------------------------


@app.command("classify")
def classify_(
    text: Annotated[str, typer.Argument(help='An SMTP reply, e.g. "550 5.1.1 User unknown".')],
    stage: Annotated[
        str | None, typer.Option(help="Where it was given: connect, mail, rcpt, data.")
    ] = None,
) -> None:
    """Classify one SMTP reply: reason, action, and the rule that decided."""
    rules = _options().get("rules") or Rules()  # the app's rules first, as its guard reads
    found = classify(text, stage=stage.lower() if stage else None, rules=rules)
    rows = [
        ("reason", found.reason),
        ("action", str(found.action)),
        ("permanent", "yes" if found.permanent else "no"),
        ("reply code", str(found.reply_code or "-")),
        ("status", found.enhanced_code or "-"),
        ("why", found.rule),
    ]
    for name, value in rows:
        typer.echo(f"{name:<11} {value}")


@app.command("rules")
def rules_() -> None:
    """Print the classification table in the order it is checked (first match wins)."""
    for number, rule in enumerate(DEFAULT_RULES, 1):
        conditions = []
        if rule.pattern:
            conditions.append(f"text ~ /{rule.pattern}/")
        if rule.codes:
            conditions.append("status " + " ".join(rule.codes))
        if rule.reply_codes:
            conditions.append("reply " + " ".join(map(str, rule.reply_codes)))
        typer.echo(f"{number:>4}  {rule.reason:<16} {' and '.join(conditions)}")


def _messages(path: Path) -> Iterator[tuple[str, bytes]]:
    """(name, raw bytes) of each message in an .eml file, an mbox file or a maildir."""
    if path.is_dir():
        if (path / "cur").is_dir() or (path / "new").is_dir():
            box = mailbox.Maildir(path, factory=None, create=False)
            for key in sorted(box.keys()):
                yield f"{_shown(path.name)}/{key}", box.get_bytes(key)
            return
        for file in sorted(p for p in path.iterdir() if p.is_file()):
            yield _shown(file.name), file.read_bytes()
        return
    raw = path.read_bytes()
    try:
        text = _mail_bytes(raw, _shown(path.name)).removeprefix(codecs.BOM_UTF8)
    except ValueError:
        text = raw  # not an mbox then; _mail_bytes reports it when the message is read
    if not text.startswith(b"From "):
        yield _shown(path.name), raw
        return
    if text == raw:
        found = _mbox(path)
    else:  # mailbox reads only files, and would take a marked first line for no separator
        with tempfile.TemporaryDirectory() as scratch:
            (Path(scratch) / "mbox").write_bytes(text)
            found = _mbox(Path(scratch) / "mbox")
    for index, message in enumerate(found, 1):
        yield f"{_shown(path.name)}#{index}", message


def _mbox(path: Path) -> list[bytes]:
    box = mailbox.mbox(path, factory=None, create=False)
    try:
        return [box.get_bytes(key) for key in box.keys()]  # noqa: SIM118 (a Mailbox)
    finally:
        box.close()


def _mail_bytes(raw: bytes, name: str) -> bytes:
    """*raw* as the mail parser reads it: UTF-16 and UTF-32 (behind their mark) as UTF-8.

    No MTA writes those encodings, but an editor or a Windows tool may. A UTF-8 mark is left
    in place: parse_bounce reads past it. Raises ValueError naming the line of a byte that does
    not decode as the mark says.
    """
    bom, codec, _ = next((m for m in _BOMS if raw.startswith(m[0])), (b"", "", ""))
    if not bom or codec == "utf-8":
        return raw  # undecodable 8-bit bytes in it are the parser's to tolerate
    return _decode(raw, name).encode("utf-8")


@app.command("ingest")
def ingest(
    path: Annotated[Path, typer.Argument(help="An .eml file, an mbox file or a maildir.")],
    *,
    apply: Annotated[
        bool, typer.Option("--apply", help="Record suppressions in the store (default: only show).")
    ] = False,
    secret: Annotated[
        str | None,
        typer.Option(
            "--bounce-secret",
            envvar="SENDGUARD_BOUNCE_SECRET",
            help="Trust only bounces signed with this secret.",
        ),
    ] = None,
    store: StoreURL = None,
    redis_url: RedisURL = None,
    prefix: Prefix = None,
) -> None:
    """Read bounces and print one line per recipient, then a summary by reason."""
    if not path.exists():
        raise _fail(f"{_shown(path)} does not exist")
    try:
        messages = list(_messages(path))
    except (OSError, mailbox.Error) as exc:
        raise _fail(f"cannot read {_shown(path)}: {exc}") from exc

    async def work(store: Store) -> list[tuple[str, list[BounceReport] | str]]:
        guard = Guard(store=store, **_options(bounce_secret=secret))
        done: list[tuple[str, list[BounceReport] | str]] = []
        for name, raw in messages:
            try:
                done.append((name, await guard.ingest_bounce(_mail_bytes(raw, name))))
            except (BounceParseError, ValueError) as exc:
                done.append((name, str(exc)))
        return done

    if apply:
        results = _run(store, redis_url, prefix, work)
    else:
        results = []
        for name, raw in messages:
            try:
                rules = _options().get("rules") or Rules()
                results.append((name, parse_bounce(_mail_bytes(raw, name), rules=rules)))
            except (BounceParseError, ValueError) as exc:
                results.append((name, str(exc)))
    _print_reports(results, applied=apply)


def _print_reports(results: list[tuple[str, list[BounceReport] | str]], *, applied: bool) -> None:
    columns: tuple[str, ...] = ("message", "recipient", "action", "status", "reason", "hard")
    if applied:
        columns += ("trusted", "suppressed")
    rows: list[tuple[str, ...]] = []
    reasons: dict[str, int] = {}
    unreadable = 0
    for name, outcome in results:
        if isinstance(outcome, str):
            unreadable += 1
            typer.echo(f"{name}: {outcome}", err=True)
            continue
        if not outcome:
            rows.append((name, "-", "not a bounce", "", "", ""))
        for report in outcome:
            reasons[report.reason] = reasons.get(report.reason, 0) + 1
            row: tuple[str, ...] = (
                name,
                report.recipient or "-",
                report.action,
                report.status or "-",
                report.reason,
                "yes" if report.hard else "no",
            )
            if applied:
                row += ("yes" if report.trusted else "no", "yes" if report.suppressed else "no")
            rows.append(row)
    widths = [
        max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)
    ]
    typer.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in rows:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    summary = ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items()))
    typer.echo(f"\n{len(results)} messages, {sum(reasons.values())} reports: {summary or 'none'}")
    if unreadable:
        typer.echo(f"{unreadable} messages could not be read")


# -- warmup, sender status ----------------------------------------------------------------------

warmup_app = typer.Typer(help="Preview warmup ramps.", no_args_is_help=True)
app.add_typer(warmup_app, name="warmup")


@warmup_app.command("plan")
def warmup_plan(
    *,
    preset: Annotated[
        str | None, typer.Option(help=f"A ready-made ramp: {', '.join(sorted(PRESETS))}.")
    ] = None,
    shape: Annotated[
        str | None, typer.Option("--schedule", help="exponential (default) or linear.")
    ] = None,
    start: Annotated[int | None, typer.Option(help="Cap of day 1 (default 20).")] = None,
    target: Annotated[
        int | None, typer.Option(help="Cap of the last day (default 50,000).")
    ] = None,
    days: Annotated[
        int | None, typer.Option(help="Length of the ramp in days (default 42).")
    ] = None,
    started_on: Annotated[
        str | None, typer.Option(help="First day, YYYY-MM-DD (default: today, UTC).")
    ] = None,
    png: Annotated[Path | None, typer.Option(help="Also draw the curve into this PNG.")] = None,
) -> None:
    """Print a ramp day by day and draw its curve in the terminal.

    With no ramp option, the configured one (the app's under manage.py and flask, else the
    config file's), or the default exponential ramp when none is configured.
    """
    configured = _options().get("warmup")
    explicit = (preset, shape, start, target, days, started_on) != (None,) * 6
    try:
        first = dt.date.fromisoformat(started_on) if started_on else None
        schedule = (
            configured
            if isinstance(configured, WarmupSchedule) and not explicit
            else _schedule(
                preset,
                shape or "exponential",
                20 if start is None else start,
                50_000 if target is None else target,
                42 if days is None else days,
                first,
            )
        )
    except (ValueError, ConfigurationError) as exc:
        raise _fail(str(exc)) from exc
    table = schedule.table()
    total = 0
    typer.echo(f"{'day':>4}  {'date':<10}  {'cap':>9}  {'total':>11}")
    for day, cap in table:
        total += cap
        date = schedule.started_on + dt.timedelta(days=day - 1)
        typer.echo(f"{day:>4}  {date.isoformat()}  {cap:>9,}  {total:>11,}")
    typer.echo("")
    for line in _curve([cap for _, cap in table]):
        typer.echo(line)
    if png is not None:
        _draw_png(table, png)


def _schedule(  # noqa: PLR0917 (the plan command's options)
    preset: str | None, shape: str, start: int, target: int, days: int, first: dt.date | None
) -> WarmupSchedule:
    if preset is not None:
        return WarmupSchedule.preset(preset, started_on=first)
    day_one = first or datetime.now(UTC).date()
    if shape == "exponential":
        return WarmupSchedule.exponential(start=start, target=target, days=days, started_on=day_one)
    if shape == "linear":
        return WarmupSchedule.linear(start=start, target=target, days=days, started_on=day_one)
    raise ConfigurationError(f"--schedule must be exponential or linear, not {shape!r}")


def _curve(caps: list[int], height: int = 12) -> list[str]:
    """The caps as a column chart on a logarithmic scale, one column a day."""
    top, bottom = math.log10(max(caps)), math.log10(max(1, min(caps)))
    span = (top - bottom) or 1.0
    levels = [
        0 if cap < 1 else 1 + round((math.log10(cap) - bottom) / span * (height - 1))
        for cap in caps
    ]
    rows = []
    for row in range(height, 0, -1):
        value = 10 ** (bottom + (row - 1) / (height - 1) * span)
        bar = "".join("#" if level >= row else " " for level in levels)
        rows.append(f"{value:>9,.0f} |{bar}")
    rows.append(" " * 10 + "+" + "-" * len(caps))
    rows.append(" " * 11 + "day 1" + f"day {len(caps)}".rjust(max(0, len(caps) - 5)))
    return rows


def _draw_png(table: list[tuple[int, int]], path: Path) -> None:
    try:
        from matplotlib import pyplot  # type: ignore[import-not-found]  # noqa: PLC0415
    except ImportError as exc:
        raise _fail("--png needs matplotlib: pip install matplotlib") from exc
    figure, axes = pyplot.subplots(figsize=(8, 4))
    axes.plot([d for d, _ in table], [c for _, c in table], marker=".")
    axes.set_yscale("log")
    axes.set_xlabel("day of the ramp")
    axes.set_ylabel("daily cap")
    figure.savefig(path, dpi=100, bbox_inches="tight")
    typer.echo(f"wrote {path}")


@app.command("status")
def status(
    sender: Annotated[str, typer.Argument(help="The sender domain, e.g. shop.example.")],
    store: StoreURL = None,
    redis_url: RedisURL = None,
    prefix: Prefix = None,
) -> None:
    """Print a sender's pauses and its sends, bounces and complaints of the last 24 hours."""

    async def work(store: Store) -> tuple[SenderStatus, list[Backlog]]:
        guard = Guard(store=store, **{"breaker": Breaker(), **_options()})
        return await guard.status(sender), await guard.backlog()

    found, backlog = _run(store, redis_url, prefix, work)
    volume = found.volume
    typer.echo(f"sender      {found.sender_domain}")
    if found.day is not None:
        typer.echo(
            f"warmup      day {found.day}: {found.sent_today or 0:,} sent of "
            f"{found.cap_today or 0:,} today"
        )
    typer.echo(
        f"last 24 h   {volume.sends} sends, {volume.bounces} bounces ({volume.bounce_rate:.2%}), "
        f"{volume.complaints} complaints ({volume.complaint_rate:.3%})"
    )
    if found.paused_until is not None:
        typer.echo(f"paused      until {found.paused_until.isoformat()}: {found.why}")
    else:
        typer.echo("paused      no")
    for domain, until, reason in found.domain_pauses:
        typer.echo(f"  toward {domain}: until {until.isoformat()} ({reason})")
    mine = [b for b in backlog if b.sender_domain == found.sender_domain]
    if not mine:
        typer.echo("outbox      empty")
    for b in mine:
        typer.echo(f"outbox      {b.stream}: {_backlog_line(b)}")


@app.command("resume")
def resume(
    sender: Annotated[str, typer.Argument(help="The sender domain to resume.")],
    store: StoreURL = None,
    redis_url: RedisURL = None,
    prefix: Prefix = None,
) -> None:
    """Lift every pause of a sender (the breaker's and those toward single domains)."""

    async def work(store: Store) -> int:
        return await Guard(store=store).resume(sender)

    lifted = _run(store, redis_url, prefix, work)
    typer.echo(f"lifted {lifted} pause{'s' if lifted != 1 else ''} of {sender.lower()}")


# -- the outbox and its workers -------------------------------------------------------------

outbox_app = typer.Typer(
    help="See and steer the mail kept for later: list, show, retry, drop, purge.",
    no_args_is_help=True,
)
app.add_typer(outbox_app, name="outbox")


def _shown_text(text: str) -> str:
    """A remote server's text, printable: control characters as escapes, never raw."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def _backlog_line(b: Backlog) -> str:
    oldest = f", oldest kept {b.oldest.isoformat(timespec='seconds')}" if b.oldest else ""
    return (
        f"{b.waiting} waiting ({b.due} due), {b.claimed} being sent, "
        f"{b.uncertain} uncertain{oldest}"
    )


def _load_guard(spec: str) -> Callable[[], Guard]:
    """``module:callable`` naming a function that returns the app's :class:`Guard`."""
    module_name, colon, name = spec.partition(":")
    if not colon or not module_name or not name:
        raise _fail(f"--guard must be module:function, not {spec!r}")
    sys.path.insert(0, os.getcwd())
    try:
        target = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise _fail(f"--guard {spec}: {exc}") from exc
    if not callable(target):
        raise _fail(f"--guard {spec} is not callable")
    return cast("Callable[[], Guard]", target)


def _worker_guard(spec: str | None, store: Store) -> Guard:
    made: object
    if spec is not None:
        made = _load_guard(spec)()
    elif (factory := _defaults.get().guard) is not None:
        made = factory()
    else:
        made = Guard(store=store, **_options())
    if not isinstance(made, Guard):
        raise _fail(f"the worker needs a sendguard.Guard (not a SyncGuard), got {made!r}")
    return made


@app.command("worker")
def worker(  # noqa: PLR0917 (the worker's options)
    guard_spec: Annotated[
        str | None,
        typer.Option(
            "--guard",
            envvar="SENDGUARD_GUARD",
            help="module:function returning your Guard (its adapter sends the mail); "
            "default: the app's under manage.py and flask, else a Guard on --store with "
            "the configured options that sends by SMTP to localhost.",
            show_default=False,
        ),
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Send what is due now, then exit.")] = False,
    limit: Annotated[int, typer.Option(min=1, help="Recipients claimed per pass.")] = 100,
    concurrency: Annotated[int, typer.Option(min=1, help="Messages sent at once.")] = 8,
    poll: Annotated[float, typer.Option(min=0.01, help="Seconds between idle passes.")] = 5.0,
    lease: Annotated[
        float, typer.Option(min=1.0, help="Seconds a claim holds before it comes back.")
    ] = 300.0,
    summary_every: Annotated[
        float, typer.Option(min=0.1, help="Seconds between summary log lines.")
    ] = 60.0,
    store: StoreURL = None,
    redis_url: RedisURL = None,
    prefix: Prefix = None,
) -> None:
    """Send the mail kept in the outbox as the guard allows it; SIGTERM or SIGINT stop it.

    A stop lets the deliveries in flight finish and gives back what was claimed and not
    started; a worker killed outright leaves its claims to come back after --lease.
    """
    held = dt.timedelta(seconds=lease)

    async def work(opened: Store) -> OutboxRun:
        guard = _worker_guard(guard_spec, opened)
        try:
            if once:
                return await drain(guard, limit=limit, lease=held, concurrency=concurrency)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
            try:
                return await guard.run_outbox(
                    stop=stop,
                    poll=poll,
                    limit=limit,
                    lease=held,
                    concurrency=concurrency,
                    summary_every=summary_every,
                )
            finally:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(signum)
        finally:
            if guard.store is not opened:
                await guard.aclose()
            else:
                await guard._recorder.drain()
                await guard.adapter.aclose()

    total = _run(store, redis_url, prefix, work)
    typer.echo(", ".join(f"{k} {v}" for k, v in total.summary().items()))


def _entry_ids(opened: Store, ids: list[str]) -> Awaitable[list[str]]:
    """Entry ids of *ids*, where a letter id (no ``:``) stands for all its entries."""

    async def expand() -> list[str]:
        found: list[str] = []
        for given in ids:
            if ":" in given:
                found.append(given)
                continue
            after = given + ":"
            while page := await opened.kept(after=after, limit=500):
                mine = [e.id for e in page if e.letter == given]
                found += mine
                if len(mine) < len(page):
                    break
                after = page[-1].id
        return found

    return expand()


StreamOption = Annotated[
    str | None, typer.Option("--stream", help="Only this stream.", show_default=False)
]
StateOption = Annotated[
    Held | None,
    typer.Option("--state", help="Only entries in this state.", show_default=False),
]


@outbox_app.command("list")
def outbox_list(  # noqa: PLR0917 (the command's options)
    stream: StreamOption = None,
    state: StateOption = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 50,
    store: StoreURL = None,
    redis_url: RedisURL = None,
    prefix: Prefix = None,
) -> None:
    """The backlog per sender and stream, then the kept recipients (id, state, next try)."""

    async def work(opened: Store) -> tuple[list[Backlog], list[Kept]]:
        now = datetime.now(UTC)
        return await opened.backlog(now), await opened.kept(limit=limit, stream=stream, state=state)

    backlog, entries = _run(store, redis_url, prefix, work)
    for b in backlog:
        typer.echo(f"{_shown_text(b.sender_domain)} {_shown_text(b.stream)}: {_backlog_line(b)}")
    if not backlog:
        typer.echo("the outbox is empty")
    for e in entries:
        typer.echo(
            f"{_shown_text(e.id)}\t{e.stream}\t{e.state}\t{e.next_at.isoformat(timespec='seconds')}\t"
            f"{e.attempts}\t{_shown_text(e.detail[:120])}"
        )


@outbox_app.command("show")
def outbox_show(
    letter_id: Annotated[str, typer.Argument(help="A letter id, or an entry id (letter:address).")],
    raw: Annotated[bool, typer.Option("--raw", help="Print the message as kept.")] = False,
    store: StoreURL = None,
    redis_url: RedisURL = None,
    prefix: Prefix = None,
) -> None:
    """One kept message: its sender, Message-ID, stream, and each recipient's state."""
    name = letter_id.partition(":")[0]

    async def work(opened: Store) -> tuple[Letter | None, list[Kept]]:
        ids = await _entry_ids(opened, [name])
        entries = await opened.kept(after=name + ":", limit=len(ids) or 1)
        return await opened.letter(name), [e for e in entries if e.letter == name]

    letter, entries = _run(store, redis_url, prefix, work)
    if letter is None:
        raise _fail(f"no kept message {name}", EXIT_NOT_FOUND)
    if raw:
        sys.stdout.buffer.write(letter.data)
        return
    typer.echo(f"letter      {letter.id}")
    typer.echo(f"message-id  {_shown_text(letter.message_id)}")
    typer.echo(f"sender      {_shown_text(letter.sender)}")
    typer.echo(f"stream      {_shown_text(letter.stream)}")
    typer.echo(f"kept since  {letter.created_at.isoformat(timespec='seconds')}")
    typer.echo(f"size        {len(letter.data):,} bytes")
    for e in entries:
        typer.echo(
            f"  {_shown_text(e.recipient)}: {e.state}, next "
            f"{e.next_at.isoformat(timespec='seconds')}, {e.attempts} attempts; "
            f"{_shown_text(e.detail)}"
        )


@outbox_app.command("retry")
def outbox_retry(
    ids: Annotated[list[str], typer.Argument(help="Letter ids or entry ids.")],
    store: StoreURL = None,
    redis_url: RedisURL = None,
    prefix: Prefix = None,
) -> None:
    """Make kept recipients due now, uncertain ones included (a person decided to re-send)."""

    async def work(opened: Store) -> int:
        return await opened.retry(await _entry_ids(opened, ids), datetime.now(UTC))

    made = _run(store, redis_url, prefix, work)
    typer.echo(f"{made} due now")
    if not made:
        raise typer.Exit(EXIT_NOT_FOUND)


@outbox_app.command("drop")
def outbox_drop(
    ids: Annotated[list[str], typer.Argument(help="Letter ids or entry ids.")],
    store: StoreURL = None,
    redis_url: RedisURL = None,
    prefix: Prefix = None,
) -> None:
    """Delete kept recipients (never one being sent): they will not be sent."""

    async def work(opened: Store) -> int:
        return await opened.drop(await _entry_ids(opened, ids))

    dropped = _run(store, redis_url, prefix, work)
    typer.echo(f"dropped {dropped}")
    if not dropped:
        raise typer.Exit(EXIT_NOT_FOUND)


@outbox_app.command("purge")
def outbox_purge(  # noqa: PLR0917 (the command's options)
    stream: StreamOption = None,
    state: StateOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do it (without: only count).")] = False,
    store: StoreURL = None,
    redis_url: RedisURL = None,
    prefix: Prefix = None,
) -> None:
    """Delete every kept recipient (of --stream, in --state); without --yes only count them."""

    async def work(opened: Store) -> int:
        count, after = 0, ""
        while page := await opened.kept(after=after, limit=500, stream=stream, state=state):
            after = page[-1].id
            ids = [e.id for e in page if e.state is not Held.SENDING]
            count += await opened.drop(ids) if yes else len(ids)
        return count

    count = _run(store, redis_url, prefix, work)
    typer.echo(f"{'dropped' if yes else 'would drop'} {count}")


def main() -> None:
    """Run the command line interface."""
    app()
