"""The model written back into the document it came from, in place; new elements go where
libvirt's formatter puts them."""

from __future__ import annotations

from lxml import etree  # type: ignore[import-untyped]

from sevlaunch.host.domxml.checks import NS, NS_PREFIX, words
from sevlaunch.host.domxml.model import CpuConfig, Domain, Loader, Nvram, OsConfig
from sevlaunch.host.domxml.security import LaunchSecurity
from sevlaunch.host.domxml.write_devices import write_devices
from sevlaunch.host.domxml.xmledit import ensure, insert, set_attr, set_text

# The order libvirt's formatter writes elements in; new elements go where libvirt puts them.
_TOP_ORDER = words(
    "name uuid genid title description metadata maxMemory memory currentMemory "
    "blkiotune memtune memoryBacking vcpu vcpus iothreads iothreadids defaultiothread "
    "cputune numatune resource sysinfo bootloader bootloader_args os idmap features "
    "cpu clock on_poweroff on_reboot on_crash on_lockfailure pm perf devices seclabel "
    "keywrap launchSecurity"
)
_OS_ORDER = words(
    "type firmware loader nvram kernel initrd cmdline shim dtb root boot bootmenu smbios bios acpi"
)
_LSEC_ORDER = words(
    "cbitpos reducedPhysBits policy handle dhCert session guestVisibleWorkarounds idBlock "
    "idAuth hostData"
)


def write_domain(root: etree._Element, dom: Domain) -> None:
    root.set("type", dom.type)
    set_text(root, "name", dom.name, _TOP_ORDER)
    set_text(root, "uuid", None if dom.uuid is None else str(dom.uuid), _TOP_ORDER)
    _write_memory(root, "memory", dom.memory_kib)
    _write_memory(root, "currentMemory", dom.current_memory_kib)
    vcpu = set_text(root, "vcpu", str(dom.vcpus), _TOP_ORDER)
    if vcpu is not None and vcpu.get("placement") is None:
        vcpu.set("placement", "static")
    _write_os(ensure(root, "os", _TOP_ORDER), dom.os)
    _write_features(root, dom.acpi)
    _write_cpu(root, dom.cpu)
    _write_clock(root, dom.clock_offset)
    write_devices(root, dom, ensure(root, "devices", _TOP_ORDER) if _has_devices(dom) else None)
    _write_launch_security(root, dom.launch_security)
    _write_secret_refs(root, dom.launch_security)
    _write_fw_cfg(root, dom)


def _write_fw_cfg(root: etree._Element, dom: Domain) -> None:
    """``<sysinfo type='fwcfg'>``: replaced by the model's entries (other sysinfo kept)."""
    for old in root.findall("sysinfo"):
        if old.get("type") == "fwcfg":
            root.remove(old)
    if not dom.fw_cfg:
        return
    el = etree.Element("sysinfo", type="fwcfg")
    insert(root, el, _TOP_ORDER)
    for entry in dom.fw_cfg:
        item = etree.SubElement(el, "entry", name=entry.name)
        if entry.file is not None:
            item.set("file", entry.file)
        else:
            item.text = entry.value


def _write_memory(root: etree._Element, tag: str, kib: int | None) -> None:
    el = set_text(root, tag, None if kib is None else str(kib), _TOP_ORDER)
    if el is not None:
        el.set("unit", "KiB")


def _write_os(el: etree._Element, os_cfg: OsConfig) -> None:
    set_attr(el, "firmware", os_cfg.firmware)
    type_el = ensure(el, "type", _OS_ORDER)
    type_el.text = os_cfg.type
    set_attr(type_el, "arch", os_cfg.arch)
    set_attr(type_el, "machine", os_cfg.machine)
    _write_loader(el, os_cfg.loader)
    _write_nvram(el, os_cfg.nvram)
    for old in el.findall("boot"):
        el.remove(old)
    for dev in os_cfg.boot_devs:
        insert(el, etree.Element("boot", dev=dev), _OS_ORDER)
    set_text(el, "kernel", os_cfg.kernel, _OS_ORDER)
    set_text(el, "initrd", os_cfg.initrd, _OS_ORDER)
    set_text(el, "cmdline", os_cfg.cmdline, _OS_ORDER)


def _write_loader(os_el: etree._Element, loader: Loader | None) -> None:
    if loader is None:
        set_text(os_el, "loader", None, _OS_ORDER)
        return
    el = ensure(os_el, "loader", _OS_ORDER)
    el.text = loader.path
    set_attr(el, "readonly", loader.readonly)
    set_attr(el, "type", loader.type)
    set_attr(el, "stateless", loader.stateless)


def _write_nvram(os_el: etree._Element, nvram: Nvram | None) -> None:
    if nvram is None:
        set_text(os_el, "nvram", None, _OS_ORDER)
        return
    el = ensure(os_el, "nvram", _OS_ORDER)
    if nvram.path is not None or el.find("source") is None:
        for sub in list(el):
            el.remove(sub)
        el.text = nvram.path
    set_attr(el, "template", nvram.template)


def _write_cpu(root: etree._Element, cpu: CpuConfig | None) -> None:
    if cpu is None:
        set_text(root, "cpu", None, _TOP_ORDER)
        return
    el = ensure(root, "cpu", _TOP_ORDER)
    set_attr(el, "mode", cpu.mode)
    model = set_text(el, "model", cpu.model, ("model",))
    if model is not None:
        el.remove(model)
        el.insert(0, model)


def _write_launch_security(root: etree._Element, lsec: LaunchSecurity | None) -> None:
    if lsec is None:
        set_text(root, "launchSecurity", None, _TOP_ORDER)
        return
    el = ensure(root, "launchSecurity", _TOP_ORDER)
    if el.get("type") != lsec.type:
        el.clear()
    el.set("type", lsec.type)
    set_attr(el, "kernelHashes", lsec.kernel_hashes)
    for tag, value in (
        ("cbitpos", lsec.cbitpos),
        ("reducedPhysBits", lsec.reduced_phys_bits),
    ):
        set_text(el, tag, None if value is None else str(value), _LSEC_ORDER)
    set_text(el, "policy", lsec.policy_text, _LSEC_ORDER)
    set_text(el, "dhCert", lsec.dh_cert, _LSEC_ORDER)
    set_text(el, "session", lsec.session, _LSEC_ORDER)
    set_attr(el, "authorKey", lsec.author_key)
    set_attr(el, "vcek", lsec.vcek)
    for tag, text in (
        ("guestVisibleWorkarounds", lsec.guest_visible_workarounds),
        ("idBlock", lsec.id_block),
        ("idAuth", lsec.id_auth),
        ("hostData", lsec.host_data),
    ):
        set_text(el, tag, text, _LSEC_ORDER)


def _write_secret_refs(root: etree._Element, lsec: LaunchSecurity | None) -> None:
    refs = (
        ("dhCertSecret", None if lsec is None else lsec.dh_cert_secret),
        ("sessionSecret", None if lsec is None else lsec.session_secret),
    )
    metadata = root.find("metadata")
    ext = None if metadata is None else metadata.find(f"{{{NS}}}launchSecurity")
    if not any(ref for _, ref in refs):
        if metadata is not None and ext is not None:
            metadata.remove(ext)
            if len(metadata) == 0:
                root.remove(metadata)
        return
    if metadata is None:
        metadata = ensure(root, "metadata", _TOP_ORDER)
    if ext is None:
        ext = etree.SubElement(metadata, f"{{{NS}}}launchSecurity", nsmap={NS_PREFIX: NS})
    for tag, ref in refs:
        for old in ext.findall(f"{{{NS}}}{tag}"):
            ext.remove(old)
        if ref is not None:
            etree.SubElement(ext, f"{{{NS}}}{tag}", uuid=str(ref))


def _has_devices(dom: Domain) -> bool:
    return bool(dom.emulator or dom.disks or dom.serials or dom.controllers or dom.memballoon)


def _write_features(root: etree._Element, acpi: bool) -> None:
    features = root.find("features")
    if acpi:
        ensure(ensure(root, "features", _TOP_ORDER), "acpi", ("acpi",))
    elif features is not None:
        set_text(features, "acpi", None, ("acpi",))
        if len(features) == 0:
            root.remove(features)


def _write_clock(root: etree._Element, offset: str | None) -> None:
    if offset is None:
        set_text(root, "clock", None, _TOP_ORDER)  # its timers go with it: they need an offset
        return
    ensure(root, "clock", _TOP_ORDER).set("offset", offset)
