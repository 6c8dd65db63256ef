"""Engines, migrations, and the attestation path's transactions and prepared statements.

SQLite (WAL, immediate transactions) or PostgreSQL. ``serve`` upgrades the database to the
newest schema at start; several instances starting at once on PostgreSQL take an advisory lock
so only one migrates.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

from sevlaunch.errors import BrokerError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_PG_MIGRATION_LOCK = 0x5E71A0C4  # any constant shared by all broker instances
SQLITE_BUSY_MS = 10_000


def create_engine(url: str) -> sa.Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and BEGIN IMMEDIATE."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_MS / 1000}
        )
        _tune_sqlite(engine)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _tune_sqlite(engine: sa.Engine) -> None:
    """Writers take the lock up front: a deferred transaction that reads then writes fails
    with SQLITE_BUSY instead of waiting when another writer got in between."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let SQLAlchemy's BEGIN below be the only one
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # On the driver: exec_driver_sql would cost twice what the BEGIN itself does.
        _begin_sqlite(conn.connection.driver_connection)


def _begin_sqlite(driver: Any) -> None:
    driver.execute("BEGIN IMMEDIATE")


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (idempotent)."""
    config = alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def current_revision(engine: sa.Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


# -- the attestation path ----------------------------------------------------------------------


@dataclass(frozen=True)
class Lean:
    """A transaction on a pooled driver connection, for :class:`Prepared` statements only."""

    dialect: sa.Dialect
    driver: Any


Tx: TypeAlias = sa.Connection | Lean


@contextmanager
def lean_transaction(engine: sa.Engine) -> Iterator[Lean]:
    """A transaction without SQLAlchemy's Connection, whose begin and commit bookkeeping costs
    more than SQLite's own (same pool, same pre-ping, same BEGIN IMMEDIATE on SQLite);
    committed on leaving, rolled back on an exception."""
    pooled = engine.raw_connection()
    try:
        driver = pooled.driver_connection
        if engine.dialect.name == "sqlite":
            _begin_sqlite(driver)
        yield Lean(engine.dialect, driver)
        pooled.commit()
    except BaseException:
        try:
            pooled.rollback()
        except Exception:  # the connection is gone: the pool must not hand it out again
            pooled.invalidate()
        raise
    finally:
        pooled.close()


@contextmanager
def lean_read(engine: sa.Engine) -> Iterator[Lean]:
    """Like :func:`lean_transaction` for reads: no write lock on SQLite (each statement sees
    the latest commit), and nothing to commit."""
    pooled = engine.raw_connection()
    try:
        yield Lean(engine.dialect, pooled.driver_connection)
    except BaseException:
        try:
            pooled.rollback()
        except Exception:  # the connection is gone: the pool must not hand it out again
            pooled.invalidate()
        raise
    else:
        pooled.rollback()  # ends PostgreSQL's implicit transaction; nothing was written
    finally:
        pooled.close()


# Types both drivers (sqlite3, psycopg) take and give back as the Python values the broker uses
# (str, int, float, bytes, None), with no SQLAlchemy processing either way.
_PLAIN = (sa.String, sa.Integer, sa.LargeBinary, sa.Float)


@dataclass(frozen=True)
class _Compiled:
    sql: str
    args: Callable[[Mapping[str, Any]], Any]


class Prepared:
    """A statement on the attestation path: compiled by SQLAlchemy once per dialect, then run
    on the driver's cursor inside the caller's transaction (SQLAlchemy's or a :class:`Lean`).

    SQLAlchemy's per-execution bookkeeping (execution context, events, result objects) costs
    several times what SQLite takes to run these statements; SQLAlchemy still writes the SQL
    for each dialect. So that skipping its type processing changes nothing, every value must be
    an explicit ``bindparam`` and every bound value and selected column of a plain type (no
    JSON, no Decimal, no Boolean); this is checked when the statement is built.
    """

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        for column in getattr(statement, "selected_columns", ()):
            _check_plain(column.type, f"column {column}")
        self._by_dialect: dict[tuple[type[Any], str], _Compiled] = {}

    def _compiled(self, dialect: sa.Dialect) -> _Compiled:
        key = (type(dialect), dialect.paramstyle)
        found = self._by_dialect.get(key)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)
            if not isinstance(compiled, SQLCompiler):
                raise BrokerError("internal", f"{self.statement} does not compile to SQL")
            for name, bind in compiled.binds.items():
                if not bind.required:
                    raise TypeError(f"{self.statement}: bind {name} with an explicit bindparam")
                _check_plain(bind.type, f"parameter {name}")
            found = _Compiled(compiled.string, _arguments(compiled.positiontup))
            self._by_dialect[key] = found
        return found

    def _run(self, tx: Tx, params: Mapping[str, Any]) -> Any:
        if isinstance(tx, Lean):
            dialect, driver = tx.dialect, tx.driver
        else:
            dialect, driver = tx.dialect, tx.connection.driver_connection
        compiled = self._compiled(dialect)
        args = compiled.args(params)
        cursor = driver.cursor()
        try:
            cursor.execute(compiled.sql, args)
        except Exception as exc:
            cursor.close()
            dbapi_error = dialect.loaded_dbapi.Error
            if not isinstance(exc, dbapi_error):
                raise
            raise sa.exc.DBAPIError.instance(
                compiled.sql, args, exc, dbapi_error, dialect=dialect
            ) from exc
        return cursor

    def rows(self, tx: Tx, params: Mapping[str, Any]) -> Sequence[tuple[Any, ...]]:
        cursor = self._run(tx, params)
        try:
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def rowcount(self, tx: Tx, params: Mapping[str, Any]) -> int:
        cursor = self._run(tx, params)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()


def _check_plain(kind: Any, what: str) -> None:
    if not isinstance(kind, _PLAIN) or (isinstance(kind, sa.Float) and kind.asdecimal):
        raise TypeError(f"{what} is of type {kind}, which needs SQLAlchemy's type processing")


def _arguments(positions: Sequence[str] | None) -> Callable[[Mapping[str, Any]], Any]:
    """How the driver takes the parameters: a tuple in order (qmark), or the mapping itself."""
    if positions is None:
        return dict
    if len(positions) == 1:
        name = positions[0]
        return lambda params: (params[name],)
    return operator.itemgetter(*positions)
