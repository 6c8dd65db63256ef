"""The ``sev-guest`` object, as libvirt's qemuBuildSEVCommandLine builds it (and the
``sev-snp-guest`` of libvirt 10.5, with guest config passed as ``-fw_cfg``): id ``lsec0``,
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
    if lsec.type == "sev-snp":
        return sev_snp_object(lsec, host_sev), []
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


def sev_snp_object(lsec: LaunchSecurity, host_sev: HostSevDefaults | None) -> str:
    """libvirt 10.5's ``sev-snp-guest`` (qemuBuildSEVSNPCommandLine): the common properties,
    the 64-bit policy in decimal, the base64 blobs as the XML holds them, and
    ``author-key-enabled`` / ``vcek-disabled`` from ``authorKey='yes'`` / ``vcek='no'``. Where
    libvirt puts ``kernel-hashes`` among them is not pinned by its tests (sev-snp.md §9)."""
    cbitpos, rpb = _sev_geometry(lsec, host_sev)
    props: dict[str, object] = {
        "qom-type": "sev-snp-guest",
        "id": SEV_OBJECT_ID,
        "cbitpos": cbitpos,
        "reduced-phys-bits": rpb,
    }
    if lsec.kernel_hashes is not None:
        props["kernel-hashes"] = lsec.kernel_hashes
    if lsec.policy:  # libvirt's "U:policy": left out when absent or 0, QEMU's default then
        props["policy"] = lsec.policy
    for key, text in (
        ("guest-visible-workarounds", lsec.guest_visible_workarounds),
        ("id-block", lsec.id_block),
        ("id-auth", lsec.id_auth),
        ("host-data", lsec.host_data),
    ):
        if text is not None:
            props[key] = text.strip()
    if lsec.author_key:
        props["author-key-enabled"] = True
    if lsec.vcek is False:
        props["vcek-disabled"] = True
    return compact_json(props)


def fw_cfg_args(domain: Domain) -> list[str]:
    """``<sysinfo type='fwcfg'>`` as libvirt passes it: ``-fw_cfg name=...,string=...`` or
    ``...,file=...`` (commas doubled)."""
    from sevlaunch.host.qemu.plan import esc

    argv: list[str] = []
    for entry in domain.fw_cfg:
        value = (
            f"file={esc(entry.file)}"
            if entry.file is not None
            else f"string={esc(entry.value or '')}"
        )
        argv += ["-fw_cfg", f"name={esc(entry.name)},{value}"]
    return argv


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
