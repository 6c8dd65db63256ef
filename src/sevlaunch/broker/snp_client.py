"""The owner's SNP calls of :class:`~sevlaunch.broker.client.BrokerClient` (a mixin), answered
as :mod:`sevlaunch.protocol.snp_admin` records."""

from __future__ import annotations

import base64
from typing import Any

from sevlaunch.protocol.snp_admin import SnpRoot, SnpWorkload


class SnpOwnerCalls:
    """``/v1/snp/trust-roots`` and ``/v1/snp/workloads``."""

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        raise NotImplementedError  # BrokerClient's

    def add_snp_root(self, certificate: bytes, name: str | None = None) -> SnpRoot:
        from sevlaunch.broker.client import _one

        body = {"certificate": base64.b64encode(certificate).decode(), "name": name}
        return _one(SnpRoot, self._call("POST", "/v1/snp/trust-roots", json=body))

    def snp_roots(self) -> list[SnpRoot]:
        from sevlaunch.broker.client import _many

        return _many(SnpRoot, self._call("GET", "/v1/snp/trust-roots"))

    def remove_snp_root(self, name: str) -> None:
        self._call("DELETE", f"/v1/snp/trust-roots/{name}")

    def add_snp_workload(
        self, body: dict[str, Any], secrets: dict[str, bytes] | None = None
    ) -> SnpWorkload:
        """``body`` in the API's names (``digests``, ``minTcb``...); secret values as bytes."""
        from sevlaunch.broker.client import _one

        values = {g: base64.b64encode(v).decode() for g, v in (secrets or {}).items()}
        answer = self._call("POST", "/v1/snp/workloads", json={**body, "secrets": values})
        return _one(SnpWorkload, answer)

    def snp_workloads(self) -> list[SnpWorkload]:
        from sevlaunch.broker.client import _many

        return _many(SnpWorkload, self._call("GET", "/v1/snp/workloads"))

    def snp_workload(self, name: str) -> SnpWorkload:
        from sevlaunch.broker.client import _one

        return _one(SnpWorkload, self._call("GET", f"/v1/snp/workloads/{name}"))

    def remove_snp_workload(self, name: str) -> None:
        self._call("DELETE", f"/v1/snp/workloads/{name}")

    def set_snp_secret(self, workload: str, guid: str, value: bytes) -> None:
        body = {"value": base64.b64encode(value).decode()}
        self._call("PUT", f"/v1/snp/workloads/{workload}/secrets/{guid}", json=body)
