"""A synchronous client of the host manager's API, for the CLI and the VM tool.

``connect`` takes the same forms as ``sevlaunch host serve --listen`` (:mod:`sevlaunch._http`);
TCP needs the bearer token (``--host-token-file`` or ``SEVLAUNCH_HOST_TOKEN_FILE``).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from sevlaunch import _http
from sevlaunch.errors import FormatError, HostError, QemuCommandError, UsageError
from sevlaunch.protocol import (
    DomainInfo,
    HostEvent,
    LaunchSecurityInfo,
    NodeSevInfo,
    NodeSnpInfo,
    SecretInfo,
    SecretRelease,
    SnpLaunchSecurityInfo,
    StepReport,
)

if TYPE_CHECKING:
    from sevlaunch.host.watch import MeasurementWatch

DEFAULT_TIMEOUT = 120.0
_HINT = "start one with 'sevlaunch host serve' or pass -c/--connect ADDRESS (or SEVLAUNCH_HOST)"


def read_token(token_file: str | None) -> str | None:
    path = token_file or os.environ.get("SEVLAUNCH_HOST_TOKEN_FILE")
    if not path:
        return None
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise UsageError(f"cannot read token file {path}: {exc.strerror}") from exc


class HostClient:
    def __init__(
        self,
        uri: str,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        ca_file: str | None = None,
        insecure_plain_http: bool = False,
        reconnect: float = 0.0,
    ) -> None:
        """``reconnect``: once this host has answered, seconds to keep retrying a request
        that never reached it (nothing listens: a host manager being restarted, whose guests
        keep running), as the VM tool does mid-launch; a wrong address still fails at once,
        and so does every request of a client made without it."""
        self.address = _http.parse(uri, what="host manager")
        self.reconnect = reconnect
        self._answered = False
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.uri = uri
        self.token = token
        self.ca_file = ca_file
        self.insecure_plain_http = insecure_plain_http
        self._http = _http.client(
            self.address,
            what="host manager",
            headers=headers,
            timeout=timeout,
            ca_file=ca_file,
            insecure_plain_http=insecure_plain_http,
        )

    def __enter__(self) -> HostClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def sibling(self) -> HostClient:
        """A second connection to the same host, for a blocking event stream beside calls."""
        sibling = HostClient(
            self.uri,
            token=self.token,
            ca_file=self.ca_file,
            insecure_plain_http=self.insecure_plain_http,
            reconnect=self.reconnect,
        )
        sibling._answered = self._answered
        return sibling

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        wait = self.reconnect if self._answered else 0.0
        try:
            response = _http.request(self._http, method, path, wait=wait, **kwargs)
        except httpx.HTTPError as exc:
            raise HostError(
                "failed to connect to the host manager",
                _http.unreachable(exc, self.address, self.ca_file, _HINT),
            ) from exc
        self._answered = True
        return response

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        if response.status_code >= 400:
            raise _error(response)
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    # node
    def node_sev_info(self, *, refresh: bool = False) -> NodeSevInfo:
        return NodeSevInfo.from_wire(self._object("GET", "/v1/node/sev-info", refresh=refresh))

    def node_snp_info(self, *, refresh: bool = False) -> NodeSnpInfo:
        return NodeSnpInfo.from_wire(self._object("GET", "/v1/node/snp-info", refresh=refresh))

    # domains
    def define(self, xml: str) -> DomainInfo:
        return DomainInfo.from_wire(
            self._call(
                "POST", "/v1/domains", content=xml, headers={"Content-Type": "application/xml"}
            )
        )

    def undefine(self, name: str) -> None:
        self._call("DELETE", f"/v1/domains/{name}")

    def list_domains(self, *, all_domains: bool = False) -> list[DomainInfo]:
        rows = self._call("GET", "/v1/domains", params={"all": all_domains})
        return [DomainInfo.from_wire(r) for r in _objects(rows)]

    def domain(self, name: str) -> DomainInfo:
        return DomainInfo.from_wire(self._object("GET", f"/v1/domains/{name}"))

    def dumpxml(self, name: str) -> str:
        return str(self._call("GET", f"/v1/domains/{name}/xml"))

    def start(self, name: str, *, paused: bool = False) -> DomainInfo:
        return self._domain_call(f"/v1/domains/{name}/start", json={"paused": paused})

    def resume(self, name: str) -> DomainInfo:
        return self._domain_call(f"/v1/domains/{name}/resume")

    def suspend(self, name: str) -> DomainInfo:
        return self._domain_call(f"/v1/domains/{name}/suspend")

    def shutdown(self, name: str) -> DomainInfo:
        return self._domain_call(f"/v1/domains/{name}/shutdown")

    def destroy(self, name: str) -> DomainInfo:
        return self._domain_call(f"/v1/domains/{name}/destroy")

    def wait_booted(self, name: str, timeout: float = 60.0) -> DomainInfo:
        return self._domain_call(f"/v1/domains/{name}/wait-booted", params={"timeout": timeout})

    # launch security
    def launch_security(self, name: str) -> LaunchSecurityInfo | SnpLaunchSecurityInfo | None:
        """The domain's launch security parameters: an SEV domain's measurement and platform
        values, an SEV-SNP domain's policy and firmware version; None without launch security."""
        wire = self._object("GET", f"/v1/domains/{name}/launch-security")
        if not wire:
            return None
        if "sev-snp-policy" in wire:
            return SnpLaunchSecurityInfo.from_wire(wire)
        return LaunchSecurityInfo.from_wire(wire)

    def launch_security_info(self, name: str) -> LaunchSecurityInfo | None:
        """An SEV domain's measurement and platform values (None without launch security)."""
        info = self.launch_security(name)
        if isinstance(info, SnpLaunchSecurityInfo):
            raise HostError(
                "Operation not supported",
                f"domain '{name}' is an SEV-SNP guest: it has no launch measurement",
                field="sev-measurement",
            )
        return info

    def set_launch_security_state(
        self, name: str, release: SecretRelease, address: int | None = None
    ) -> None:
        body: dict[str, object] = dict(release.to_wire())
        if address is not None:
            body["sev-secret-set-address"] = address
        self._call("PUT", f"/v1/domains/{name}/launch-security", json=body)

    def console(self, name: str) -> str:
        return str(self._call("GET", f"/v1/domains/{name}/console"))

    def watch(self, name: str) -> MeasurementWatch:
        """Step 10's wait: the host's events of ``name`` on a second connection."""
        from sevlaunch.host.watch import MeasurementWatch

        return MeasurementWatch(self, name)

    def timeline(self, name: str, launch: int | None = None) -> list[StepReport]:
        params = {"launch": launch} if launch is not None else {}
        rows = self._call("GET", f"/v1/domains/{name}/timeline", params=params)
        return [StepReport.from_wire(r) for r in _objects(rows)]

    def report_steps(self, name: str, reports: list[StepReport]) -> int:
        """Give the host the VM tool's record of steps 1-5 and 11; how many it kept."""
        body = {"steps": [r.to_wire() for r in reports]}
        answer = _as_object(self._call("POST", f"/v1/domains/{name}/timeline", json=body))
        recorded = answer.get("recorded")
        return recorded if isinstance(recorded, int) else 0

    def events(self, domain: str | None = None) -> Iterator[HostEvent]:
        """Events as they happen (blocks), every domain's or ``domain``'s only (filtered by
        the host); keepalives are skipped."""
        params = {"domain": domain} if domain is not None else None
        with self._http.stream(
            "GET", "/v1/events", params=params, timeout=httpx.Timeout(10.0, read=None)
        ) as response:
            for line in response.iter_lines():
                if line:
                    event = HostEvent.from_wire(_as_object(json.loads(line)))
                    if event.kind != "keepalive":
                        yield event

    def _object(self, method: str, path: str, **params: object) -> dict[str, object]:
        return _as_object(self._call(method, path, params=params or None))

    def _domain_call(self, path: str, **kwargs: object) -> DomainInfo:
        return DomainInfo.from_wire(_as_object(self._call("POST", path, **kwargs)))

    # secrets
    def secret_define(self, xml: str) -> str:
        return str(
            self._call(
                "POST", "/v1/secrets", content=xml, headers={"Content-Type": "application/xml"}
            )["uuid"]
        )

    def secret_set_value(self, uuid: str, value: bytes) -> None:
        self._call(
            "PUT", f"/v1/secrets/{uuid}/value", json={"value": base64.b64encode(value).decode()}
        )

    def secret_list(self) -> list[SecretInfo]:
        return [SecretInfo.from_wire(r) for r in _objects(self._call("GET", "/v1/secrets"))]

    def secret_undefine(self, uuid: str) -> None:
        self._call("DELETE", f"/v1/secrets/{uuid}")


def _error(response: httpx.Response) -> HostError:
    """The host's refusal as the class it raised (QemuCommandError keeps QEMU's class)."""
    try:
        error = response.json()["error"]
        qmp = error.get("qmp")
        if isinstance(qmp, dict):
            return QemuCommandError(str(qmp["command"]), str(qmp["class"]), str(qmp["desc"]))
        return HostError(
            error["code"], error["message"].split(": ", 1)[-1], field=error.get("field")
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        text = f"HTTP {response.status_code}: {response.text[:200]}"
        return HostError("internal error", f"{text} ({type(exc).__name__}: {exc})")


def _as_object(value: object) -> dict[str, object]:
    """A JSON object from the API; anything else is a malformed answer."""
    if not isinstance(value, dict):
        raise FormatError("host API answer", "body", "expected a JSON object", value=value)
    return {str(k): v for k, v in value.items()}


def _objects(value: object) -> list[dict[str, object]]:
    if not isinstance(value, list):
        raise FormatError("host API answer", "body", "expected a JSON list", value=value)
    return [_as_object(v) for v in value]
