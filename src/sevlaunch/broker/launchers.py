"""Named launchers: each with its own token, its own launches and its own limits.

A token is 32 random bytes (base64url), shown once when the launcher is added; the database
keeps its SHA-256 (a fast hash is enough for a token of 256 random bits: there is nothing to
guess). A launcher sees and finishes only its own launches, and another's launch id answers as
an unknown one would (404), so ids are no oracle. Limits: at most ``max_open`` launches
waiting for a measurement, and new launches at ``rate`` a minute with bursts of ``burst`` (a
token bucket kept on the launcher's row, taken under its row lock in the transaction that
inserts the launch, so brokers sharing a database count together).

``default`` is the launcher of ``serve --launcher-token-file``: the file's token is written
to it at start, so the single shared token of earlier releases keeps working.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from sevlaunch.broker import db, store
from sevlaunch.broker import launcher_store as ls
from sevlaunch.broker.launcher_store import Gate, LauncherRow
from sevlaunch.errors import AccessDeniedError, LimitExceededError, UsageError

if TYPE_CHECKING:
    from sevlaunch.broker.launches import Settings

log = logging.getLogger("sevlaunch.broker")

DEFAULT = store.DEFAULT_LAUNCHER
TOKEN_BYTES = 32
TOKEN_PREFIX = "sevl_"  # noqa: S105 (a prefix, not a token)
#: A launcher over its open-launch limit may retry when one of its launches ends, which may
#: be any moment; Retry-After says this much, or the time to its first expiry if sooner.
OPEN_RETRY = 5.0


@dataclass(frozen=True)
class LauncherLimits:
    """Limits of one launcher, or the serving instance's defaults for those left unset."""

    max_open: int = 500
    rate: float = 600.0  # new launches a minute
    burst: int = 200

    def __post_init__(self) -> None:
        if self.max_open < 1 or self.rate <= 0 or self.burst < 1:
            raise UsageError(
                f"launcher limits must be positive: max-open {self.max_open}, "
                f"rate {self.rate} a minute, burst {self.burst}"
            )


@dataclass(frozen=True)
class Launcher:
    """A launcher as the owner sees it: its effective limits and open launches."""

    name: str
    created_at: float
    revoked_at: float | None
    limits: LauncherLimits
    open: int
    defaults: tuple[str, ...]  # which limits come from the serving instance


@dataclass(frozen=True)
class NewLauncher:
    launcher: Launcher
    token: str = field(repr=False)


def token_hash(token: bytes) -> str:
    return hashlib.sha256(token).hexdigest()


def effective(row: LauncherRow | Gate, defaults: LauncherLimits) -> LauncherLimits:
    return LauncherLimits(
        row.max_open if row.max_open is not None else defaults.max_open,
        row.rate if row.rate is not None else defaults.rate,
        row.burst if row.burst is not None else defaults.burst,
    )


def admit(gate: Gate, limits: LauncherLimits, now: float, name: str) -> float:
    """The bucket level after this launch, or LimitExceededError with when to retry."""
    if gate.open >= limits.max_open:
        until_expiry = (gate.next_expiry - now) if gate.next_expiry is not None else OPEN_RETRY
        raise LimitExceededError(
            "too-many-open-launches",
            f"launcher {name!r} has {gate.open} launches awaiting a measurement, its limit; "
            "finish or abandon one (an unfinished launch ends when it expires)",
            max(1.0, min(OPEN_RETRY, until_expiry)),
        )
    per_second = limits.rate / 60.0
    if gate.bucket is None or gate.bucket_at is None:
        level = float(limits.burst)
    else:
        level = min(float(limits.burst), gate.bucket + max(0.0, now - gate.bucket_at) * per_second)
    if level < 1.0:
        raise LimitExceededError(
            "rate-limited",
            f"launcher {name!r} may start {limits.rate:g} launches a minute (bursts of "
            f"{limits.burst}) and has used them",
            max(1.0, math.ceil((1.0 - level) / per_second)),
        )
    return level - 1.0


class Launchers:
    """The launcher half of :class:`~sevlaunch.broker.service.Broker` (which sets these)."""

    engine: sa.Engine
    settings: Settings
    clock: Callable[[], float]
    random: Callable[[int], bytes]
    #: launcher -> until when it is over its rate, as its last refusal said (this process)
    _rate_blocked: dict[str, float]

    _audit: Callable[..., None]  # Broker's

    def add_launcher(
        self,
        name: str,
        *,
        max_open: int | None = None,
        rate: float | None = None,
        burst: int | None = None,
    ) -> NewLauncher:
        """A new launcher and its token (returned here only: the database keeps its hash)."""
        if name == DEFAULT:
            raise UsageError(
                f"the launcher name {DEFAULT!r} belongs to 'broker serve --launcher-token-file'"
            )
        token = TOKEN_PREFIX + base64.urlsafe_b64encode(self.random(TOKEN_BYTES)).decode()
        row = LauncherRow(
            name, token_hash(token.encode()), self.clock(), None, max_open, rate, burst
        )
        effective(row, self.settings.launcher_limits)  # refuses non-positive limits
        with db.writing(self.engine) as conn:
            ls.add(conn, row)
            self._audit(conn, "owner", "launcher.add", "ok", launcher=name, detail=_limits(row))
        return NewLauncher(self._view(row, 0), token)

    def launchers(self) -> list[Launcher]:
        with db.reading(self.engine) as conn:
            rows = ls.list_all(conn)
            counts = ls.open_counts(conn, self.clock())
        return [self._view(r, counts.get(r.name, 0)) for r in rows]

    def revoke_launcher(self, name: str) -> Launcher:
        """Refuse the launcher's token from now on and end its open launches."""
        now = self.clock()
        with db.writing(self.engine) as conn:
            ended = ls.revoke(conn, name, now, self.settings.instance)
            for launch in ended:
                self._audit(
                    conn,
                    "owner",
                    "launch.end",
                    "refused",
                    reason="launcher-revoked",
                    launch=launch,
                    launcher=name,
                )
            self._audit(
                conn, "owner", "launcher.revoke", "ok", launcher=name, detail={"ended": len(ended)}
            )
            row = ls.get(conn, name)
        return self._view(row, 0)

    def authenticate(self, token: bytes) -> str | None:
        """The name of the launcher whose token this is, unless unknown or revoked."""
        wanted = token_hash(token)
        with db.lean_read(self.engine) as tx:
            found = ls.by_hash(tx, wanted)
        if found is None or not hmac.compare_digest(found[1], wanted) or found[2] is not None:
            return None
        return found[0]

    def ensure_default_launcher(self, token: bytes) -> None:
        """Make ``token`` the ``default`` launcher's: added if missing, rotated (and no longer
        revoked) if the file now holds another token."""
        wanted, now = token_hash(token), self.clock()
        try:
            with db.writing(self.engine) as conn:
                self._set_default(conn, wanted, now)
        except sa.exc.IntegrityError as exc:
            if not store._is_unique_violation(exc):
                raise
            with db.reading(self.engine) as conn:  # another instance added it meanwhile?
                if ls.get(conn, DEFAULT).token_hash == wanted:
                    return
            raise UsageError(
                "the launcher token file holds the token of a named launcher: give "
                "--launcher-token-file a token of its own"
            ) from exc

    def _set_default(self, conn: sa.Connection, wanted: str, now: float) -> None:
        rows = {r.name: r for r in ls.list_all(conn)}
        current = rows.get(DEFAULT)
        if current is None:
            ls.add(conn, LauncherRow(DEFAULT, wanted, now))
            self._audit(conn, "owner", "launcher.add", "ok", launcher=DEFAULT)
        elif current.token_hash != wanted:
            ls.set_token(conn, DEFAULT, wanted, now)
            self._audit(conn, "owner", "launcher.rotate", "ok", launcher=DEFAULT)
        elif current.revoked_at is not None:
            log.warning(
                "the default launcher is revoked: its token (--launcher-token-file) stays "
                "refused until the file holds a new one"
            )

    def _gate(self, tx: db.Tx, name: str, now: float) -> Gate:
        """Lock launcher ``name`` for this start (401 if unknown or revoked)."""
        gate = ls.gate(tx, name, now)
        if gate is None or gate.revoked:
            raise AccessDeniedError(
                401, "unauthenticated", f"launcher {name!r} is unknown or its token was revoked"
            )
        return gate

    def _admit(self, tx: db.Tx, name: str, gate: Gate, now: float) -> LimitExceededError | None:
        """Admit one more launch of ``name`` (taking from its bucket), or why not."""
        try:
            level = admit(gate, effective(gate, self.settings.launcher_limits), now, name)
        except LimitExceededError as exc:
            return exc
        ls.take(tx, name, level, now)
        return None

    def _check_rate_memo(self, launcher: str) -> None:
        until = self._rate_blocked.get(launcher)
        if until is None:
            return
        left = until - self.clock()
        if left <= 0:
            self._rate_blocked.pop(launcher, None)
            return
        raise LimitExceededError(
            "rate-limited",
            f"launcher {launcher!r} is over its launch rate; try again in {math.ceil(left)} s",
            max(1.0, math.ceil(left)),
        )

    def _remember_rate(self, launcher: str, exc: LimitExceededError) -> None:
        """Only a rate refusal is exact: no launch can refill a bucket sooner (an open-launch
        refusal may end at any moment, when one of the launcher's launches does)."""
        if exc.reason == "rate-limited":
            self._rate_blocked[launcher] = self.clock() + exc.retry_after

    def _view(self, row: LauncherRow, open_launches: int) -> Launcher:
        unset = tuple(n for n in ("max_open", "rate", "burst") if getattr(row, n) is None)
        return Launcher(
            row.name,
            row.created_at,
            row.revoked_at,
            effective(row, self.settings.launcher_limits),
            open_launches,
            unset,
        )


def _limits(row: LauncherRow) -> dict[str, Any]:
    return {
        k: v
        for k, v in (("max_open", row.max_open), ("rate", row.rate), ("burst", row.burst))
        if v is not None
    }
