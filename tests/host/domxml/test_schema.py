"""Validation against libvirt's RelaxNG schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from sevlaunch.errors import DomainXMLError
from sevlaunch.host.domxml import (
    validate_against_schema,
)

# libvirt tests/qemuxmlconfdata/launch-security-sev-direct.x86_64-latest.xml (as libvirt
from tests.host.domxml.samples import (
    PLAIN,
    SEV_DIRECT,
)


def test_schema_failures_are_reported(schemas: Path) -> None:
    invalid = SEV_DIRECT.replace("<vcpu placement='static'>1</vcpu>", "<vcpu>one</vcpu>")
    with pytest.raises(DomainXMLError, match="failed to validate against schema"):
        validate_against_schema(invalid, schemas)


def test_missing_schema_is_reported(tmp_path: Path) -> None:
    with pytest.raises(DomainXMLError, match="Unable to load the RelaxNG schema"):
        validate_against_schema(PLAIN, tmp_path)
