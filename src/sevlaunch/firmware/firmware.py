"""The :class:`Firmware` facade: ``execute`` for raw command buffers, typed conveniences for
callers that would rather not lay out buffers, persistent state in and out."""

from __future__ import annotations

import os
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import rsa

from sevlaunch.errors import AddressError, FirmwareError
from sevlaunch.firmware import dispatch, identity, persist
from sevlaunch.firmware._core import Core
from sevlaunch.firmware.guest import GuestContext
from sevlaunch.firmware.memory import Memory, Overlay
from sevlaunch.firmware.profiles import Profile
from sevlaunch.firmware.snp import host_ops
from sevlaunch.firmware.snp.api import SnpApi
from sevlaunch.firmware.snp.guest import SnpPlatform
from sevlaunch.firmware.snp.profiles import SnpFirmwareVersion, snp_profile
from sevlaunch.firmware.states import GuestState, PlatformState
from sevlaunch.formats import sevcert
from sevlaunch.formats.commands import (
    ActivateBuffer,
    AttestationBuffer,
    Command,
    CommandBuffer,
    DbgBuffer,
    GetIdBuffer,
    GuestStatusBuffer,
    HandleBuffer,
    InitBuffer,
    InitExBuffer,
    LaunchMeasureBuffer,
    LaunchSecretBuffer,
    LaunchStartBuffer,
    LaunchUpdateBuffer,
    PdhCertExportBuffer,
    PekCertImportBuffer,
    PekCsrBuffer,
    PlatformStatusBuffer,
)
from sevlaunch.formats.session import Measurement
from sevlaunch.formats.status import Status

#: Where the conveniences stage their inputs and outputs (just under 2**47, so the C-bit of
#: every profile is clear). Memory a caller passes is never touched inside this window.
SCRATCH_BASE = 0x7000_0000_0000
SCRATCH_SIZE = 1 << 24
_SLOT = 1 << 20  # each staged input or output gets its own MiB of the window


def _slot(index: int) -> int:
    return SCRATCH_BASE + index * _SLOT


class _NoMemory:
    """The memory of a command that moves no guest data: only the scratch window exists."""

    def read(self, paddr: int, length: int) -> bytes:
        raise AddressError(paddr, length, "this command was given no guest memory")

    def write(self, paddr: int, data: bytes) -> None:
        self.read(paddr, len(data))


class Firmware:
    """An emulated SEV firmware (PSP) for one profile. Not thread-safe: a PSP runs one
    command at a time, and so must its caller."""

    def __init__(
        self,
        profile: Profile,
        *,
        rng: Callable[[int], bytes] = os.urandom,
        state: bytes | None = None,
        rsa_keygen: Callable[[], rsa.RSAPrivateKey] = identity.generate_rsa,
        snp_firmware: SnpFirmwareVersion | None = None,
        roots: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey] | None = None,
    ) -> None:
        """``snp_firmware`` is the SNP firmware installed now (default: the profile's); a
        newer one than the committed one is provisional until SNP_COMMIT. ``roots`` are the
        generation's emulated (ARK, ASK) for a new chip (see :func:`identity.factory`)."""
        ident = (
            identity.factory(rng, profile.api_version, rsa_keygen, roots)
            if state is None
            else persist.decode(state)
        )
        snp_prof = snp_profile(profile.name)
        if snp_prof is not None and snp_firmware is not None:
            snp_prof = snp_prof.with_firmware(snp_firmware)
        self._core = Core(
            profile=profile,
            rng=rng,
            identity=ident,
            snp=SnpPlatform(snp_prof) if snp_prof is not None else None,
            rsa_keygen=rsa_keygen,
        )

    # -- the firmware interface ------------------------------------------------------------

    def execute(self, command: int, buffer: bytes, memory: Memory) -> tuple[Status, bytes]:
        """Run one command on its firmware buffer (doc §0); returns the status and the
        buffer as written back (required lengths on INVALID_LENGTH, outputs on SUCCESS)."""
        status, written, _ = dispatch.execute(self._core, command, buffer, memory)
        return status, written

    def execute_verbose(
        self, command: int, buffer: bytes, memory: Memory
    ) -> tuple[Status, bytes, str]:
        """:meth:`execute` plus a human-readable reason for a failure (empty on success)."""
        return dispatch.execute(self._core, command, buffer, memory)

    def persistent_state(self) -> bytes:
        """Identity, keys, owner, CEK and the emulated ARK/ASK; never guest contexts."""
        return persist.encode(self._core.identity)

    def signed_cek(self) -> bytes:
        """The CEK signed by the emulated ASK: what AMD's key server returns for this chip."""
        return self._core.identity.signed_cek_cert.to_bytes()

    def ca_chain(self) -> bytes:
        """The emulated ASK ‖ ARK in AMD's certificate format (``ask_ark_<gen>.cert``)."""
        ident = self._core.identity
        return ident.ask_cert.to_bytes() + ident.ark_cert.to_bytes()

    def ark(self) -> bytes:
        """The emulated ARK alone, for a trust store (``--trust-root``)."""
        return self._core.identity.ark_cert.to_bytes()

    def snp_host(self, request: bytes, memory: Memory) -> bytes:
        """An SNP host operation (RMPUPDATE, the memory controller, emulated AMD): see
        :mod:`sevlaunch.firmware.snp.host_ops`."""
        return host_ops.run(self._core, request, memory)

    @property
    def snp(self) -> SnpApi:
        """Typed SNP conveniences (they raise FirmwareError like the SEV ones)."""
        return SnpApi(self._core, self._checked)

    @property
    def profile(self) -> Profile:
        return self._core.profile

    @property
    def state(self) -> PlatformState:
        return self._core.state

    @property
    def chip_id(self) -> bytes:
        return self._core.identity.chip_id

    # -- typed conveniences: each builds a buffer, runs it, raises FirmwareError on failure --

    def _run(
        self, command: Command, buf: CommandBuffer | None, memory: Memory | None = None
    ) -> tuple[Overlay, bytes]:
        """Run ``buf`` with a scratch window over ``memory``; returns both and the buffer."""
        mem = Overlay(memory if memory is not None else _NoMemory(), SCRATCH_BASE, SCRATCH_SIZE)
        return mem, self._checked(command, b"" if buf is None else buf.to_bytes(), mem)

    def _checked(self, command: Command, buffer: bytes, memory: Memory) -> bytes:
        status, written, detail = dispatch.execute(self._core, command, buffer, memory)
        if status is not Status.SUCCESS:
            raise FirmwareError(command.name, status, detail)
        return written

    def _stage(self, mem: Overlay, index: int, data: bytes) -> int:
        mem.write(_slot(index), data)
        return _slot(index)

    def init(self, *, es: bool = False) -> None:
        options = InitBuffer.OPTION_ES if es else 0
        self._run(Command.INIT, InitBuffer(options, 0 if not es else 1 << 20, 1 << 20 if es else 0))

    def init_ex(self, *, es: bool = False) -> None:
        options = InitBuffer.OPTION_ES if es else 0
        buf = InitExBuffer(
            options=options, tmr_paddr=1 << 20 if es else 0, tmr_len=1 << 20 if es else 0
        )
        self._run(Command.INIT_EX, buf)

    def shutdown(self) -> None:
        self._run(Command.SHUTDOWN, None)

    def platform_reset(self) -> None:
        self._run(Command.PLATFORM_RESET, None)

    def platform_status(self) -> PlatformStatusBuffer:
        _, written = self._run(Command.PLATFORM_STATUS, PlatformStatusBuffer())
        return PlatformStatusBuffer.from_bytes(written)

    def pek_gen(self) -> None:
        self._run(Command.PEK_GEN, None)

    def pdh_gen(self) -> None:
        self._run(Command.PDH_GEN, None)

    def df_flush(self) -> None:
        self._run(Command.DF_FLUSH, None)

    def pek_csr(self) -> bytes:
        """The unsigned PEK certificate for an owner to sign with its OCA."""
        mem, _ = self._run(Command.PEK_CSR, PekCsrBuffer(_slot(0), sevcert.SIZE))
        return mem.read(_slot(0), sevcert.SIZE)

    def pek_cert_import(self, pek: bytes, oca: bytes) -> None:
        mem = Overlay(_NoMemory(), SCRATCH_BASE, SCRATCH_SIZE)
        buf = PekCertImportBuffer(
            self._stage(mem, 0, pek), len(pek), self._stage(mem, 1, oca), len(oca)
        )
        self._checked(Command.PEK_CERT_IMPORT, buf.to_bytes(), mem)

    def pdh_cert_export(self) -> tuple[bytes, bytes]:
        """``(PDH, PEK ‖ OCA ‖ CEK)`` exactly as the firmware writes them (CEK unsigned)."""
        chain = 3 * sevcert.SIZE
        mem, _ = self._run(
            Command.PDH_CERT_EXPORT,
            PdhCertExportBuffer(_slot(0), sevcert.SIZE, _slot(1), chain),
        )
        return mem.read(_slot(0), sevcert.SIZE), mem.read(_slot(1), chain)

    def get_id(self) -> bytes:
        mem, _ = self._run(Command.GET_ID, GetIdBuffer(_slot(0), identity.CHIP_ID_SIZE))
        return mem.read(_slot(0), identity.CHIP_ID_SIZE)

    def launch_start(
        self,
        policy: int,
        godh: bytes | None = None,
        session: bytes | None = None,
        *,
        share: int = 0,
    ) -> int:
        """Create a guest; ``share`` names a guest whose key to share. Returns the handle."""
        mem = Overlay(_NoMemory(), SCRATCH_BASE, SCRATCH_SIZE)
        buf = LaunchStartBuffer(handle=share, policy=policy)
        if godh is not None:
            buf = LaunchStartBuffer(share, policy, self._stage(mem, 0, godh), len(godh))
        if session is not None:
            buf = LaunchStartBuffer(
                share,
                policy,
                buf.godh_paddr,
                buf.godh_len,
                self._stage(mem, 1, session),
                len(session),
            )
        written = self._checked(Command.LAUNCH_START, buf.to_bytes(), mem)
        return LaunchStartBuffer.from_bytes(written).handle

    def activate(self, handle: int, asid: int) -> None:
        self._run(Command.ACTIVATE, ActivateBuffer(handle, asid))

    def deactivate(self, handle: int) -> None:
        self._run(Command.DEACTIVATE, HandleBuffer(handle))

    def decommission(self, handle: int) -> None:
        self._run(Command.DECOMMISSION, HandleBuffer(handle))

    def guest_status(self, handle: int) -> GuestStatusBuffer:
        _, written = self._run(Command.GUEST_STATUS, GuestStatusBuffer(handle))
        return GuestStatusBuffer.from_bytes(written)

    def launch_update_data(self, handle: int, memory: Memory, paddr: int, length: int) -> None:
        """Measure ``[paddr, paddr + length)`` of ``memory`` and encrypt it in place."""
        self._run(Command.LAUNCH_UPDATE_DATA, LaunchUpdateBuffer(handle, paddr, length), memory)

    def launch_update_vmsa(self, handle: int, memory: Memory, paddr: int) -> None:
        self._run(Command.LAUNCH_UPDATE_VMSA, LaunchUpdateBuffer(handle, paddr, 4096), memory)

    def launch_measure(self, handle: int) -> Measurement:
        mem, _ = self._run(Command.LAUNCH_MEASURE, LaunchMeasureBuffer(handle, _slot(0), 0x30))
        return Measurement.from_bytes(mem.read(_slot(0), 0x30))

    def launch_secret(
        self, handle: int, header: bytes, ciphertext: bytes, memory: Memory, guest_paddr: int
    ) -> None:
        """Inject a secret packet (header and transport data) at ``guest_paddr``."""
        mem = Overlay(memory, SCRATCH_BASE, SCRATCH_SIZE)
        buf = LaunchSecretBuffer(
            handle,
            self._stage(mem, 0, header),
            len(header),
            guest_paddr,
            len(ciphertext),
            self._stage(mem, 1, ciphertext),
            len(ciphertext),
        )
        self._checked(Command.LAUNCH_SECRET, buf.to_bytes(), mem)

    def launch_finish(self, handle: int) -> None:
        self._run(Command.LAUNCH_FINISH, HandleBuffer(handle))

    def attestation(self, handle: int, mnonce: bytes) -> bytes:
        """The 0xD0-byte PEK-signed report for ``mnonce``."""
        mem, _ = self._run(Command.ATTESTATION, AttestationBuffer(handle, _slot(0), mnonce, 0xD0))
        return mem.read(_slot(0), 0xD0)

    def dbg_decrypt(self, handle: int, memory: Memory, paddr: int, length: int) -> bytes:
        """Plaintext of guest memory (16-byte aligned), if the policy allows debugging."""
        mem, _ = self._run(Command.DBG_DECRYPT, DbgBuffer(handle, paddr, _slot(0), length), memory)
        return mem.read(_slot(0), length)

    def dbg_encrypt(self, handle: int, memory: Memory, paddr: int, data: bytes) -> None:
        mem = Overlay(memory, SCRATCH_BASE, SCRATCH_SIZE)
        buf = DbgBuffer(handle, self._stage(mem, 0, data), paddr, len(data))
        self._checked(Command.DBG_ENCRYPT, buf.to_bytes(), mem)

    # -- not firmware commands: the memory controller, for the emulated CPU ----------------

    def _running_guest(self, handle: int) -> GuestContext:
        guest = self._core.guests.get(handle)
        if guest is None:
            raise FirmwareError("guest access", Status.INVALID_GUEST, f"no guest {handle}")
        if not guest.active:
            raise FirmwareError("guest access", Status.INACTIVE, f"guest {handle} has no ASID")
        return guest

    def guest_read(self, handle: int, paddr: int, length: int, memory: Memory) -> bytes:
        """What the guest's own (C-bit set) load sees: ``memory`` decrypted with its key.

        Not a firmware command: this is the memory controller acting for a vCPU running on
        the guest's ASID, which is why the guest must be active. Any alignment is allowed.
        """
        return self._running_guest(handle).cipher.load(memory, paddr, length)

    def guest_write(self, handle: int, paddr: int, data: bytes, memory: Memory) -> None:
        """What the guest's own store does: encrypt ``data`` into ``memory`` with its key
        (the 16-byte blocks it cuts through at either end are read and re-encrypted)."""
        self._running_guest(handle).cipher.store(memory, paddr, data)

    def guest_state(self, handle: int) -> GuestState | None:
        """The state of a guest, or None if the handle names no context (UNINIT)."""
        guest = self._core.guests.get(handle)
        return None if guest is None else guest.state
