"""The guest's attestation agent talking to the broker: ``POST /v1/snp/challenge`` for a nonce,
``POST /v1/snp/attest`` with the evidence. The guest holds no token: the report is its
credential. Runs the blocking HTTP client in a thread, as a guest process would block.

A 429 (this client over the broker's rate, or the workload's nonces all outstanding) or a 503
(the broker's key server did not answer) decided nothing and spent no nonce: the agent waits
the answer's Retry-After (at most :data:`MAX_WAIT` seconds) and asks again, :data:`RETRIES`
times, before it gives up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from sevlaunch import _http
from sevlaunch.errors import FormatError, LaunchRefusedError, SevlaunchError
from sevlaunch.protocol.snp import GuestAttestationConfig, SnpChallenge, SnpEvidence, SnpRelease

CHALLENGE_PATH = "/v1/snp/challenge"
ATTEST_PATH = "/v1/snp/attest"
TIMEOUT = 60.0
RETRIES = 5
MAX_WAIT = 30.0
_RETRYABLE = (429, 503)


def _retry_after(answer: Any) -> float:
    try:
        return min(MAX_WAIT, max(0.0, float(answer.headers.get("retry-after", "1"))))
    except ValueError:
        return 1.0


class BrokerAgent:
    def __init__(
        self,
        timeout: float = TIMEOUT,
        *,
        retries: int = RETRIES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.timeout, self.retries, self.sleep = timeout, retries, sleep

    def _post(self, broker: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        address = _http.parse(broker, what="broker")
        try:
            with _http.client(address, what="broker", timeout=self.timeout) as client:
                for attempt in range(self.retries + 1):
                    answer = client.post(path, json=body)
                    if answer.status_code not in _RETRYABLE or attempt == self.retries:
                        break
                    self.sleep(_retry_after(answer))
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
