"""What a broker process keeps between requests, and when it may still use it.

Trust roots and workloads are never changed in place, only added and removed, and every add or
remove replaces the catalog generation token in the same transaction (:mod:`store`). A
:class:`View` holds what this process read or derived under one generation: workload rows, the
parsed trust roots, platforms whose chains it verified. A view is relied on only by a
transaction that reads the same generation from the database: on SQLite that transaction holds
the write lock, so nothing can change under it; on PostgreSQL the token is read in the same
statement as the launch it finishes, or just before the launch it starts is inserted, the
instant at which a broker without copies would have read the rows themselves. The generation
is always read before the rows cached under it, so a copy is never older than its token.

Secrets and launch state are never kept: they are read in the transaction that uses them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import sqlalchemy as sa

from sevlaunch.broker import attest, store
from sevlaunch.crypto.chain import VerifiedPlatform

PLATFORM_MEMO_SIZE = 1024

#: A platform is remembered under the exact bytes it was verified from: PDH, chain, CEK.
PlatformKey = tuple[bytes, bytes, bytes | None]


@dataclass(frozen=True)
class Remembered:
    """A platform this process's chain verifier proved to ``platform.ca.root`` at
    ``verified_at``: the verifier's own object, never one rebuilt from a record."""

    platform: VerifiedPlatform
    verified_at: float


class View:
    """Copies valid while the database's catalog generation is ``generation``."""

    def __init__(self, generation: str) -> None:
        self.generation = generation
        self.workloads: dict[str, store.WorkloadRow] = {}
        self.trust: attest.Trust | None = None
        self.platforms: dict[PlatformKey, Remembered] = {}


class Catalog:
    """The current :class:`View`; ``conn=None`` asks for copies only (no database access)."""

    def __init__(self) -> None:
        self._view = View("")  # no generation is empty: never current
        self._lock = threading.Lock()

    @property
    def view(self) -> View:
        """The newest view, possibly stale: check its generation before relying on it."""
        return self._view

    def at(self, generation: str) -> View:
        """The view for ``generation``, just read from the database; a new one if it moved."""
        view = self._view
        if view.generation != generation:
            view = View(generation)
            self._view = view
        return view

    def refresh(self, conn: sa.Connection) -> View:
        return self.at(store.generation(conn))

    def workload(
        self, view: View, conn: sa.Connection | None, name: str
    ) -> store.WorkloadRow | None:
        """A workload row (NotFoundError if ``conn`` finds none), or None: not copied yet."""
        found = view.workloads.get(name)
        if found is None and conn is not None:
            found = store.get_workload(conn, name, with_secrets=False)
            view.workloads[name] = found
        return found

    def trust(self, view: View, conn: sa.Connection | None) -> attest.Trust | None:
        """The parsed trust roots, or None: not read yet."""
        if view.trust is None and conn is not None:
            roots = [attest.Root(r.name, r.ark, r.ask) for r in store.list_roots(conn)]
            view.trust = attest.prepare_trust(roots)
        return view.trust

    def platform(self, view: View, key: PlatformKey, not_before: float) -> Remembered | None:
        """A platform this process verified since ``not_before`` under this view's roots."""
        known = view.platforms.get(key)
        return known if known is not None and known.verified_at >= not_before else None

    def remember(self, view: View, key: PlatformKey, known: Remembered) -> None:
        with self._lock:
            if len(view.platforms) >= PLATFORM_MEMO_SIZE:
                view.platforms.pop(next(iter(view.platforms)))
            view.platforms[key] = known
