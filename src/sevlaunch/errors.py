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
    │   └── MeasurementMismatchError the launch measurement is not the expected one
    ├── TrustStoreError             a trust root could not be loaded or fetched
    ├── FirmwareError               an SEV firmware command returned a non-zero status
    └── UsageError                  the caller asked for something inconsistent

Errors carry the offending field and value as attributes, and their message says what was
expected, what was found and, where there is one, what to do.
"""

from __future__ import annotations


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


class FirmwareError(SevlaunchError):
    """An SEV firmware command failed; ``status`` is the firmware status code."""

    def __init__(self, command: str, status: int, detail: str = "") -> None:
        from sevlaunch.formats.status import status_name

        self.command = command
        self.status = status
        msg = f"{command} failed: fw_error={status} '{status_name(status)}'"
        super().__init__(msg + (f": {detail}" if detail else ""))


class UsageError(SevlaunchError, ValueError):
    """The caller asked for something inconsistent (a bad option value, a missing input)."""
