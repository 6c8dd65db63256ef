"""Launch expiry: every broker instance sweeps, and several sharing a database never do the
same work twice nor lose a launch.

A launch that got no measurement before ``expires_at`` becomes ``expired`` and its sealed
TEK ‖ TIK are erased, by one conditional UPDATE per batch whose rows PostgreSQL picks ``FOR
UPDATE SKIP LOCKED`` (see :func:`sevlaunch.broker.store.expire_launches`); each expiry is
audited in the same transaction, once. A measurement that arrives after ``expires_at`` but
before the sweep is refused as ``expired`` the same way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import sqlalchemy as sa

from sevlaunch.broker import db, store
from sevlaunch.broker.schema import PENDING, launches

if TYPE_CHECKING:
    from sevlaunch.broker.launches import Settings

log = logging.getLogger("sevlaunch.broker")
_DUE = sa.select(launches.c.id).where(PENDING, launches.c.expires_at <= sa.bindparam("now"))


class Expiry:
    """The sweep of :class:`~sevlaunch.broker.service.Broker` (which sets these)."""

    engine: sa.Engine
    clock: Callable[[], float]
    _audit: Callable[..., None]
    settings: Settings

    def expire(self) -> int:
        """Expire every launch past its TTL (in batches); how many this call expired."""
        total = 0
        while self._anything_due():
            batch = self.settings.sweep_batch
            with db.writing(self.engine) as conn:
                expired = store.expire_launches(conn, self.clock(), self.settings.instance, batch)
                for row in expired:
                    self._audit(
                        conn,
                        store.SWEEPER,
                        "launch.expire",
                        "expired",
                        reason="expired",
                        workload=row.workload,
                        launch=row.id,
                        launcher=row.launcher,
                    )
            total += len(expired)
            if len(expired) < batch:
                break
        return total

    def _anything_due(self) -> bool:
        """A read first, so an idle sweep never takes SQLite's write lock."""
        with db.reading(self.engine) as conn:
            return conn.execute(_DUE.limit(1), {"now": self.clock()}).first() is not None


class Sweeper:
    """A thread that calls ``expire`` every ``interval`` seconds until stopped; a failed sweep
    is logged and the next one runs as planned (the database may be back by then)."""

    def __init__(self, expire: Callable[[], int], interval: float) -> None:
        self._expire = expire
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sevlaunch-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def sweep(self) -> int:
        try:
            expired = self._expire()
        except Exception:
            log.exception("launch sweep failed; the next one runs in %.0f s", self.interval)
            return 0
        if expired:
            log.info("expired %d launch(es)", expired)
        return expired

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sweep()
