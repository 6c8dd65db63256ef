"""Per-check verdicts of one SNP report verification, serialisable to JSON."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from sevlaunch.errors import SnpVerificationError

#: Every check the verifier runs, in order (sev-snp.md §7).
CHECKS = (
    "parse",
    "generation",
    "signer",
    "chain",
    "crl",
    "signature",
    "tcb_certificate",
    "tcb_order",
    "tcb_minimum",
    "firmware",
    "chip_id",
    "policy",
    "platform_info",
    "vmpl",
    "measurement",
    "report_data",
    "host_data",
    "id_key",
    "mitigations",
)


class Outcome(enum.Enum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    FAIL = "fail"
    SKIP = "skip"  # not applicable, or nothing was expected (the detail says which)


@dataclass(frozen=True)
class Verdict:
    check: str
    outcome: Outcome
    detail: str


@dataclass(frozen=True)
class Verdicts:
    verdicts: tuple[Verdict, ...]
    at: str  # the verification time, ISO 8601
    product: str | None = None
    signer: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def failed(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if v.outcome is Outcome.FAIL)

    def get(self, check: str) -> Verdict:
        return next(v for v in self.verdicts if v.check == check)

    def raise_for_failures(self) -> Self:
        """Raise SnpVerificationError naming every failed check; else return self."""
        failed = self.failed
        if failed:
            raise SnpVerificationError(
                tuple(v.check for v in failed), tuple(v.detail for v in failed), self
            )
        return self

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "at": self.at,
            "product": self.product,
            "signer": self.signer,
            "checks": [
                {"check": v.check, "outcome": v.outcome.value, "detail": v.detail}
                for v in self.verdicts
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            tuple(Verdict(c["check"], Outcome(c["outcome"]), c["detail"]) for c in data["checks"]),
            at=data["at"],
            product=data.get("product"),
            signer=data.get("signer"),
        )
