"""A small HTTP client for the broker (``--broker ADDRESS``, any form of :mod:`sevlaunch._http`).

Refusals come back as the same :mod:`sevlaunch.errors` classes the service raised, so a VM
tool can tell a replay from a measurement mismatch without parsing text.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar

import httpx

from sevlaunch import _http
from sevlaunch.broker.snp_client import SnpOwnerCalls
from sevlaunch.errors import (
    AccessDeniedError,
    BrokerError,
    ConflictError,
    FormatError,
    LaunchRefusedError,
    LimitExceededError,
    NotFoundError,
    UsageError,
)
from sevlaunch.protocol import (
    LaunchConfiguration,
    LaunchSecurityInfo,
    NodeSevInfo,
    SecretRelease,
    SessionOffer,
    StepReport,
)
from sevlaunch.protocol.admin import AuditEntry, Launcher, LaunchRecord, TrustRoot, Workload

URL_ENV = "SEVLAUNCH_BROKER_URL"
_HINT = "start one with 'sevlaunch broker serve' or pass --broker ADDRESS (or SEVLAUNCH_BROKER_URL)"
TOKEN_FILE_ENV = "SEVLAUNCH_BROKER_TOKEN_FILE"  # noqa: S105 (a variable name)


def read_token(path: str | Path) -> bytes:
    """A bearer token from its file (surrounding whitespace ignored)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read token file {path}: {exc.strerror}") from exc
    return check_token(data, path)


def check_token(data: bytes, path: str | Path) -> bytes:
    """The token in ``data`` (read from ``path``), or a UsageError saying how to make one."""
    token = data.strip()
    if len(token) < 16 or any(b < 0x21 or b > 0x7E for b in token):
        raise UsageError(
            f"token file {path} must hold one token of at least 16 printable characters; "
            "make one with: head -c 24 /dev/urandom | base64 > FILE"
        )
    return token


def _raise_for(response: httpx.Response, address: object) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    if not isinstance(body.get("error"), str):  # every refusal of a broker has its reason
        raise BrokerError(
            "not-a-broker",
            f"{address} answered HTTP {response.status_code} to {response.request.url.path} "
            "not as a broker does: not a broker (another service's address?)",
        )
    reason = str(body.get("error", f"http-{response.status_code}"))
    detail = body.get("detail")
    message = detail if isinstance(detail, str) else f"HTTP {response.status_code}: {detail}"
    status = response.status_code
    if status == 429:
        raise LimitExceededError(reason, message, _retry_after(response))
    if status == 403 and reason != "forbidden":
        raise LaunchRefusedError(reason, message, body.get("diagnosis"))
    if status in (401, 403):
        raise AccessDeniedError(status, reason, message)
    kind = {404: NotFoundError, 409: ConflictError}
    raise kind.get(status, BrokerError)(reason, message)


def _retry_after(response: httpx.Response) -> float:
    """Seconds from a Retry-After header (the broker sends seconds), 1 if unreadable."""
    try:
        return max(0.0, float(response.headers.get("retry-after", "1")))
    except ValueError:
        return 1.0


class _Record(Protocol):
    @classmethod
    def from_wire(cls, wire: Mapping[str, object]) -> Self: ...


R = TypeVar("R", bound=_Record)


def _one(kind: type[R], answer: object) -> R:
    """One record of the broker's answer, or BrokerError("bad-answer") naming what is wrong."""
    if not isinstance(answer, dict):
        raise BrokerError("bad-answer", f"the broker's answer is not an object: {answer!r:.80}")
    try:
        return kind.from_wire(answer)
    except FormatError as exc:
        raise BrokerError("bad-answer", f"the broker's answer is malformed: {exc}") from exc


def _many(kind: type[R], answer: object) -> list[R]:
    if not isinstance(answer, list):
        raise BrokerError("bad-answer", f"the broker's answer is not a list: {answer!r:.80}")
    return [_one(kind, item) for item in answer]


class BrokerClient(SnpOwnerCalls):
    """Calls the broker's API with one bearer token."""

    def __init__(
        self,
        url: str,
        token: bytes,
        *,
        timeout: float = 30.0,
        ca_file: str | None = None,
        insecure_plain_http: bool = False,
        reconnect: float = 0.0,
    ) -> None:
        """``reconnect``: seconds to keep retrying a request that never reached the broker
        (nothing listens: a broker being restarted), as the VM tool does mid-launch; a
        person's command fails at once instead."""
        self.address = _http.parse(url, what="broker")
        self.ca_file = ca_file
        self.reconnect = reconnect
        self._http = _http.client(
            self.address,
            what="broker",
            timeout=timeout,
            headers={"Authorization": "Bearer " + token.decode()},
            ca_file=ca_file,
            insecure_plain_http=insecure_plain_http,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BrokerClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = _http.request(self._http, method, path, wait=self.reconnect, **kwargs)
        except httpx.HTTPError as exc:
            message = _http.unreachable(exc, self.address, self.ca_file, _HINT)
            raise BrokerError("unreachable", f"broker: {message}") from exc
        _raise_for(response, self.address)
        return None if response.status_code == 204 else response.json()

    # owner
    def add_root(self, certificate: bytes, name: str | None = None) -> TrustRoot:
        body = {"certificate": base64.b64encode(certificate).decode(), "name": name}
        return _one(TrustRoot, self._call("POST", "/v1/trust-roots", json=body))

    def roots(self) -> list[TrustRoot]:
        return _many(TrustRoot, self._call("GET", "/v1/trust-roots"))

    def remove_root(self, name: str) -> None:
        self._call("DELETE", f"/v1/trust-roots/{name}")

    def add_workload(
        self,
        name: str,
        policies: list[int],
        digests: list[bytes],
        *,
        min_api: tuple[int, int] = (0, 0),
        min_build: int = 0,
        secrets: dict[str, bytes] | None = None,
    ) -> Workload:
        body = {
            "name": name,
            "policies": policies,
            "digests": [d.hex() for d in digests],
            "minApiMajor": min_api[0],
            "minApiMinor": min_api[1],
            "minBuild": min_build,
            "secrets": {g: base64.b64encode(v).decode() for g, v in (secrets or {}).items()},
        }
        return _one(Workload, self._call("POST", "/v1/workloads", json=body))

    def workloads(self) -> list[Workload]:
        return _many(Workload, self._call("GET", "/v1/workloads"))

    def workload(self, name: str) -> Workload:
        return _one(Workload, self._call("GET", f"/v1/workloads/{name}"))

    def remove_workload(self, name: str) -> None:
        self._call("DELETE", f"/v1/workloads/{name}")

    def set_secret(self, workload: str, guid: str, value: bytes) -> None:
        body = {"value": base64.b64encode(value).decode()}
        self._call("PUT", f"/v1/workloads/{workload}/secrets/{guid}", json=body)

    def audit(self, **params: Any) -> list[AuditEntry]:
        query = {k: v for k, v in params.items() if v is not None}
        return _many(AuditEntry, self._call("GET", "/v1/audit", params=query))

    def add_launcher(
        self,
        name: str,
        *,
        max_open: int | None = None,
        rate: float | None = None,
        burst: int | None = None,
    ) -> Launcher:
        """A new launcher; its ``token`` is in this answer only."""
        body = {"name": name, "maxOpen": max_open, "rate": rate, "burst": burst}
        made = _one(Launcher, self._call("POST", "/v1/launchers", json=body))
        if made.token is None:
            raise BrokerError("bad-answer", "the broker's new launcher answer has no token")
        return made

    def launchers(self) -> list[Launcher]:
        return _many(Launcher, self._call("GET", "/v1/launchers"))

    def revoke_launcher(self, name: str) -> Launcher:
        return _one(Launcher, self._call("POST", f"/v1/launchers/{name}/revoke"))

    # owner (every launch) or launcher (its own)
    def launches(self, **params: Any) -> list[LaunchRecord]:
        query = {k: v for k, v in params.items() if v is not None}
        return _many(LaunchRecord, self._call("GET", "/v1/launches", params=query))

    def launch(self, launch_id: str) -> LaunchRecord:
        return _one(LaunchRecord, self._call("GET", f"/v1/launches/{launch_id}"))

    # launcher
    def start_launch(
        self,
        workload: str,
        node: NodeSevInfo,
        cek: bytes | None = None,
        *,
        domain: str | None = None,
        host: str | None = None,
    ) -> SessionOffer:
        """Steps 4-5: the platform of ``node`` verified (with AMD's signed ``cek`` when the
        chain's is unsigned), a session made for ``workload``; ``domain`` is recorded with the
        launch so that its guest can be found on the host (whose page is ``host``)."""
        body = {
            "workload": workload,
            "pdh": base64.b64encode(node.pdh).decode(),
            "cert-chain": base64.b64encode(node.cert_chain).decode(),
            "cek": base64.b64encode(cek).decode() if cek else None,
        }
        if domain is not None:
            body["domain"] = domain
        if host is not None:
            body["host"] = host
        answer = self._call("POST", "/v1/launches", json=body)
        try:
            return SessionOffer(
                launch_id=str(answer["id"]),
                dh_cert=base64.b64decode(answer["dhCert"], validate=True),
                session=base64.b64decode(answer["session"], validate=True),
                policy=int(answer["policy"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BrokerError(
                "bad-answer", f"the broker's launch answer is malformed: {exc}"
            ) from exc

    def report_steps(
        self, launch_id: str, reports: list[StepReport], host_launch: int | None = None
    ) -> int:
        """Give the broker this launch's steps as the VM tool recorded them; how many it kept."""
        body: dict[str, object] = {"steps": [r.to_wire() for r in reports]}
        if host_launch is not None:
            body["host-launch"] = host_launch
        answer = self._call("POST", f"/v1/launches/{launch_id}/steps", json=body)
        recorded = answer.get("recorded") if isinstance(answer, dict) else None
        return recorded if isinstance(recorded, int) else 0

    def finish_launch(
        self,
        launch_id: str,
        info: LaunchSecurityInfo,
        configuration: LaunchConfiguration | None = None,
    ) -> SecretRelease:
        """Step 11: the measurement checked; the secret released, or LaunchRefusedError."""
        body: dict[str, object] = dict(info.to_wire())
        if configuration is not None:
            body["configuration"] = configuration.to_wire()
        answer = self._call("POST", f"/v1/launches/{launch_id}/measurement", json=body)
        try:
            return SecretRelease.from_wire(answer)
        except FormatError as exc:
            raise BrokerError(
                "bad-answer", f"the broker's secret answer is malformed: {exc}"
            ) from exc
