"""Who is calling: the owner (one token, from its file, compared in constant time) or a named
launcher (its token's SHA-256 looked up in the database, see :mod:`sevlaunch.broker.launchers`).

The guard (:mod:`sevlaunch._guard`) asks before it reads a body; what it found is kept in the
request's scope so the route's dependency does not look the token up again.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import anyio.to_thread
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sevlaunch._guard import Scope, bearer
from sevlaunch.broker.service import LAUNCHER, OWNER, Broker
from sevlaunch.errors import AccessDeniedError

_bearer = HTTPBearer(auto_error=False, description="owner or launcher token")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
_KEY = "sevlaunch.principal"
#: An SNP guest holds no token: its report is its credential (see
#: :mod:`sevlaunch.broker.snp_attest`, which limits these calls per client address instead).
GUEST_PATHS = frozenset({"/v1/snp/challenge", "/v1/snp/attest"})


@dataclass(frozen=True)
class Principal:
    role: str  # OWNER or LAUNCHER
    launcher: str | None = None  # the launcher's name


class Auth:
    """Identifies callers of one broker; ``owner_token`` as read from its file."""

    def __init__(self, broker: Broker, owner_token: bytes) -> None:
        if not owner_token:
            raise ValueError("the owner token must be non-empty")
        self.broker = broker
        self.owner_token = owner_token

    def identify(self, token: bytes | None) -> Principal | None:
        if token is None:
            return None
        if hmac.compare_digest(token, self.owner_token):
            return Principal(OWNER)
        name = self.broker.authenticate(token)
        return Principal(LAUNCHER, name) if name is not None else None

    async def authorized(self, scope: Scope) -> bool:
        """For the guard: is the token valid? (Looked up in a worker thread.) The guest's
        two SNP calls need none."""
        if scope.get("method") == "POST" and scope.get("path") in GUEST_PATHS:
            return True
        given = bearer(scope)
        if given is None:
            return False
        found = await anyio.to_thread.run_sync(self.identify, given)
        if found is not None:
            scope.setdefault("state", {})[_KEY] = found
        return found is not None

    def principal(self, request: Request, creds: Credentials) -> Principal:
        """A dependency: the caller, or 401."""
        found = request.scope.get("state", {}).get(_KEY)
        if found is None:
            found = self.identify(creds.credentials.encode() if creds else None)
        if not isinstance(found, Principal):
            raise AccessDeniedError(401, "unauthenticated", "a valid bearer token is required")
        return found

    def require(self, role: str) -> Callable[[Request, Credentials], Principal]:
        """A dependency: the caller, who must hold ``role``'s token (else 401 or 403)."""

        def dependency(request: Request, creds: Credentials) -> Principal:
            found = self.principal(request, creds)
            if found.role != role:
                raise AccessDeniedError(
                    403, "forbidden", f"this call needs the {role} token, not the {found.role}'s"
                )
            return found

        return dependency
