"""The model written back into the document it came from, in place; new elements go where
libvirt's formatter puts them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lxml import etree  # type: ignore[import-untyped]

from sevlaunch.host.domxml.checks import NS, NS_PREFIX, Item, words
from sevlaunch.host.domxml.devices import DiskConfig, SerialConfig
from sevlaunch.host.domxml.model import CpuConfig, Domain, Loader, Nvram, OsConfig
from sevlaunch.host.domxml.security import LaunchSecurity

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
_DEV_ORDER = words(
    "emulator disk filesystem controller lease hostdev redirdev smartcard interface "
    "input sound audio video graphics parallel serial console channel"
)
_LSEC_ORDER = words("cbitpos reducedPhysBits policy handle dhCert session")
_DISK_ORDER = words("driver source backingStore target readonly")
_SERIAL_ORDER = words("source protocol log target")


def _local(tag: object) -> str | None:
    return tag if isinstance(tag, str) and not tag.startswith("{") else None


def _insert(parent: etree._Element, child: etree._Element, order: Sequence[str]) -> None:
    """Insert ``child`` after the last sibling that libvirt writes before it."""
    tag = child.tag
    before = set(order[: order.index(tag)]) if tag in order else set(order)
    position = 0
    for index, sibling in enumerate(parent):
        if _local(sibling.tag) in before or sibling.tag == tag:
            position = index + 1
    parent.insert(position, child)


def _ensure(parent: etree._Element, tag: str, order: Sequence[str]) -> etree._Element:
    el = parent.find(tag)
    if el is None:
        el = etree.Element(tag)
        _insert(parent, el, order)
    return el


def _set_text(
    parent: etree._Element, tag: str, text: str | None, order: Sequence[str]
) -> etree._Element | None:
    if text is None:
        for el in parent.findall(tag):
            parent.remove(el)
        return None
    el = _ensure(parent, tag, order)
    for sub in list(el):
        el.remove(sub)
    el.text = text
    return el


def _set_attr(el: etree._Element, name: str, value: str | bool | None) -> None:
    if value is None:
        el.attrib.pop(name, None)
    elif isinstance(value, bool):
        el.set(name, "yes" if value else "no")
    else:
        el.set(name, value)


def write_domain(root: etree._Element, dom: Domain) -> None:
    root.set("type", dom.type)
    _set_text(root, "name", dom.name, _TOP_ORDER)
    _set_text(root, "uuid", None if dom.uuid is None else str(dom.uuid), _TOP_ORDER)
    _write_memory(root, "memory", dom.memory_kib)
    _write_memory(root, "currentMemory", dom.current_memory_kib)
    vcpu = _set_text(root, "vcpu", str(dom.vcpus), _TOP_ORDER)
    if vcpu is not None and vcpu.get("placement") is None:
        vcpu.set("placement", "static")
    _write_os(_ensure(root, "os", _TOP_ORDER), dom.os)
    _write_cpu(root, dom.cpu)
    _write_devices(root, dom)
    _write_launch_security(root, dom.launch_security)
    _write_secret_refs(root, dom.launch_security)


def _write_memory(root: etree._Element, tag: str, kib: int | None) -> None:
    el = _set_text(root, tag, None if kib is None else str(kib), _TOP_ORDER)
    if el is not None:
        el.set("unit", "KiB")


def _write_os(el: etree._Element, os_cfg: OsConfig) -> None:
    _set_attr(el, "firmware", os_cfg.firmware)
    type_el = _set_text(el, "type", os_cfg.type, _OS_ORDER)
    assert type_el is not None
    _set_attr(type_el, "arch", os_cfg.arch)
    _set_attr(type_el, "machine", os_cfg.machine)
    _write_loader(el, os_cfg.loader)
    _write_nvram(el, os_cfg.nvram)
    _set_text(el, "kernel", os_cfg.kernel, _OS_ORDER)
    _set_text(el, "initrd", os_cfg.initrd, _OS_ORDER)
    _set_text(el, "cmdline", os_cfg.cmdline, _OS_ORDER)


def _write_loader(os_el: etree._Element, loader: Loader | None) -> None:
    if loader is None:
        _set_text(os_el, "loader", None, _OS_ORDER)
        return
    el = _ensure(os_el, "loader", _OS_ORDER)
    el.text = loader.path
    _set_attr(el, "readonly", loader.readonly)
    _set_attr(el, "type", loader.type)
    _set_attr(el, "stateless", loader.stateless)


def _write_nvram(os_el: etree._Element, nvram: Nvram | None) -> None:
    if nvram is None:
        _set_text(os_el, "nvram", None, _OS_ORDER)
        return
    el = _ensure(os_el, "nvram", _OS_ORDER)
    if nvram.path is not None or el.find("source") is None:
        for sub in list(el):
            el.remove(sub)
        el.text = nvram.path
    _set_attr(el, "template", nvram.template)


def _write_cpu(root: etree._Element, cpu: CpuConfig | None) -> None:
    if cpu is None:
        _set_text(root, "cpu", None, _TOP_ORDER)
        return
    el = _ensure(root, "cpu", _TOP_ORDER)
    _set_attr(el, "mode", cpu.mode)
    model = _set_text(el, "model", cpu.model, ("model",))
    if model is not None:
        el.remove(model)
        el.insert(0, model)


def _write_devices(root: etree._Element, dom: Domain) -> None:
    devices = root.find("devices")
    if devices is None:
        if dom.emulator is None and not dom.disks and not dom.serials:
            return
        devices = _ensure(root, "devices", _TOP_ORDER)
    _set_text(devices, "emulator", dom.emulator, _DEV_ORDER)
    _sync_list(devices, "disk", dom.disks, _write_disk)
    _sync_list(devices, "serial", dom.serials, _write_serial)


def _sync_list(
    devices: etree._Element,
    tag: str,
    items: Sequence[Item],
    write: Callable[[etree._Element, Item], None],
) -> None:
    """Write item i into the i-th ``<tag>``; add or drop elements at the end of the run."""
    existing = devices.findall(tag)
    for index, item in enumerate(items):
        if index < len(existing):
            el = existing[index]
        else:
            el = etree.Element(tag)
            _insert(devices, el, _DEV_ORDER)
        write(el, item)
    for el in existing[len(items) :]:
        devices.remove(el)


def _write_disk(el: etree._Element, disk: DiskConfig) -> None:
    el.set("type", disk.type)
    el.set("device", disk.device)
    if disk.driver_type is not None:
        driver = el.find("driver")
        if driver is None:
            driver = etree.Element("driver", name="qemu")
            _insert(el, driver, _DISK_ORDER)
        driver.set("type", disk.driver_type)
    else:
        driver = el.find("driver")
        if driver is not None:
            driver.attrib.pop("type", None)
    _write_disk_source(el, disk)
    target = _ensure(el, "target", _DISK_ORDER)
    target.set("dev", disk.target_dev)
    _set_attr(target, "bus", disk.target_bus)
    if disk.readonly and el.find("readonly") is None:
        _insert(el, etree.Element("readonly"), _DISK_ORDER)
    elif not disk.readonly:
        _set_text(el, "readonly", None, _DISK_ORDER)


def _write_disk_source(el: etree._Element, disk: DiskConfig) -> None:
    source = el.find("source")
    if disk.type not in ("file", "block"):
        return
    if disk.source is None:
        if source is not None:
            source.attrib.pop("file", None)
            source.attrib.pop("dev", None)
        return
    if source is None:
        source = etree.Element("source")
        _insert(el, source, _DISK_ORDER)
    keep, drop = ("file", "dev") if disk.type == "file" else ("dev", "file")
    source.attrib.pop(drop, None)
    source.set(keep, disk.source)


def _write_serial(el: etree._Element, serial: SerialConfig) -> None:
    el.set("type", serial.type)
    source = el.find("source")
    if serial.path is None:
        if source is not None:
            source.attrib.pop("path", None)
    else:
        if source is None:
            source = etree.Element("source")
            el.insert(0, source)
        source.set("path", serial.path)
    log = el.find("log")
    if serial.log_file is None:
        if log is not None:
            el.remove(log)
        return
    if log is None:
        log = etree.Element("log")
        _insert(el, log, _SERIAL_ORDER)
    log.set("file", serial.log_file)
    if serial.log_append is None:
        log.attrib.pop("append", None)
    else:
        log.set("append", "on" if serial.log_append else "off")


def _write_launch_security(root: etree._Element, lsec: LaunchSecurity | None) -> None:
    if lsec is None:
        _set_text(root, "launchSecurity", None, _TOP_ORDER)
        return
    el = _ensure(root, "launchSecurity", _TOP_ORDER)
    if el.get("type") != lsec.type:
        el.clear()
    el.set("type", lsec.type)
    _set_attr(el, "kernelHashes", lsec.kernel_hashes)
    for tag, value in (
        ("cbitpos", lsec.cbitpos),
        ("reducedPhysBits", lsec.reduced_phys_bits),
    ):
        _set_text(el, tag, None if value is None else str(value), _LSEC_ORDER)
    _set_text(el, "policy", lsec.policy_text, _LSEC_ORDER)
    _set_text(el, "dhCert", lsec.dh_cert, _LSEC_ORDER)
    _set_text(el, "session", lsec.session, _LSEC_ORDER)


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
        metadata = _ensure(root, "metadata", _TOP_ORDER)
    if ext is None:
        ext = etree.SubElement(metadata, f"{{{NS}}}launchSecurity", nsmap={NS_PREFIX: NS})
    for tag, ref in refs:
        for old in ext.findall(f"{{{NS}}}{tag}"):
            ext.remove(old)
        if ref is not None:
            etree.SubElement(ext, f"{{{NS}}}{tag}", uuid=str(ref))
