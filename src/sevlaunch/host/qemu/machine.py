"""The head of the command line, in libvirt 9.0's order: ``-name``, ``-S``, the master key,
the pflash loader's ``-blockdev`` nodes, ``-machine``, ``-accel``, ``-cpu``, ``-bios``, memory,
``-smp``, ``-uuid``, ``-fw_cfg`` (sysinfo fwcfg), ``-display none``, the defaults off, the monitor, ``-rtc``,
``-no-shutdown``, ``-no-acpi``, ``-boot strict=on`` and the direct kernel boot."""

from __future__ import annotations

from pathlib import PurePosixPath

from sevlaunch.host.domxml import Domain
from sevlaunch.host.qemu.devices import blockdev_pair
from sevlaunch.host.qemu.plan import compact_json, esc, unsupported
from sevlaunch.host.qemu.sev import fw_cfg_args

MEMORY_BACKEND_ID = "pc.ram"
MASTER_KEY = "master-key.aes"
_CPU_BY_MODE = {"host-passthrough": "host,migratable=on", "maximum": "max"}


def head_args(domain: Domain, lib_dir: str, monitor_socket: str) -> list[str]:
    argv = ["-name", f"guest={esc(domain.name)},debug-threads=on", "-S"]
    master = {
        "qom-type": "secret",
        "id": "masterKey0",
        "format": "raw",
        "file": str(PurePosixPath(lib_dir) / MASTER_KEY),
    }
    argv += ["-object", compact_json(master)]
    argv += _pflash_blockdevs(domain)
    argv += ["-machine", machine_opts(domain), "-accel", "kvm" if domain.type == "kvm" else "tcg"]
    argv += ["-cpu", cpu_option(domain)]
    loader = domain.os.loader
    if loader is not None and loader.path is not None and loader.type != "pflash":
        argv += ["-bios", loader.path]
    argv += _memory_args(domain)
    n = domain.vcpus
    argv += ["-smp", f"{n},sockets={n},cores=1,threads=1"]
    if domain.uuid is not None:
        argv += ["-uuid", str(domain.uuid)]
    argv += fw_cfg_args(domain)
    argv += ["-display", "none", "-no-user-config", "-nodefaults"]
    argv += [
        "-chardev",
        f"socket,id=charmonitor,path={esc(monitor_socket)},server=on,wait=off",
        "-mon",
        "chardev=charmonitor,id=monitor,mode=control",
    ]
    argv += ["-rtc", f"base={domain.clock_offset or 'utc'}", "-no-shutdown"]
    if not domain.acpi:
        argv.append("-no-acpi")
    argv += ["-boot", "strict=on"]
    for option, value in (
        ("-kernel", domain.os.kernel),
        ("-initrd", domain.os.initrd),
        ("-append", domain.os.cmdline),
    ):
        if value is not None:
            argv += [option, value]
    return argv


def machine_opts(domain: Domain) -> str:
    opts = [domain.os.machine or "pc", "usb=off", "dump-guest-core=off"]
    opts.append(f"memory-backend={MEMORY_BACKEND_ID}")
    if domain.launch_security is not None:
        opts.append("confidential-guest-support=lsec0")
    loader = domain.os.loader
    if loader is not None and loader.type == "pflash":
        opts.append("pflash0=libvirt-pflash0-format")
        if _nvram(domain) is not None:
            opts.append("pflash1=libvirt-pflash1-format")
    return ",".join(opts)


def cpu_option(domain: Domain) -> str:
    """``qemu64`` when the domain says nothing, as libvirt 9.0 on x86."""
    cpu = domain.cpu
    if cpu is None:
        return "qemu64"
    if cpu.mode in _CPU_BY_MODE:
        return _CPU_BY_MODE[cpu.mode]
    if cpu.mode == "host-model":
        raise unsupported(
            "CPU mode 'host-model' is not supported by the sevlaunch host manager: libvirt "
            "expands it from the host's CPU; use host-passthrough or a custom <model>",
            field="cpu/@mode",
            value=cpu.mode,
        )
    return cpu.model or "qemu64"


def _memory_args(domain: Domain) -> list[str]:
    mib = -(-domain.memory_kib // 1024)  # libvirt aligns guest RAM up to 1 MiB on x86
    backend = {"qom-type": "memory-backend-ram", "id": MEMORY_BACKEND_ID, "size": mib << 20}
    return ["-m", str(mib), "-object", compact_json(backend), "-overcommit", "mem-lock=off"]


def _nvram(domain: Domain) -> str | None:
    loader, nvram = domain.os.loader, domain.os.nvram
    if loader is None or loader.stateless or nvram is None:
        return None
    return nvram.path


def _pflash_blockdevs(domain: Domain) -> list[str]:
    loader = domain.os.loader
    if loader is None or loader.type != "pflash" or loader.path is None:
        return []
    argv = blockdev_pair("libvirt-pflash0", loader.path, read_only=bool(loader.readonly))
    nvram = _nvram(domain)
    if nvram is not None:
        argv += blockdev_pair("libvirt-pflash1", nvram, read_only=False)
    return argv
