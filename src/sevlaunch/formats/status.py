"""SEV firmware status codes with their names (sev-tool, Linux ``sev_ret_code``, QEMU)."""

from __future__ import annotations

import enum

from sevlaunch.errors import FirmwareError


class Status(enum.IntEnum):
    SUCCESS = 0x00
    INVALID_PLATFORM_STATE = 0x01
    INVALID_GUEST_STATE = 0x02
    INVALID_CONFIG = 0x03
    INVALID_LENGTH = 0x04
    ALREADY_OWNED = 0x05
    INVALID_CERTIFICATE = 0x06
    POLICY_FAILURE = 0x07
    INACTIVE = 0x08
    INVALID_ADDRESS = 0x09
    BAD_SIGNATURE = 0x0A
    BAD_MEASUREMENT = 0x0B
    ASID_OWNED = 0x0C
    INVALID_ASID = 0x0D
    WBINVD_REQUIRED = 0x0E
    DF_FLUSH_REQUIRED = 0x0F
    INVALID_GUEST = 0x10
    INVALID_COMMAND = 0x11
    ACTIVE = 0x12
    HWERROR_PLATFORM = 0x13
    HWERROR_UNSAFE = 0x14
    UNSUPPORTED = 0x15
    INVALID_PARAM = 0x16
    RESOURCE_LIMIT = 0x17
    SECURE_DATA_INVALID = 0x18
    INVALID_PAGE_SIZE = 0x19
    INVALID_PAGE_STATE = 0x1A
    INVALID_MDATA_ENTRY = 0x1B
    INVALID_PAGE_OWNER = 0x1C
    AEAD_OFLOW = 0x1D
    RING_BUFFER_EXIT = 0x1F
    RMP_INIT_REQUIRED = 0x20
    BAD_SVN = 0x21
    BAD_VERSION = 0x22
    SHUTDOWN_REQUIRED = 0x23
    UPDATE_FAILED = 0x24
    RESTORE_REQUIRED = 0x25
    RMP_INITIALIZATION_FAILED = 0x26
    INVALID_KEY = 0x27


# QEMU's sev_fw_errlist wording, used in its "fw_error=N 'text'" messages.
_DESCRIPTIONS = {
    Status.SUCCESS: "",
    Status.INVALID_PLATFORM_STATE: "Platform state is invalid",
    Status.INVALID_GUEST_STATE: "Guest state is invalid",
    Status.INVALID_CONFIG: "Platform configuration is invalid",
    Status.INVALID_LENGTH: "Buffer too small",
    Status.ALREADY_OWNED: "Platform is already owned",
    Status.INVALID_CERTIFICATE: "Certificate is invalid",
    Status.POLICY_FAILURE: "Policy is not allowed",
    Status.INACTIVE: "Guest is not active",
    Status.INVALID_ADDRESS: "Invalid address",
    Status.BAD_SIGNATURE: "Bad signature",
    Status.BAD_MEASUREMENT: "Bad measurement",
    Status.ASID_OWNED: "Asid is already owned",
    Status.INVALID_ASID: "Invalid ASID",
    Status.WBINVD_REQUIRED: "WBINVD is required",
    Status.DF_FLUSH_REQUIRED: "DF_FLUSH invocation is required",
    Status.INVALID_GUEST: "Guest handle is invalid",
    Status.INVALID_COMMAND: "Invalid command",
    Status.ACTIVE: "Guest is active",
    Status.HWERROR_PLATFORM: "Hardware error",
    Status.HWERROR_UNSAFE: "Hardware unsafe",
    Status.UNSUPPORTED: "Feature not supported",
    Status.INVALID_PARAM: "Invalid parameter",
    Status.RESOURCE_LIMIT: "Required firmware resource depleted",
    Status.SECURE_DATA_INVALID: "Part-specific integrity check failure",
}


def qemu_error_text(code: int) -> str:
    """QEMU's ``fw_error_to_str``: its table's words, "unknown error" past the table (QEMU's
    list stops at SECURE_DATA_INVALID, so SNP's page and key statuses print that way)."""
    try:
        return _DESCRIPTIONS[Status(code)]
    except (ValueError, KeyError):
        return "unknown error"


def status_name(code: int) -> str:
    """QEMU's description of a status code, or the enum name, or ``unknown``."""
    try:
        status = Status(code)
    except ValueError:
        return f"unknown status {code:#x}"
    return _DESCRIPTIONS.get(status, status.name)


FirmwareError.status_name = staticmethod(status_name)  # errors.py names statuses with this
