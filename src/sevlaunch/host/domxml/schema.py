"""Validation against libvirt's RelaxNG schema (``virsh define --validate``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from lxml import etree  # type: ignore[import-untyped]

from sevlaunch.errors import DomainXMLError
from sevlaunch.host.domxml.xmlutil import parse_document


@lru_cache(maxsize=4)
def _relaxng(path: Path) -> etree.RelaxNG:
    return etree.RelaxNG(etree.parse(str(path)))


def validate_against_schema(xml: str | bytes, schema_dir: str | Path) -> None:
    """Validate ``xml`` against libvirt's ``domain.rng`` in ``schema_dir``; raise if invalid."""
    path = Path(schema_dir) / "domain.rng"
    try:
        schema = _relaxng(path.resolve())
    except (OSError, etree.RelaxNGParseError, etree.XMLSyntaxError) as exc:
        raise DomainXMLError(
            "internal error",
            f"Unable to load the RelaxNG schema {path}: {exc}; point schema_dir at libvirt's "
            "src/conf/schemas",
            field="schema",
            value=str(path),
        ) from exc
    doc = parse_document(xml, "domain")
    if not schema.validate(doc):
        details = "; ".join(f"line {entry.line}: {entry.message}" for entry in schema.error_log)
        raise DomainXMLError(
            "XML document failed to validate against schema",
            f"Unable to validate doc against {path}: {details}",
            field="schema",
            value=details,
        )
