"""The one error tree of sevlaunch.

Every error raised on purpose is a :class:`SevlaunchError`; each layer has its own base so
callers can catch what they understand and let the rest travel::

    SevlaunchError
    ├── FormatError                 bytes that do not match an SEV structure
    ├── CryptoError                 a primitive refused its input
    │   └── IntegrityError          a MAC did not match (WRAP_MAC, POLICY_MAC, packet MAC)
    ├── VerificationError           a certificate chain or measurement was not proven
    │   ├── ChainError              one link of a certificate chain failed
    │   │   └── MissingCekSignatureError   the CEK lacks AMD's ASK signature
    │   ├── UntrustedRootError      the ARK is not a pinned AMD root nor named by the user
    │   ├── MeasurementMismatchError the launch measurement is not the expected one
    │   └── SnpVerificationError    an SNP report failed checks (names every failed one)
    ├── TrustStoreError             a trust root could not be loaded or fetched
    │   └── DownloadError           AMD's key server did not deliver a usable certificate
    ├── FirmwareError               an SEV firmware command returned a non-zero status
    ├── CommandRefusedError         (inside the firmware emulator) a handler's non-zero status
    ├── AddressError                a physical address range that a memory cannot serve
    ├── VmmError                    the hypervisor refused a request (QMP GenericError and kin)
    │   ├── VmmStartupError         the hypervisor failed before serving QMP (exit status 1)
    │   └── SnpLaunchError          an SNP launch failed at its finish (QEMU exits 1)
    ├── PlatformError               the emulated platform service failed or refused a request
    │   ├── ProtocolError           a platform-protocol frame is malformed
    │   └── PlatformUnavailableError no platform service answers at the socket
    ├── HostError                   the host manager refused a request (libvirt's virError)
    │   ├── DomainXMLError          a domain XML document is malformed or unsupported
    │   ├── SecretError             a secret document or store request was refused
    │   └── QemuCommandError        a QMP command the host sent failed (command, QEMU's class)
    ├── QmpError                    a QMP exchange failed
    │   ├── QmpParseError           the QMP input stream is not acceptable JSON
    │   └── QmpCommandError         a QMP command failed (QEMU error class and text)
    ├── UsageError                  the caller asked for something inconsistent
    │   ├── CommandLineError        a hypervisor command line QEMU would refuse
    │   ├── UnsuitableFirmwareError a firmware image cannot do what was asked of it
    │   ├── InputError              a command's input unreadable or its options inconsistent
    │   ├── UnprotectedFileError    a key or token file open to group or others
    │   └── HostSetupError          a host change refused (a real /dev/sev, an unreachable file)
    ├── StorageError                the state's file system is full or read-only
    ├── LaunchFailedError           the VM tool's launch failed at a named step (1-13)
    └── BrokerError                 the attestation broker refused a request
        ├── NotFoundError           no such workload, launch, root or secret
        ├── ConflictError           a name already taken
        ├── AccessDeniedError       no or the wrong bearer token for the request
        ├── LaunchRefusedError      no session or no secret for this launch
        ├── LimitExceededError      over a launcher's or a peer's limits (429, Retry-After)
        └── ServiceUnavailableError a service the broker needs (a key server) did not answer

Errors carry the offending field and value as attributes, and their message says what was
expected, what was found and, where there is one, what to do. One argument order everywhere:
what failed first when there is such a name (the structure, libvirt's error kind, the QEMU
option), then the field, then the message; the value found is always keyword-only and last::

    FormatError("session blob", "nonce", "expected 16 bytes", value=len(data))
    ProtocolError("length", "frame too long", value=n)
    UnsuitableFirmwareError("sev_hash_table", "no SEV hashes-table entry", value=None)
    HostError("XML error", "unknown element", field="devices/foo", value="foo")

(``HostError``'s field is optional, so it is a keyword too.) A cause is kept (``raise ... from
exc``); ``from None`` only where hiding it is the point, with a comment that says why.
"""

from __future__ import annotations

from collections.abc import Callable

TYPE_CHECKING = False  # typing's flag without importing typing: every command loads this tree
if TYPE_CHECKING:
    from typing import ClassVar


class SevlaunchError(Exception):
    """Root of every error sevlaunch raises on purpose."""


class FormatError(SevlaunchError, ValueError):
    """Bytes do not form a valid SEV structure.

    ``structure`` names the layout (``"SEV certificate"``), ``field`` the field, ``offset``
    its byte offset within the structure (``None`` where the whole buffer is at fault) and
    ``value`` what was found.
    """

    def __init__(
        self,
        structure: str,
        field: str,
        reason: str,
        *,
        offset: int | None = None,
        value: object = None,
    ) -> None:
        self.structure = structure
        self.field = field
        self.reason = reason
        self.offset = offset
        self.value = value
        where = f" at offset {offset:#x}" if offset is not None else ""
        super().__init__(f"{structure}: field {field}{where}: {reason}")


class CryptoError(SevlaunchError):
    """A cryptographic primitive refused its input (bad key, bad length)."""


class IntegrityError(CryptoError):
    """A MAC or authentication tag did not verify; ``what`` names it."""

    def __init__(self, what: str, detail: str = "") -> None:
        self.what = what
        super().__init__(f"{what} does not verify" + (f": {detail}" if detail else ""))


class VerificationError(SevlaunchError):
    """Something that must be proven was not. Verifiers raise this; they never return False."""


class ChainError(VerificationError):
    """One link of a certificate chain failed; ``link`` is ``"signer -> subject"``."""

    def __init__(self, link: str, reason: str) -> None:
        self.link = link
        self.reason = reason
        super().__init__(f"{link}: {reason}")


class MissingCekSignatureError(ChainError):
    """The CEK carries no ASK signature, as firmware exports it; AMD's KDS has the signed one."""

    def __init__(self, link: str, chip_id: str | None = None) -> None:
        self.chip_id = chip_id
        where = (
            f"https://kdsintf.amd.com/cek/id/{chip_id}"
            if chip_id
            else "https://kdsintf.amd.com/cek/id/<GET_ID output as hex>"
        )
        super().__init__(
            link,
            "the CEK has no ASK signature (real firmware exports it unsigned); fetch the "
            f"AMD-signed CEK from {where} and pass it with --cek FILE",
        )


class UntrustedRootError(VerificationError):
    """The chain ends in an ARK that is neither a pinned AMD root nor a root the user named."""


class MeasurementMismatchError(VerificationError):
    """The launch measurement differs from the expected one."""


class TrustStoreError(SevlaunchError):
    """A trust root could not be read, parsed or downloaded."""


class DownloadError(TrustStoreError):
    """A certificate could not be obtained from AMD's key server (or a mirror).

    ``failures`` holds one ``(url, reason, http_status_or_None)`` per attempt; ``url`` and
    ``status`` repeat the last one. ``hint`` says what to do instead (e.g. pass ``--ca FILE``).
    """

    def __init__(
        self, what: str, failures: tuple[tuple[str, str, int | None], ...], hint: str
    ) -> None:
        self.what = what
        self.failures = failures
        self.url = failures[-1][0] if failures else None
        self.status = failures[-1][2] if failures else None
        self.hint = hint
        tried = "; ".join(f"{url}: {reason}" for url, reason, _ in failures)
        super().__init__(f"cannot download {what}: {tried}; {hint}")


class FirmwareError(SevlaunchError):
    """An SEV firmware command failed; ``status`` is the firmware status code."""

    #: Names a status code. :mod:`sevlaunch.formats.status` installs its table when it loads
    #: (every raiser of this error uses it), so this module imports nothing of sevlaunch.
    status_name: ClassVar[Callable[[int], str]] = staticmethod(lambda status: f"status {status:#x}")

    def __init__(self, command: str, status: int, detail: str = "") -> None:
        self.command = command
        self.status = status
        self.detail = detail
        msg = f"{command} failed: fw_error={status} '{type(self).status_name(status)}'"
        super().__init__(msg + (f": {detail}" if detail else ""))


class VmmError(SevlaunchError):
    """The hypervisor refused a request; ``error_class`` is the QMP error class to report."""

    def __init__(self, message: str, error_class: str = "GenericError") -> None:
        self.error_class = error_class
        super().__init__(message)


class VmmStartupError(VmmError):
    """A failure before QMP is served: printed as QEMU prints it, exit status 1."""


class SnpLaunchError(VmmError):
    """SNP_LAUNCH_UPDATE or SNP_LAUNCH_FINISH failed on the first run: QEMU reports it (the
    message) and exits with status 1, and so does the emulated hypervisor."""


class CommandRefusedError(SevlaunchError):
    """Inside the firmware emulator: a command handler's non-zero answer. ``status`` is the
    firmware status, ``buffer`` what the handler writes back (None: unchanged); the dispatcher
    turns it into the command's status word (callers outside see :class:`FirmwareError`)."""

    def __init__(self, status: int, detail: str = "", buffer: bytes | None = None) -> None:
        self.status = status
        self.detail = detail
        self.buffer = buffer
        name = getattr(status, "name", f"status {status:#x}")
        super().__init__(f"{name}: {detail}" if detail else name)


class AddressError(SevlaunchError, ValueError):
    """A physical address range lies outside what a memory can serve (the PSP's DMA failed).

    The emulated firmware answers INVALID_ADDRESS when a memory raises this.
    """

    def __init__(self, paddr: int, length: int, reason: str) -> None:
        self.paddr = paddr
        self.length = length
        super().__init__(f"physical range [{paddr:#x}, +{length:#x}): {reason}")


class UsageError(SevlaunchError, ValueError):
    """The caller asked for something inconsistent (a bad option value, a missing input)."""


class InputError(UsageError):
    """A command's input cannot be read, or its options name inputs that do not go together
    (``--initrd`` without ``--kernel``): the CLI reports it as a usage error (exit 2)."""


class UnprotectedFileError(UsageError):
    """A KEK, key or token file is open to group or others; refused as ssh refuses such a key.

    ``path`` is the file, ``mode`` its permission bits.
    """

    def __init__(self, path: str, what: str, mode: int) -> None:
        self.path = path
        self.mode = mode
        super().__init__(
            f"the {what} {path} is open to group or others (mode {mode:04o}); it must be "
            f"private to its owner: chmod 600 {path}"
        )


class HostSetupError(UsageError):
    """Setting a host up for libvirt (``platform install-libvirt``) was refused: ``path`` is
    the file at fault and the message says what was found and what to do."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


class StorageError(SevlaunchError):
    """The file system holding a service's state cannot take a write.

    ``reason`` is ``storage-full``, ``storage-read-only`` or ``storage-io-error`` (the
    services' 503 names it), ``path`` the file or directory at fault.
    """

    def __init__(self, reason: str, message: str, *, path: str | None = None) -> None:
        self.reason = reason
        self.path = path
        super().__init__(message)


class PlatformError(SevlaunchError):
    """The emulated platform service (the emulated ``/dev/sev``) failed or refused a request.

    ``code`` is the service's error code when the service itself answered with an error.
    """

    def __init__(self, message: str, *, code: int | None = None) -> None:
        self.code = code
        super().__init__(message)


class ProtocolError(PlatformError):
    """A platform-protocol frame is malformed; ``field`` names the part, ``value`` what was found."""

    def __init__(self, field: str, reason: str, *, value: object = None) -> None:
        self.field = field
        self.reason = reason
        self.value = value
        super().__init__(f"platform protocol: {field}: {reason}")


class PlatformUnavailableError(PlatformError):
    """No platform service answers at ``socket``; start one with ``sevlaunch platform serve``."""

    def __init__(self, socket: str, reason: str) -> None:
        self.socket = socket
        super().__init__(
            f"no platform service at {socket}: {reason}; start one with "
            f"'sevlaunch platform serve --state DIR --listen {socket}' or pass --platform / "
            "set SEVLAUNCH_PLATFORM"
        )


class UnsuitableFirmwareError(UsageError):
    """A firmware image cannot do what was asked (e.g. measured direct kernel boot).

    ``field`` names the OVMF footer-table entry at fault and ``value`` what was found there.
    """

    def __init__(self, field: str, message: str, *, value: object = None) -> None:
        self.field = field
        self.value = value
        super().__init__(message)


class HostError(SevlaunchError):
    """The host manager refused a request; the message reads like libvirt's ``virError``.

    ``kind`` is libvirt's error-code text (``"XML error"``, ``"unsupported configuration"``,
    ``"internal error"``, ``"Secret not found"``, ...), printed first as libvirt does;
    ``field`` names the element or key at fault and ``value`` what was found.
    """

    def __init__(
        self, kind: str, detail: str, *, field: str | None = None, value: object = None
    ) -> None:
        self.kind = kind
        self.detail = detail
        self.field = field
        self.value = value
        super().__init__(f"{kind}: {detail}")


class QemuCommandError(HostError):
    """A QMP command the host manager sent was refused by the hypervisor: libvirt's "internal
    error: unable to execute QEMU command", keeping ``command``, QEMU's ``error_class``
    (``GenericError``, ``DeviceNotFound``, ...) and its text ``desc``, so callers match on the
    class and the command, never on the message."""

    def __init__(self, command: str, error_class: str, desc: str) -> None:
        self.command = command
        self.error_class = error_class
        self.desc = desc
        super().__init__(
            "internal error",
            f"unable to execute QEMU command '{command}': {error_class}: {desc}",
            field=command,
            value=error_class,
        )


class DomainXMLError(HostError, ValueError):
    """A domain XML document is malformed, invalid against the schema, or unsupported."""


class SecretError(HostError):
    """A secret XML document is malformed, or a secret-store request was refused."""


class QmpError(SevlaunchError):
    """A QMP exchange failed; the subclasses say on which side."""


class QmpParseError(QmpError):
    """The QMP input stream is not acceptable JSON; ``desc`` is QEMU's text for it.

    ``offset`` is the byte offset within the offending message, where known.
    """

    def __init__(self, desc: str, *, offset: int | None = None) -> None:
        self.desc = desc
        self.offset = offset
        super().__init__(desc)


class QmpCommandError(QmpError):
    """A QMP command failed: ``error_class`` is QEMU's class (``GenericError``...), ``desc`` its text."""

    def __init__(self, desc: str, error_class: str = "GenericError") -> None:
        self.desc = desc
        self.error_class = error_class
        super().__init__(f"{error_class}: {desc}")


class CommandLineError(UsageError):
    """A hypervisor command line QEMU would refuse.

    ``option`` is the option at fault as QEMU shows it (``-object sev-guest,...``) or ``None``,
    ``value`` what was found; ``str()`` is QEMU's message without the program name, and
    :meth:`report` adds it as QEMU prints it on stderr.
    """

    def __init__(self, option: str | None, message: str, *, value: object = None) -> None:
        self.option = option
        self.message = message
        self.value = value
        super().__init__(f"{option}: {message}" if option else message)

    def report(self, prog: str = "qemu-system-x86_64") -> str:
        return f"{prog}: {self}"


class LaunchFailedError(SevlaunchError):
    """An attested launch failed at ``step`` (named ``name``); the VM tool destroyed the domain."""

    def __init__(self, step: int, name: str, reason: str) -> None:
        self.step = step
        self.name = name
        self.reason = reason
        super().__init__(f"step {step} ({name}) failed: {reason}")


class BrokerError(SevlaunchError):
    """The attestation broker refused a request.

    ``reason`` is a stable code (``"replay"``, ``"measurement-mismatch"``) that the audit log
    and HTTP answers carry, so callers can act on it without parsing the message.
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class NotFoundError(BrokerError):
    """A named workload, launch, trust root or secret does not exist."""


class ConflictError(BrokerError):
    """The request clashes with stored state (a name already taken)."""


class AccessDeniedError(BrokerError):
    """The request lacks a valid bearer token (HTTP ``status`` 401) or the token's role may not
    do this (403)."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(reason, detail)


class LaunchRefusedError(BrokerError):
    """A launch gets no session or no secret; ``diagnosis`` explains a mismatch when known."""

    def __init__(self, reason: str, message: str, diagnosis: str | None = None) -> None:
        self.diagnosis = diagnosis
        super().__init__(reason, message)


class LimitExceededError(BrokerError):
    """A launcher is over its limit of open launches or of new launches a minute (HTTP 429);
    ``retry_after`` is the number of seconds after which trying again may succeed."""

    def __init__(self, reason: str, message: str, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(reason, message)


class ServiceUnavailableError(BrokerError):
    """A service the broker depends on (AMD's key server) did not answer or was throttled
    (HTTP 503 with Retry-After): nothing was decided, so the same request may succeed later."""

    def __init__(self, reason: str, message: str, retry_after: float = 5.0) -> None:
        self.retry_after = retry_after
        super().__init__(reason, message)


class SnpVerificationError(VerificationError):
    """An SNP attestation report failed one or more checks.

    ``failed`` names every failed check (not only the first); ``verdicts`` is the whole
    :class:`~sevlaunch.owner.snp.verdicts.Verdicts` with each check's detail.
    """

    def __init__(self, failed: tuple[str, ...], details: tuple[str, ...], verdicts: object) -> None:
        self.failed = failed
        self.details = details
        self.verdicts = verdicts
        listed = "; ".join(
            f"{name}: {detail}" for name, detail in zip(failed, details, strict=True)
        )
        super().__init__(f"the SNP report fails {len(failed)} check(s): {listed}")
