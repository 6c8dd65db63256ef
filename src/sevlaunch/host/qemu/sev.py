"""The ``sev-guest`` object, as libvirt's qemuBuildSEVCommandLine builds it: id ``lsec0``,
``cbitpos``/``reduced-phys-bits`` (the host's when the domain leaves them out), ``policy``,
the blob files libvirt writes into the domain's directory (0600, the XML text verbatim, or a
stored secret's value in base64), and ``kernel-hashes`` only when the domain says."""

from __future__ import annotations

import base64
import uuid
from pathlib import PurePosixPath

from sevlaunch.host.domxml import Domain, LaunchSecurity
from sevlaunch.host.qemu.plan import (
    HostSevDefaults,
    PlannedFile,
    SecretResolver,
    compact_json,
    unsupported,
)

SEV_OBJECT_ID = "lsec0"


def sev_object(
    domain: Domain,
    lsec: LaunchSecurity,
    lib_dir: str,
    resolve_secret: SecretResolver | None,
    host_sev: HostSevDefaults | None,
) -> tuple[str, list[PlannedFile]]:
    """The ``-object`` argument and the files it names."""
    if lsec.type != "sev" or lsec.policy is None:  # define refuses these; a stored row may not
        raise unsupported(
            f"{lsec.type} launch security is not supported with this QEMU binary",
            field="launchSecurity/@type",
            value=lsec.type,
        )
    cbitpos, rpb = _sev_geometry(lsec, host_sev)
    props: dict[str, object] = {
        "qom-type": "sev-guest",
        "id": SEV_OBJECT_ID,
        "cbitpos": cbitpos,
        "reduced-phys-bits": rpb,
        "policy": lsec.policy,
    }
    files: list[PlannedFile] = []
    for key, name, inline, ref in (
        ("dh-cert-file", "dh_cert", lsec.dh_cert, lsec.dh_cert_secret),
        ("session-file", "session", lsec.session, lsec.session_secret),
    ):
        content = _blob(domain.name, name, inline, ref, resolve_secret)
        if content is not None:
            path = str(PurePosixPath(lib_dir) / f"{name}.base64")
            files.append(PlannedFile(path, content))
            props[key] = path
    if lsec.kernel_hashes is not None:
        props["kernel-hashes"] = lsec.kernel_hashes
    return compact_json(props), files


def _sev_geometry(lsec: LaunchSecurity, host: HostSevDefaults | None) -> tuple[int, int]:
    cbitpos, rpb = lsec.cbitpos, lsec.reduced_phys_bits
    if host is not None:
        cbitpos = host.cbitpos if cbitpos is None else cbitpos
        rpb = host.reduced_phys_bits if rpb is None else rpb
    if cbitpos is None or rpb is None:
        raise unsupported(
            "the domain gives no <cbitpos>/<reducedPhysBits> and the host's SEV capabilities "
            "are unknown; add them to <launchSecurity> (see nodesevinfo) or let the driver "
            "probe the host",
            field="launchSecurity/cbitpos",
        )
    return cbitpos, rpb


def _blob(
    domain_name: str,
    name: str,
    inline: str | None,
    ref: uuid.UUID | None,
    resolve_secret: SecretResolver | None,
) -> bytes | None:
    """The file content: the XML text verbatim (libvirt), or base64 of a stored secret."""
    if inline is not None:
        return inline.encode("utf-8")
    if ref is None:
        return None
    if resolve_secret is None:
        raise unsupported(
            f"domain '{domain_name}' names secret {ref} for its {name} but no secret store "
            "was given to resolve it",
            field=f"metadata/{name}",
            value=str(ref),
        )
    return base64.b64encode(resolve_secret(ref))
