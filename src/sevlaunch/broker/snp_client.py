"""The owner's SNP calls of :class:`~sevlaunch.broker.client.BrokerClient` (a mixin)."""

from __future__ import annotations

import base64
from typing import Any


class SnpOwnerCalls:
    """``/v1/snp/trust-roots`` and ``/v1/snp/workloads``."""

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        raise NotImplementedError  # BrokerClient's

    def add_snp_root(self, certificate: bytes, name: str | None = None) -> dict[str, Any]:
        body = {"certificate": base64.b64encode(certificate).decode(), "name": name}
        return dict(self._call("POST", "/v1/snp/trust-roots", json=body))

    def snp_roots(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/snp/trust-roots"))

    def remove_snp_root(self, name: str) -> None:
        self._call("DELETE", f"/v1/snp/trust-roots/{name}")

    def add_snp_workload(
        self, body: dict[str, Any], secrets: dict[str, bytes] | None = None
    ) -> dict[str, Any]:
        """``body`` in the API's names (``digests``, ``minTcb``...); secret values as bytes."""
        wire = {
            **body,
            "secrets": {g: base64.b64encode(v).decode() for g, v in (secrets or {}).items()},
        }
        return dict(self._call("POST", "/v1/snp/workloads", json=wire))

    def snp_workloads(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/snp/workloads"))

    def snp_workload(self, name: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/snp/workloads/{name}"))

    def remove_snp_workload(self, name: str) -> None:
        self._call("DELETE", f"/v1/snp/workloads/{name}")

    def set_snp_secret(self, workload: str, guid: str, value: bytes) -> None:
        body = {"value": base64.b64encode(value).decode()}
        self._call("PUT", f"/v1/snp/workloads/{workload}/secrets/{guid}", json=body)
