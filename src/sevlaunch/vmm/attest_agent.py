"""The guest's attestation agent talking to the broker: ``POST /v1/snp/challenge`` for a nonce,
``POST /v1/snp/attest`` with the evidence. The guest holds no token: the report is its
credential. Runs the blocking HTTP client in a thread, as a guest process would block."""

from __future__ import annotations

import asyncio
from typing import Any

from sevlaunch import _http
from sevlaunch.errors import FormatError, LaunchRefusedError, SevlaunchError
from sevlaunch.protocol.snp import GuestAttestationConfig, SnpChallenge, SnpEvidence, SnpRelease

CHALLENGE_PATH = "/v1/snp/challenge"
ATTEST_PATH = "/v1/snp/attest"
TIMEOUT = 60.0


class BrokerAgent:
    def __init__(self, timeout: float = TIMEOUT) -> None:
        self.timeout = timeout

    def _post(self, broker: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        address = _http.parse(broker, what="broker")
        try:
            with _http.client(address, what="broker", timeout=self.timeout) as client:
                answer = client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise SevlaunchError(_http.unreachable(exc, address)) from exc
        try:
            doc = answer.json()
        except ValueError as exc:
            raise SevlaunchError(f"{address} did not answer JSON ({answer.status_code})") from exc
        if not isinstance(doc, dict):
            raise SevlaunchError(f"{address} answered {type(doc).__name__}, not an object")
        if answer.status_code != 200:
            raise LaunchRefusedError(
                str(doc.get("error", answer.status_code)), str(doc.get("detail", ""))
            )
        return doc

    async def challenge(self, config: GuestAttestationConfig) -> SnpChallenge:
        doc = await asyncio.to_thread(
            self._post, config.broker, CHALLENGE_PATH, {"workload": config.workload}
        )
        try:
            return SnpChallenge.from_wire(doc)
        except FormatError as exc:
            raise SevlaunchError(f"the broker's challenge is malformed: {exc}") from exc

    async def attest(self, config: GuestAttestationConfig, evidence: SnpEvidence) -> SnpRelease:
        doc = await asyncio.to_thread(self._post, config.broker, ATTEST_PATH, evidence.to_wire())
        try:
            return SnpRelease.from_wire(doc)
        except FormatError as exc:
            raise SevlaunchError(f"the broker's release is malformed: {exc}") from exc
