"""The owner's launch id of a domain, kept in its XML's ``<metadata>``.

The VM tool gets a launch id from the guest owner (the broker) at step 4 and defines the
domain at step 6; it writes the id into the domain's metadata, one element in a namespace of
its own as libvirt's metadata API expects (so ``virsh metadata`` reads it too)::

    <metadata>
      <launch:launch xmlns:launch="https://sevlaunch.dev/xmlns/launch/1" id="..."
                     broker="https://broker.example:8470"/>
    </metadata>

The host keeps the XML as given, so its dashboard shows the id that the broker's records are
keyed by (and links to the broker's page when ``broker``, its http(s) address, is there), and
the broker records the domain's name: each side names the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree  # type: ignore[import-untyped]

from sevlaunch._http import PAGE
from sevlaunch.errors import FormatError
from sevlaunch.host.domxml import parse_document

NS = "https://sevlaunch.dev/xmlns/launch/1"
PREFIX = "launch"
_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")


@dataclass(frozen=True)
class LaunchRef:
    """The owner's id of a domain's launch and, if known, the owner's page (a broker's)."""

    id: str
    broker: str | None = None


def with_launch_ref(xml: str, launch_id: str, broker: str | None = None) -> str:
    """``xml`` with the owner's ``launch_id`` (and ``broker``, the address of the owner's page)
    in its metadata, replacing an older reference."""
    if not _ID.match(launch_id):
        raise FormatError("launch reference", "id", "not a launch id", value=launch_id)
    if broker is not None and not PAGE.match(broker):
        raise FormatError("launch reference", "broker", "not an http(s) address", value=broker)
    root = parse_document(xml, "domain")
    metadata = root.find("metadata")
    if metadata is None:
        metadata = etree.Element("metadata")
        after = [root.find(tag) for tag in ("description", "title", "genid", "uuid", "name")]
        anchor = next((el for el in after if el is not None), None)
        if anchor is None:
            root.insert(0, metadata)
        else:
            anchor.addnext(metadata)
    for old in metadata.findall(f"{{{NS}}}launch"):
        metadata.remove(old)
    ref = etree.SubElement(metadata, f"{{{NS}}}launch", nsmap={PREFIX: NS}, id=launch_id)
    if broker is not None:
        ref.set("broker", broker)
    text: str = etree.tostring(root, encoding="unicode")
    return text


def launch_ref(xml: str) -> LaunchRef | None:
    """The owner's launch recorded in a domain's XML, if any (and well formed); a malformed
    broker address is left out."""
    root = parse_document(xml, "domain")
    found = root.find(f"metadata/{{{NS}}}launch")
    value = None if found is None else found.get("id")
    if found is None or value is None or not _ID.match(value):
        return None
    broker = found.get("broker")
    return LaunchRef(value, broker if broker is not None and PAGE.match(broker) else None)
