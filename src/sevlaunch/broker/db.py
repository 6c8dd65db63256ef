"""Engines, migrations, and the attestation path's transactions and prepared statements.

SQLite (WAL, immediate transactions) or PostgreSQL. ``serve`` upgrades the database to the
newest schema at start; several instances starting at once on PostgreSQL take an advisory lock
so only one migrates.

On SQLite one writer at a time holds the database, and a thread that finds it taken sleeps in
SQLite's busy handler (1, 2, 5, 10 ... 100 ms) however soon it is free again: at 32 clients a
fifth of the broker's time went there. So the threads of one process queue for a lock of their
own before ``BEGIN IMMEDIATE`` (:func:`writing`, :func:`lean_transaction`) and wake as soon as
it is released; the busy handler is left to other processes. Reads (:func:`reading`,
:func:`lean_read`) take no write lock, and the pool keeps as many connections as the server
has threads, so none is closed and reopened (with its PRAGMAs) under load.
"""

from __future__ import annotations

import logging
import operator
import threading
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

log = logging.getLogger("sevlaunch.broker")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_PG_MIGRATION_LOCK = 0x5E71A0C4  # any constant shared by all broker instances
SQLITE_BUSY_MS = 10_000
#: uvicorn's worker threads (anyio's default of 40), the sweeper and a margin
SQLITE_POOL = 48
_READ = "sevlaunch_read"
_WRITERS: dict[str, threading.Lock] = {}
_WRITERS_LOCK = threading.Lock()


def create_engine(url: str) -> sa.Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and BEGIN IMMEDIATE."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_MS / 1000},
            pool_size=SQLITE_POOL,
            max_overflow=SQLITE_POOL,
        )
        _tune_sqlite(engine)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _writer(engine: sa.Engine) -> threading.Lock | None:
    """The lock this process's writers to ``engine``'s SQLite file queue on (None: not SQLite,
    whose rows lock on their own)."""
    if engine.dialect.name != "sqlite":
        return None
    key = str(engine.url.database)
    with _WRITERS_LOCK:
        return _WRITERS.setdefault(key, threading.Lock())


@contextmanager
def writing(engine: sa.Engine) -> Iterator[sa.Connection]:
    """``engine.begin()``, behind this process's other SQLite writers."""
    lock = _writer(engine)
    if lock is None:
        with engine.begin() as conn:
            yield conn
        return
    with lock, engine.begin() as conn:
        yield conn


@contextmanager
def reading(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection for reads: on SQLite its transaction is deferred (a snapshot, no write
    lock), so reads never queue behind writers."""
    with engine.connect() as conn:
        yield conn.execution_options(**{_READ: True})


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
        read = bool(conn.get_execution_options().get(_READ))
        _begin_sqlite(conn.connection.driver_connection, read)


def _begin_sqlite(driver: Any, read: bool = False) -> None:
    driver.execute("BEGIN" if read else "BEGIN IMMEDIATE")


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


class _Kept:
    """One SQLite connection per thread, kept out of the pool for the lean paths: checking a
    connection out of SQLAlchemy's pool and back costs more than the statements (and the
    pool's reset rolls back a transaction that is already over). Opened through the engine,
    so they get the same PRAGMAs; closed when the engine is disposed or one fails."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._local = threading.local()
        self._open: list[Any] = []
        self._lock = threading.Lock()
        event.listen(engine, "engine_disposed", lambda _engine: self.close_all())

    def get(self) -> Any:
        """This thread's sqlite3 connection (detached from the pool, which never sees it
        again)."""
        kept = getattr(self._local, "conn", None)
        if kept is None:
            pooled = self.engine.raw_connection()
            kept = pooled.driver_connection
            pooled.detach()
            self._local.conn = kept
            with self._lock:
                self._open.append(kept)
        return kept

    def drop(self, kept: Any) -> None:
        self._local.conn = None
        with self._lock:
            if kept in self._open:
                self._open.remove(kept)
        _close_quietly(kept)

    def close_all(self) -> None:
        with self._lock:
            kept, self._open = self._open, []
        for conn in kept:
            _close_quietly(conn)


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception as exc:  # closing a broken connection: nothing is left to lose
        log.debug("closing a kept SQLite connection: %s", exc)


_KEPT: dict[int, _Kept] = {}


def _kept(engine: sa.Engine) -> _Kept | None:
    """The kept connections of a file-backed SQLite engine (None otherwise: PostgreSQL's
    statements cost more than the pool, and a ``:memory:`` database is one per connection)."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return None
    with _WRITERS_LOCK:
        found = _KEPT.get(id(engine))
        if found is None or found.engine is not engine:
            found = _KEPT[id(engine)] = _Kept(engine)
            event.listen(engine, "engine_disposed", lambda e: _KEPT.pop(id(e), None))
        return found


@contextmanager
def _connection(engine: sa.Engine) -> Iterator[tuple[Any, Any, Callable[[], None]]]:
    """``(driver connection, what commits it, invalidate)``: this thread's kept SQLite one, or
    one from the pool."""
    kept = _kept(engine)
    if kept is not None:
        conn = kept.get()
        yield conn, conn, lambda: kept.drop(conn)
        return
    pooled = engine.raw_connection()
    try:
        yield pooled.driver_connection, pooled, pooled.invalidate
    finally:
        pooled.close()


@contextmanager
def lean_transaction(engine: sa.Engine) -> Iterator[Lean]:
    """A transaction without SQLAlchemy's Connection, whose begin and commit bookkeeping costs
    more than SQLite's own (BEGIN IMMEDIATE behind this process's other writers on SQLite);
    committed on leaving, rolled back on an exception."""
    lock = _writer(engine)
    with _connection(engine) as (driver, conn, invalidate):
        held = lock.acquire() if lock is not None else False
        try:
            if held:
                _begin_sqlite(driver)
            yield Lean(engine.dialect, driver)
            conn.commit()
        except BaseException:
            try:
                conn.rollback()
            except Exception:  # the connection is gone: it must not be used again
                invalidate()
            raise
        finally:
            if held and lock is not None:
                lock.release()


@contextmanager
def lean_read(engine: sa.Engine) -> Iterator[Lean]:
    """Like :func:`lean_transaction` for reads: no write lock on SQLite (each statement sees
    the latest commit), and nothing to commit."""
    with _connection(engine) as (driver, conn, invalidate):
        try:
            yield Lean(engine.dialect, driver)
        except BaseException:
            try:
                conn.rollback()
            except Exception:  # the connection is gone: it must not be used again
                invalidate()
            raise
        else:
            conn.rollback()  # ends PostgreSQL's implicit transaction; nothing was written


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
    if not positions:
        return lambda _params: ()
    if len(positions) == 1:
        name = positions[0]
        return lambda params: (params[name],)
    return operator.itemgetter(*positions)
