"""The broker's SNP records as its owner reads them: pinned SNP roots and SNP workloads, typed
once at the client as :mod:`sevlaunch.protocol.admin` types SEV's (``from_wire`` names a
malformed key, unknown keys are ignored; ``to_wire`` gives the API's object back for
``--json``). A workload's ``expectations`` stay the verifier's JSON object (the owner layer
reads it as :class:`~sevlaunch.owner.snp.expectations.SnpExpectations`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sevlaunch.errors import FormatError
from sevlaunch.protocol import _wire as w

ROOT = "SNP root"
WORKLOAD = "SNP workload"


def _texts(structure: str, wire: Mapping[str, object], key: str) -> tuple[str, ...]:
    value = wire.get(key)
    if not isinstance(value, list):
        raise FormatError(structure, key, "expected a list", value=value)
    return tuple(w.text(structure, {key: item}, key) for item in value)


@dataclass(frozen=True)
class SnpRoot:
    """A pinned ARK besides AMD's, by the SHA-256 of its DER."""

    name: str
    fingerprint: str
    product: str
    created_at: float

    @classmethod
    def from_wire(cls, wire: Mapping[str, object]) -> SnpRoot:
        return cls(
            name=w.text(ROOT, wire, "name"),
            fingerprint=w.text(ROOT, wire, "fingerprint"),
            product=w.text(ROOT, wire, "product"),
            created_at=w.number(ROOT, wire, "createdAt"),
        )

    def to_wire(self) -> dict[str, object]:
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "product": self.product,
            "createdAt": self.created_at,
        }


@dataclass(frozen=True)
class SnpWorkload:
    """What an SNP workload's guests' reports must show, and its secrets' GUIDs (never values)."""

    name: str
    expectations: Mapping[str, object]
    secrets: tuple[str, ...]
    created_at: float

    @classmethod
    def from_wire(cls, wire: Mapping[str, object]) -> SnpWorkload:
        expectations = wire.get("expectations")
        if not isinstance(expectations, dict) or not all(isinstance(k, str) for k in expectations):
            raise FormatError(WORKLOAD, "expectations", "expected an object", value=expectations)
        return cls(
            name=w.text(WORKLOAD, wire, "name"),
            expectations=dict(expectations),
            secrets=_texts(WORKLOAD, wire, "secrets"),
            created_at=w.number(WORKLOAD, wire, "createdAt"),
        )

    def to_wire(self) -> dict[str, object]:
        return {
            "name": self.name,
            "expectations": dict(self.expectations),
            "secrets": list(self.secrets),
            "createdAt": self.created_at,
        }
