"""The SEV firmware (the PSP's SEV API), emulated in pure Python with real cryptography.

Pure: no IO, no clock, no threads; randomness comes in as ``rng(n) -> n bytes``. The
platform service (:mod:`sevlaunch.platform`) owns one :class:`Firmware`, serialises commands
to it and stores :meth:`Firmware.persistent_state`.

Stable interface
----------------

``Memory``
    Protocol: ``read(paddr, length) -> bytes`` and ``write(paddr, data)``; the system
    physical memory the PSP DMAs from and to. Raise :class:`~sevlaunch.errors.AddressError`
    for a range you cannot serve (the command answers INVALID_ADDRESS).
``SparseMemory``
    A dict-of-pages ``Memory``; unwritten bytes read as zero.
``Profile``, ``PROFILES``, ``profile(name)``
    ``naples``, ``rome``, ``milan``, ``genoa``: API version, build id, ``cbitpos``,
    ``reduced_phys_bits``, ``max_sev_asids`` and ``max_es_asids`` (libvirt's ``max-guests``
    and ``max-es-guests``). SEV-ES ASIDs are ``1..max_es_asids``, SEV ASIDs follow.
``Firmware(profile, *, rng=os.urandom, state=None, rsa_keygen=..., roots=None)``
    ``state=None`` is a factory-fresh chip (chip ID, CEK, emulated ARK/ASK, self-owned
    OCA/PEK/PDH; about 2 s for the two RSA-4096 keys), else the bytes of an earlier
    :meth:`~Firmware.persistent_state`. A new instance starts in UNINIT with no guests, like
    a PSP after reset.

    - ``execute(command, buffer, memory) -> (Status, written_back)``: one command on its
      firmware buffer exactly as §0 lays it out (see :mod:`sevlaunch.formats.commands`).
      Commands without a buffer (SHUTDOWN, PLATFORM_RESET, PEK_GEN, PDH_GEN, DF_FLUSH) take
      ``b""``. Output lengths follow the length-query convention: INVALID_LENGTH with the
      required length(s) written back. Addresses may carry the C-bit; it is stripped.
      ``execute_verbose`` adds a reason string.
    - ``persistent_state()``, ``signed_cek()`` (the emulated key server's ASK-signed CEK),
      ``ca_chain()`` (emulated ASK ‖ ARK), ``ark()``; ``profile``, ``state``, ``chip_id``.
    - Typed conveniences that build the buffer, stage inputs and outputs in a private
      scratch window (:data:`SCRATCH_BASE`, never in the caller's memory), and raise
      :class:`~sevlaunch.errors.FirmwareError` (with ``.status``) on failure:
      ``init(es=)``, ``init_ex(es=)``, ``shutdown()``, ``platform_reset()``,
      ``platform_status() -> PlatformStatusBuffer``, ``pek_gen()``, ``pdh_gen()``,
      ``pek_csr() -> bytes``, ``pek_cert_import(pek, oca)``,
      ``pdh_cert_export() -> (pdh, pek‖oca‖cek)``, ``get_id() -> bytes``, ``df_flush()``,
      ``launch_start(policy, godh=None, session=None, *, share=0) -> handle``,
      ``activate(handle, asid)``, ``deactivate(handle)``, ``decommission(handle)``,
      ``guest_status(handle) -> GuestStatusBuffer``,
      ``launch_update_data(handle, memory, paddr, length)``,
      ``launch_update_vmsa(handle, memory, paddr)``, ``launch_measure(handle) -> Measurement``,
      ``launch_secret(handle, header, ciphertext, memory, guest_paddr)``,
      ``launch_finish(handle)``, ``attestation(handle, mnonce) -> bytes``,
      ``dbg_decrypt(handle, memory, paddr, length) -> bytes``,
      ``dbg_encrypt(handle, memory, paddr, data)``.
    - Not firmware commands: ``guest_read(handle, paddr, length, memory)`` and
      ``guest_write(handle, paddr, data, memory)`` are the memory controller serving the
      guest's own encrypted accesses (for the emulated CPU of a VMM); ``guest_state(handle)``.

Behaviour worth knowing
-----------------------

- State machines: :mod:`.states` holds both tables and the order of checks is in
  :mod:`.dispatch`. SEND_*/RECEIVE_* and the other unimplemented IDs answer UNSUPPORTED;
  unknown IDs INVALID_COMMAND.
- As on hardware (and as KVM does right after LAUNCH_START), a guest must be ACTIVATEd on an
  ASID of its range before LAUNCH_UPDATE_DATA/VMSA, LAUNCH_SECRET and DBG_*: they write
  memory under the guest's key and answer INACTIVE otherwise. Teardown is DEACTIVATE, then
  DECOMMISSION (ACTIVE otherwise); a deactivated ASID needs DF_FLUSH before reuse.
- Memory encryption: :mod:`.encryption` (AES-128 under the VEK with a physical-address
  tweak, 16-byte blocks).
- PDH_CERT_EXPORT returns an unsigned CEK, as real firmware does; ``signed_cek()`` is the
  ASK-signed copy. The emulated ARK/ASK key ids start with ASCII ``sevlaunch-emu``.
"""

from sevlaunch.firmware.encryption import GuestCipher
from sevlaunch.firmware.firmware import SCRATCH_BASE, SCRATCH_SIZE, Firmware
from sevlaunch.firmware.memory import Memory, SparseMemory
from sevlaunch.firmware.profiles import PROFILES, Profile, profile
from sevlaunch.firmware.states import (
    GUEST_TABLE,
    GUEST_TRANSITIONS,
    PLATFORM_TABLE,
    PLATFORM_TRANSITIONS,
    GuestState,
    PlatformState,
)

__all__ = [
    "GUEST_TABLE",
    "GUEST_TRANSITIONS",
    "PLATFORM_TABLE",
    "PLATFORM_TRANSITIONS",
    "PROFILES",
    "SCRATCH_BASE",
    "SCRATCH_SIZE",
    "Firmware",
    "GuestCipher",
    "GuestState",
    "Memory",
    "PlatformState",
    "Profile",
    "SparseMemory",
    "profile",
]
