"""A domain document read into the model, element by element, as libvirt's parser reads it."""

from __future__ import annotations

import uuid

from lxml import etree  # type: ignore[import-untyped]

from sevlaunch.errors import DomainXMLError
from sevlaunch.host.domxml.checks import (
    BOOT_DEVICES,
    CLOCK_OFFSETS,
    CPU_MODES,
    LAUNCH_SECURITY_TYPES,
    NS,
    NS_PREFIX,
    OS_TYPES,
    U32,
    U64,
    VIRT_TYPES,
    unsupported,
    xml_error,
)
from sevlaunch.host.domxml.model import CpuConfig, Domain, FwCfgEntry, Loader, Nvram, OsConfig
from sevlaunch.host.domxml.parse_devices import (
    parse_controller,
    parse_disk,
    parse_memballoon,
    parse_serial,
)
from sevlaunch.host.domxml.security import LaunchSecurity
from sevlaunch.host.domxml.xmlutil import (
    child,
    parse_uint,
    parse_uuid,
    prop_choice,
    prop_yesno,
    scale_to_bytes,
    text_of,
)


def _parse_memory(root: etree._Element, tag: str) -> int | None:
    el = root.find(tag)
    if el is None:
        return None
    total = scale_to_bytes(text_of(el) or "", el.get("unit"), where=f"./{tag}[1]")
    return -(-total // 1024)


def parse_domain(root: etree._Element) -> Domain:
    virt_type = prop_choice(root, "type", sorted(VIRT_TYPES), required=True)
    name = text_of(root.find("name"))
    if not name:
        raise xml_error("missing name information: the domain needs a <name> element", field="name")
    uuid_text = text_of(root.find("uuid"))
    memory = _parse_memory(root, "memory")
    if not memory:
        raise xml_error(
            "Memory size must be specified via <memory> or in the <numa> configuration",
            field="memory",
        )
    current = _parse_memory(root, "currentMemory")
    return Domain(
        type=virt_type or "kvm",
        name=name,
        uuid=None if uuid_text is None else parse_uuid(uuid_text, "uuid"),
        memory_kib=memory,
        current_memory_kib=None if not current or current > memory else current,
        vcpus=_parse_vcpus(root),
        os=_parse_os(root.find("os")),
        cpu=_parse_cpu(root.find("cpu")),
        launch_security=_parse_launch_security(root),
        fw_cfg=_parse_fw_cfg(root),
        emulator=text_of(root.find("devices/emulator")),
        disks=tuple(parse_disk(el) for el in root.iterfind("devices/disk")),
        serials=tuple(parse_serial(el) for el in root.iterfind("devices/serial")),
        controllers=tuple(parse_controller(el) for el in root.iterfind("devices/controller")),
        memballoon=parse_memballoon(root.find("devices/memballoon")),
        acpi=root.find("features/acpi") is not None,
        clock_offset=prop_choice(root.find("clock"), "offset", sorted(CLOCK_OFFSETS))
        if root.find("clock") is not None
        else None,
        template=etree.tostring(root),
    )


def _parse_fw_cfg(root: etree._Element) -> tuple[FwCfgEntry, ...]:
    out = []
    for sysinfo in root.iterfind("sysinfo"):
        if sysinfo.get("type") != "fwcfg":
            continue  # smbios: libvirt's -smbios, kept verbatim in the document
        for entry in sysinfo.iterfind("entry"):
            name = entry.get("name")
            if name is None:
                raise xml_error("Firmware entry is missing 'name' attribute", field="sysinfo/entry")
            file = entry.get("file")
            out.append(FwCfgEntry(name, None if file is not None else (entry.text or ""), file))
    return tuple(out)


def _parse_vcpus(root: etree._Element) -> int:
    text = text_of(root.find("vcpu"))
    if text is None:
        return 1
    count = parse_uint(text)
    if not count:
        raise xml_error(
            f"maximum vcpus count must be an integer greater than 0, got '{text}'",
            field="vcpu",
            value=text,
        )
    return count


def _parse_os(el: etree._Element | None) -> OsConfig:
    type_el = child(el, "type")
    os_type = text_of(type_el)
    if el is None or type_el is None or not os_type:
        raise xml_error(
            "an os <type> must be specified, e.g. <os><type arch='x86_64' "
            "machine='q35'>hvm</type></os>",
            field="os/type",
        )
    os_type = os_type.strip()
    if os_type not in OS_TYPES:
        raise DomainXMLError(
            "unknown OS type",
            f"'{os_type}': expected one of {', '.join(sorted(OS_TYPES))}",
            field="os/type",
            value=os_type,
        )
    loader_el = el.find("loader")
    nvram_el = el.find("nvram")
    return OsConfig(
        type=os_type,
        arch=type_el.get("arch"),
        machine=type_el.get("machine"),
        firmware=prop_choice(el, "firmware", ("bios", "efi")),
        loader=None if loader_el is None else _parse_loader(loader_el),
        nvram=None
        if nvram_el is None
        else Nvram(path=text_of(nvram_el) or None, template=nvram_el.get("template")),
        boot_devs=tuple(
            prop_choice(b, "dev", BOOT_DEVICES, required=True) or "hd" for b in el.iterfind("boot")
        ),
        kernel=text_of(el.find("kernel")),
        initrd=text_of(el.find("initrd")),
        cmdline=text_of(el.find("cmdline")),
    )


def _parse_loader(el: etree._Element) -> Loader:
    return Loader(
        path=(text_of(el) or "").strip() or None,
        readonly=prop_yesno(el, "readonly"),
        type=prop_choice(el, "type", ("rom", "pflash")),
        stateless=prop_yesno(el, "stateless"),
    )


def _parse_cpu(el: etree._Element | None) -> CpuConfig | None:
    if el is None:
        return None
    model = text_of(el.find("model"))
    return CpuConfig(
        mode=prop_choice(el, "mode", sorted(CPU_MODES)),
        model=model.strip() if model else None,
    )


def _parse_launch_security(root: etree._Element) -> LaunchSecurity | None:
    el = root.find("launchSecurity")
    refs = _parse_secret_refs(root)
    if el is None:
        if any(refs):
            raise unsupported(
                "the sevlaunch dhCertSecret/sessionSecret metadata needs "
                "<launchSecurity type='sev'>",
                field="metadata",
            )
        return None
    sec_type = prop_choice(el, "type", LAUNCH_SECURITY_TYPES, required=True) or "sev"
    policy = None
    if sec_type == "sev" or (sec_type == "sev-snp" and el.find("policy") is not None):
        # libvirt: required for SEV; optional for SEV-SNP (QEMU's default 0x30000 then)
        policy = _parse_policy(el, limit=U64 if sec_type == "sev-snp" else U32)
    return LaunchSecurity(
        type=sec_type,
        policy=policy,
        kernel_hashes=prop_yesno(el, "kernelHashes"),
        cbitpos=_parse_lsec_uint(el, "cbitpos"),
        reduced_phys_bits=_parse_lsec_uint(el, "reducedPhysBits"),
        dh_cert=text_of(el.find("dhCert")),
        session=text_of(el.find("session")),
        dh_cert_secret=refs[0],
        session_secret=refs[1],
        guest_visible_workarounds=text_of(el.find("guestVisibleWorkarounds")),
        id_block=text_of(el.find("idBlock")),
        id_auth=text_of(el.find("idAuth")),
        host_data=text_of(el.find("hostData")),
        author_key=prop_yesno(el, "authorKey"),
        vcek=prop_yesno(el, "vcek"),
    )


def _parse_policy(el: etree._Element, *, limit: int) -> int:
    text = text_of(el.find("policy"))
    value = None if text is None else parse_uint(text, base=16, limit=limit)
    if value is None:
        found = "no <policy> element" if text is None else f"'{text}'"
        raise xml_error(
            "failed to get launch security policy: expected a hexadecimal number such as "
            f"<policy>0x0033</policy>, found {found}",
            field="launchSecurity/policy",
            value=text,
        )
    return value


def _parse_lsec_uint(el: etree._Element, tag: str) -> int | None:
    text = text_of(el.find(tag))
    if text is None:
        return None
    value = parse_uint(text)
    if value is None:
        raise xml_error(
            f"Invalid value for launch security {tag}: expected an unsigned integer, got '{text}'",
            field=f"launchSecurity/{tag}",
            value=text,
        )
    return value


def _parse_secret_refs(root: etree._Element) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    ext = root.find(f"metadata/{{{NS}}}launchSecurity")
    if ext is None:
        return None, None
    found: list[uuid.UUID | None] = []
    for tag in ("dhCertSecret", "sessionSecret"):
        ref = ext.find(f"{{{NS}}}{tag}")
        if ref is None:
            found.append(None)
            continue
        text = ref.get("uuid")
        if text is None:
            raise xml_error(
                f"Missing required attribute 'uuid' in element '{NS_PREFIX}:{tag}'",
                field=f"metadata/{tag}",
            )
        found.append(parse_uuid(text, f"metadata/{tag}/@uuid"))
    return found[0], found[1]
