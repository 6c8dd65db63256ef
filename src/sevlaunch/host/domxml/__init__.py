"""libvirt domain XML for SEV and SEV-SNP guests: the parts we need as frozen dataclasses, the rest verbatim.

A :class:`Domain` parsed from XML remembers the document it came from (``template``);
:meth:`Domain.to_xml` writes the modelled values back into that document in place, so every
element we do not model (``<features>``, ``<clock>``, controllers, ...) survives a round trip
where it was. Values are normalised as libvirt's formatter does (memory in KiB, policy as
``0x%04x``, lower-case UUIDs).

libvirt has no XML for the 2017 design's second option (dhCert and session held as stored
secrets), and its schema admits foreign elements only inside ``<metadata>``. So the reference
is a sevlaunch extension there, one element in our namespace as libvirt's metadata API expects::

    <metadata>
      <sevlaunch:launchSecurity xmlns:sevlaunch="https://sevlaunch.dev/xmlns/domain/1">
        <sevlaunch:dhCertSecret uuid="..."/>
        <sevlaunch:sessionSecret uuid="..."/>
      </sevlaunch:launchSecurity>
    </metadata>

Errors read like libvirt's (``XML error: ...``, ``unsupported configuration: ...``) and are
:class:`~sevlaunch.errors.DomainXMLError`. Modules: :mod:`.checks` (vocabulary and shared
checks), :mod:`.model`, :mod:`.devices`, :mod:`.security` (the dataclasses), :mod:`.xmlutil`,
:mod:`.parse`, :mod:`.write` and :mod:`.schema`.
"""

from __future__ import annotations

from sevlaunch.host.domxml.checks import MAX_DOCUMENT, MAX_NAME_BYTES, NS, NS_PREFIX
from sevlaunch.host.domxml.devices import DiskConfig, SerialConfig
from sevlaunch.host.domxml.model import CpuConfig, Domain, FwCfgEntry, Loader, Nvram, OsConfig
from sevlaunch.host.domxml.schema import validate_against_schema
from sevlaunch.host.domxml.security import LaunchSecurity
from sevlaunch.host.domxml.xmlutil import parse_document, scale_to_bytes

__all__ = [
    "MAX_DOCUMENT",
    "MAX_NAME_BYTES",
    "NS",
    "NS_PREFIX",
    "CpuConfig",
    "DiskConfig",
    "Domain",
    "FwCfgEntry",
    "LaunchSecurity",
    "Loader",
    "Nvram",
    "OsConfig",
    "SerialConfig",
    "parse_document",
    "scale_to_bytes",
    "validate_against_schema",
]
