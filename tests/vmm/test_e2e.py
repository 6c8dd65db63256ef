"""``sevlaunch-vmm`` driven through the PyPI ``qemu.qmp`` client against a real platform service.

The launch flow is the one a guest owner and libvirt run against QEMU: the owner CLI makes the
session, the VMM starts paused, the measurement is validated with the TIK, the secret is
injected, ``cont`` boots the guest model, which unlocks the disk with the ``luks-key`` secret.
"""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sevlaunch.crypto.truststore import TrustStore
from sevlaunch.formats.secret import LUKS_KEY_GUID
from sevlaunch.owner.secret import build_packet, secret_table
from sevlaunch.owner.verify import trust_store, verify_pdh_and_chain
from sevlaunch.vmm.guest import HALT_REASON
from sevlaunch.vmm.machine import GUEST_BOOTED_EVENT
from tests.vmm.conftest import (
    CMDLINE,
    LABEL,
    PASSPHRASE,
    SEVLAUNCH,
    LaunchFiles,
    Media,
    Owner,
    PlatformProcess,
    VmmProcess,
    next_event,
    qmp_connect,
    qmp_error,
    run_async,
    vmm_argv,
)


def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SEVLAUNCH, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def _cli_session(owner: Owner, out: Path, policy: str) -> LaunchFiles:
    """``sevlaunch owner session`` as the guest owner runs it (keys read back from its files)."""
    from sevlaunch.crypto.launch import TransportKeys

    done = _cli(
        "owner", "session", "--chain", owner.chain, "--trust-root", owner.ark,
        "--policy", policy, "--name", "vm", "--out", out,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    keys = TransportKeys((out / "vm_tek.bin").read_bytes(), (out / "vm_tik.bin").read_bytes())
    return LaunchFiles(out / "vm_godh.b64", out / "vm_session.b64", keys, int(policy, 0))


def _validate(work: Path, media: Media, measurement: str, sev: dict[str, Any]) -> None:
    done = _cli(
        "owner", "validate", "--measurement", measurement,
        "--api-major", sev["api-major"], "--api-minor", sev["api-minor"],
        "--build-id", sev["build-id"], "--policy", sev["policy"],
        "--tik", work / "vm_tik.bin", "--tek", work / "vm_tek.bin",
        "--firmware", media.firmware, "--kernel", media.kernel, "--initrd", media.initrd,
        "--append", CMDLINE,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def _secret(work: Path, media: Media, measurement: str) -> dict[str, str]:
    done = _cli(
        "owner", "secret", "--tek", work / "vm_tek.bin", "--tik", work / "vm_tik.bin",
        "--measurement", measurement, "--secret", f"luks-key:{media.passphrase}",
        "--header-out", work / "hdr.b64", "--payload-out", work / "payload.b64",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {
        "packet-header": (work / "hdr.b64").read_text().strip(),
        "secret": (work / "payload.b64").read_text().strip(),
    }


def test_attested_launch_unlocks_the_disk(vmm: VmmProcess, media: Media, owner: Owner) -> None:
    launch = _cli_session(owner, vmm.work, "0x1")
    vmm.start(vmm_argv(vmm.work, media, launch))

    async def drive() -> None:
        qmp = await qmp_connect(vmm.qmp)
        assert await qmp.execute("query-status") == {"status": "prelaunch", "running": False}
        sev = await qmp.execute("query-sev")
        assert (sev["state"], sev["policy"], sev["sev-type"]) == ("launch-secret", 1, "sev")
        assert (sev["api-major"], sev["api-minor"], sev["build-id"]) == (0, 24, 15)
        measurement = (await qmp.execute("query-sev-launch-measure"))["data"]
        assert len(base64.b64decode(measurement)) == 48
        _validate(vmm.work, media, measurement, sev)
        assert (
            await qmp.execute("sev-inject-launch-secret", _secret(vmm.work, media, measurement))
            == {}
        )
        await qmp.execute("cont")
        booted = await next_event(qmp, GUEST_BOOTED_EVENT)
        assert booted == {"halted": False, "secrets": ["luks-key"], "disk-label": LABEL}
        assert (await qmp.execute("query-sev"))["state"] == "running"
        late = await qmp_error(
            qmp, "sev-inject-launch-secret", _secret(vmm.work, media, measurement)
        )
        assert late == "GenericError: SEV: Not in correct state. (LSECRET) 3"
        await qmp.execute("system_powerdown")
        assert await next_event(qmp, "SHUTDOWN") == {"guest": True, "reason": "guest-shutdown"}
        await qmp.disconnect()

    run_async(drive)
    assert vmm.wait() == 0
    console = vmm.console
    assert str(LUKS_KEY_GUID) in console
    assert f"disk label '{LABEL}'" in console
    assert PASSPHRASE.decode() not in console  # GUIDs and sizes only, never values


def test_measurement_is_stable_while_paused_and_injection_may_repeat(
    vmm: VmmProcess, media: Media, owner: Owner
) -> None:
    """QEMU allows several injections while in launch-secret; the last one is what boots."""
    launch = owner.session(vmm.work)
    vmm.start(vmm_argv(vmm.work, media, launch))

    async def drive() -> None:
        qmp = await qmp_connect(vmm.qmp)
        first = (await qmp.execute("query-sev-launch-measure"))["data"]
        assert (await qmp.execute("query-sev-launch-measure"))["data"] == first
        raw = base64.b64decode(first)
        for value in (b"wrong passphrase", PASSPHRASE):
            table = secret_table([("luks-key", value)])
            packet = build_packet(table, launch.keys, raw, rng=os.urandom)
            args = {"packet-header": packet.header_b64, "secret": packet.payload_b64}
            await qmp.execute("sev-inject-launch-secret", args)
        await qmp.execute("cont")
        assert (await next_event(qmp, GUEST_BOOTED_EVENT))["disk-label"] == LABEL
        await qmp.execute("quit")

    run_async(drive)
    assert vmm.wait() == 0


def test_bad_base64_in_qmp_arguments_is_refused_and_the_launch_goes_on(
    vmm: VmmProcess, media: Media, owner: Owner
) -> None:
    launch = owner.session(vmm.work)
    vmm.start(vmm_argv(vmm.work, media, launch))

    async def drive() -> None:
        qmp = await qmp_connect(vmm.qmp)
        raw = base64.b64decode((await qmp.execute("query-sev-launch-measure"))["data"])
        packet = build_packet(
            secret_table([("luks-key", PASSPHRASE)]), launch.keys, raw, rng=os.urandom
        )
        good = {"packet-header": packet.header_b64, "secret": packet.payload_b64}
        bad_header = await qmp_error(
            qmp, "sev-inject-launch-secret", {**good, "packet-header": "**"}
        )
        assert bad_header == "GenericError: SEV: Failed to decode sequence header"
        bad_data = await qmp_error(qmp, "sev-inject-launch-secret", {**good, "secret": "a=b"})
        assert bad_data == "GenericError: SEV: Failed to decode data"
        tampered = base64.b64encode(b"\xff" + packet.payload[1:]).decode()
        refused = await qmp_error(qmp, "sev-inject-launch-secret", {**good, "secret": tampered})
        assert refused.startswith("GenericError: SEV: failed to inject secret ret=1 fw_error=")
        assert (await qmp.execute("query-sev"))["state"] == "launch-secret"
        await qmp.execute("sev-inject-launch-secret", good)
        await qmp.execute("cont")
        assert (await next_event(qmp, GUEST_BOOTED_EVENT))["disk-label"] == LABEL
        await qmp.execute("quit")

    run_async(drive)
    assert vmm.wait() == 0


def test_swapped_kernel_halts_the_guest(vmm: VmmProcess, media: Media, owner: Owner) -> None:
    """The host hands the guest another kernel than the one hashed and measured: OVMF halts."""
    kernel = vmm.work / "vmlinuz"
    kernel.write_bytes(media.kernel.read_bytes())
    vmm.start(vmm_argv(vmm.work, media, owner.session(vmm.work), kernel=kernel))

    async def drive() -> None:
        qmp = await qmp_connect(vmm.qmp)
        kernel.write_bytes(b"\x7fELF a kernel the owner never measured")
        await qmp.execute("cont")
        assert await next_event(qmp, GUEST_BOOTED_EVENT) == {"halted": True, "reason": HALT_REASON}
        assert (await qmp.execute("query-status"))["status"] == "running"
        await qmp.execute("quit")

    run_async(drive)
    assert "BlobVerifierSevHashes: kernel hash does not match the hashes table" in vmm.console
    assert "initrd hash ok" in vmm.console
    assert "OVMF: halting" in vmm.console
    assert "Linux: boot complete" not in vmm.console


def test_kernel_hashes_off_with_a_kernel_is_refused_by_the_guest(
    vmm: VmmProcess, media: Media, owner: Owner
) -> None:
    vmm.start(vmm_argv(vmm.work, media, owner.session(vmm.work), kernel_hashes=False))

    async def drive() -> None:
        qmp = await qmp_connect(vmm.qmp)
        await qmp.execute("cont")
        assert await next_event(qmp, GUEST_BOOTED_EVENT) == {"halted": True, "reason": HALT_REASON}
        await qmp.execute("quit")

    run_async(drive)
    assert "hashes table is missing or malformed" in vmm.console
    assert "OVMF: halting" in vmm.console


def test_policy_session_mismatch_fails_launch_start(
    vmm: VmmProcess, media: Media, owner: Owner
) -> None:
    launch = owner.session(vmm.work, policy=0x1)
    done = vmm.run(vmm_argv(vmm.work, media, launch, policy=0x3))
    assert done.returncode == 1
    assert "LAUNCH_START ret=1 fw_error=11 'Bad measurement'" in done.stderr
    assert not Path(vmm.qmp).exists()


@pytest.mark.parametrize("which", ["godh", "session"])
def test_missing_launch_blob_file_fails_at_start(
    vmm: VmmProcess, media: Media, owner: Owner, which: str
) -> None:
    launch = owner.session(vmm.work)
    getattr(launch, which).unlink()
    done = vmm.run(vmm_argv(vmm.work, media, launch))
    assert done.returncode == 1
    assert f"SEV: Failed to read '{getattr(launch, which)}'" in done.stderr
    assert "No such file or directory" in done.stderr


@pytest.mark.parametrize(
    ("which", "content", "expected"),
    [
        ("godh", "%%% not base64 at all %%%", "SEV: failed to decode dh-cert-file"),
        ("session", "%%% not base64 at all %%%", "SEV: failed to decode session-file"),
        # decoded leniently, as glib does; the firmware then refuses the short blob
        ("session", "c2Vzc2lvbg=x=", "LAUNCH_START ret=1 fw_error=4 'Buffer too small'"),
        ("godh", "", "LAUNCH_START ret=1 fw_error=0"),
        ("godh", "AAAA", "LAUNCH_START ret=1 fw_error=4 'Buffer too small'"),
    ],
)
def test_bad_base64_in_launch_blob_files_fails_at_start(
    vmm: VmmProcess, media: Media, owner: Owner, which: str, content: str, expected: str
) -> None:
    launch = owner.session(vmm.work)
    getattr(launch, which).write_text(content)
    done = vmm.run(vmm_argv(vmm.work, media, launch))
    assert done.returncode == 1
    assert expected in done.stderr


def test_machine_none_reports_capabilities_that_verify(
    vmm: VmmProcess, platform: PlatformProcess
) -> None:
    """What libvirt probes with ``-machine none``: the PDH and chain verify to the ARK."""
    argv = ["-machine", "none", "-qmp", f"unix:{vmm.qmp},server=on,wait=off", "-nodefaults"]
    vmm.start(argv)

    async def drive() -> dict[str, Any]:
        qmp = await qmp_connect(vmm.qmp)
        caps: dict[str, Any] = await qmp.execute("query-sev-capabilities")
        assert await qmp_error(qmp, "query-sev") == "GenericError: SEV feature is not available"
        await qmp.execute("quit")
        return caps

    caps = run_async(drive)
    assert vmm.wait() == 0
    with platform.client() as client:
        ark, signed_cek, chip_id = client.ark(), client.signed_cek(), client.get_id()
    trust: TrustStore = trust_store([ark])
    verified = verify_pdh_and_chain(
        base64.b64decode(caps["pdh"]),
        base64.b64decode(caps["cert-chain"]),
        trust,
        cek=signed_cek,
        ca=client_ca(platform),
    )
    assert verified.pdh.to_bytes() == base64.b64decode(caps["pdh"])
    assert base64.b64decode(caps["cpu0-id"]) == chip_id[:64]
    assert (caps["cbitpos"], caps["reduced-phys-bits"]) == (47, 1)


def client_ca(platform: PlatformProcess) -> bytes:
    with platform.client() as client:
        return client.ca_chain()
