"""Choosing a store from the command line, and moving a list between stores intact."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sendguard import RedisStore, SQLiteStore, Suppression, open_store
from sendguard.cli import app


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def entries(count: int) -> list[Suppression]:
    """Entries that differ in every field a suppression keeps."""
    start = dt.datetime(2024, 3, 1, 12, 30, 15, 123456, tzinfo=dt.UTC)
    return [
        Suppression(
            f"user{i}@example.com",
            ("userunknown", "complaint", "manual")[i % 3],
            reply_code=550 if i % 3 == 0 else None,
            enhanced_code="5.1.1" if i % 3 == 0 else None,
            detail=f"550 5.1.1 <user{i}@example.com>: no such user ({i})",
            source=("smtp", "webhook:postmark", "cli")[i % 3],
            created_at=start + dt.timedelta(minutes=i),
        )
        for i in range(count)
    ]


def listed(url: str, prefix: str = "sendguard") -> dict[str, Suppression]:
    async def scan() -> dict[str, Suppression]:
        async with open_store(url, prefix=prefix) as store:
            return {entry.address: entry async for entry in store.scan()}

    return asyncio.run(scan())


def fill(path: Path, suppressions: list[Suppression]) -> None:
    async def add() -> None:
        async with SQLiteStore(path) as store:
            await store.add(suppressions)

    asyncio.run(add())


def test_the_default_store_is_a_sqlite_file_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = invoke("suppress", "add", "gone@example.com", "--reason", "userunknown")
    assert code == 0
    assert "sqlite:///sendguard.db did not exist" in err
    assert (tmp_path / "sendguard.db").is_file()
    code, out, err = invoke("suppress", "check", "gone@example.com")
    assert (code, err) == (0, "")
    assert "reason=userunknown" in out


def test_store_and_redis_url_together_is_a_clear_error(tmp_path: Path) -> None:
    code, _, err = invoke(
        "suppress", "list", "--store", f"sqlite:///{tmp_path}/a.db", "--redis-url", "redis://x"
    )
    assert code == 2
    assert "not both" in err


@pytest.mark.parametrize(
    "args", [("suppress", "list", "--store"), ("migrate", "--to", "memory://", "--from")]
)
def test_a_sqlite_url_without_a_file_is_a_clear_error(args: tuple[str, ...]) -> None:
    code, _, err = invoke(*args, "sqlite:///")
    assert code == 2
    assert "names no file" in err


def test_an_unknown_store_url_names_the_ones_that_work() -> None:
    code, _, err = invoke("suppress", "list", "--store", "postgres://localhost/db")
    assert code == 2
    assert "no store for 'postgres://localhost/db'" in err
    assert "sqlite:///" in err


def test_migrate_to_redis_and_back_keeps_every_field(
    tmp_path: Path, redis_store: RedisStore, redis_url: str, prefix: str
) -> None:
    original = entries(2500)  # more than one batch
    source = f"sqlite:///{tmp_path / 'a.db'}"
    fill(tmp_path / "a.db", original)

    code, out, err = invoke("migrate", "--from", source, "--to", redis_url, "--prefix", prefix)
    assert (code, err) == (0, "")
    assert out == "copied 2500 of 2500 suppressions, already listed 0\n"
    assert listed(redis_url, prefix) == {e.address: e for e in original}

    back = f"sqlite:///{tmp_path / 'b.db'}"
    code, out, _ = invoke("migrate", "--from", redis_url, "--to", back, "--prefix", prefix)
    assert (code, out) == (0, "copied 2500 of 2500 suppressions, already listed 0\n")
    assert listed(back, prefix) == {e.address: e for e in original}

    again = invoke("migrate", "--from", source, "--to", redis_url, "--prefix", prefix)
    assert again[:2] == (0, "copied 0 of 2500 suppressions, already listed 2500\n")


def test_migrate_keeps_what_the_target_lists_unless_told_to_replace(
    tmp_path: Path,
) -> None:
    old = Suppression("a@example.com", "complaint", source="webhook:sendgrid")
    new = Suppression("a@example.com", "userunknown", reply_code=550, source="smtp")
    source, target = f"sqlite:///{tmp_path / 's.db'}", f"sqlite:///{tmp_path / 't.db'}"
    fill(tmp_path / "s.db", [new, Suppression("b@example.com", "manual")])
    fill(tmp_path / "t.db", [old])

    assert invoke("migrate", "--from", source, "--to", target)[:2] == (
        0,
        "copied 1 of 2 suppressions, already listed 1\n",
    )
    assert (listed(target))["a@example.com"] == old
    assert invoke("migrate", "--from", source, "--to", target, "--replace")[0] == 0
    assert (listed(target))["a@example.com"] == new


def test_migrate_from_a_missing_file_fails_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    code, _, err = invoke(
        "migrate", "--from", f"sqlite:///{missing}", "--to", f"sqlite:///{tmp_path / 't.db'}"
    )
    assert code == 2
    assert "no such file" in err
    assert not missing.exists()
    assert not (tmp_path / "t.db").exists()


def test_migrate_into_itself_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    code, _, err = invoke("migrate", "--from", url, "--to", url)
    assert code == 2
    assert "same store" in err
