"""The emulated AMD roots (ARK, ASK) of each generation, made once per user and kept.

AMD signs every chip of a generation with the same ARK and ASK; only the chip's own keys
(chip id, CEK, PEK, PDH) are its own. The emulation does the same: the two RSA-4096 keys of a
profile are generated the first time a platform of that profile is made (about 2 s, most of a
fresh platform's start) and kept in the user's cache directory, ``$SEVLAUNCH_CACHE_DIR``, else
``$XDG_CACHE_HOME/sevlaunch``, else ``~/.cache/sevlaunch`` (directory 0700, files 0600, PKCS#8
DER). Every later fresh platform of that profile is certified by them, with a new chip id and
chip keys of its own. They are emulated keys that vouch for emulated chips only, never AMD's
(their key ids start with ``sevlaunch-emu``); a platform made with ``--fresh-roots`` gets
roots of its own instead. A cache that cannot be read or written only costs the 2 s.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sevlaunch.firmware.identity import generate_rsa, rsa_private_bytes

log = logging.getLogger(__name__)

CACHE_ENV = "SEVLAUNCH_CACHE_DIR"
_LENGTH = 4  # bytes of each key's big-endian length prefix in the cache file

Roots = tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]


def cache_dir() -> Path:
    """Where the roots are kept (see the module docstring)."""
    if explicit := os.environ.get(CACHE_ENV):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sevlaunch"


def roots_file(profile: str, directory: Path | None = None) -> Path:
    return (directory or cache_dir()) / f"emulated-roots-{profile}.der"


def cached_roots(profile: str, directory: Path | None = None) -> Roots:
    """The profile's emulated (ARK, ASK), from the cache or made now and kept there."""
    path = roots_file(profile, directory)
    try:
        return _decode(_read_private(path))
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:  # unreadable, open to others or damaged: replace it
        log.warning("emulated roots %s unusable (%s): making new ones", path, exc)
    roots = (generate_rsa(), generate_rsa())
    try:
        _store(path, _encode(roots))
    except OSError as exc:
        log.warning(
            "cannot keep the emulated roots in %s (%s): the next platform pays 2 s", path, exc
        )
    return roots


def _read_private(path: Path) -> bytes:
    """The file's bytes, unless group or others may read or write it (as ssh refuses a key)."""
    with open(path, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode & 0o777
        if mode & 0o077:
            raise ValueError(f"mode {mode:04o} lets group or others at private keys")
        return handle.read()


def _encode(roots: Roots) -> bytes:
    out = b""
    for key in roots:
        der = rsa_private_bytes(key)
        out += len(der).to_bytes(_LENGTH, "big") + der
    return out


def _decode(data: bytes) -> Roots:
    keys = []
    for _ in range(2):
        size = int.from_bytes(data[:_LENGTH], "big")
        der, data = data[_LENGTH : _LENGTH + size], data[_LENGTH + size :]
        # our own file, 0600: pyca's key check (1.5 s for RSA-4096) would undo the saving,
        # and the platform's state file loads the same keys the same way (firmware.persist)
        key = serialization.load_der_private_key(der, None, unsafe_skip_rsa_key_validation=True)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("not an RSA key")
        keys.append(key)
    if data:
        raise ValueError("trailing bytes")
    return keys[0], keys[1]


def _store(path: Path, data: bytes) -> None:
    """Write ``data`` at ``path`` (0600, in a 0700 directory) atomically."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
