"""The host manager's secrets (virSecret): one store with libvirt's rules, used by the daemon.

libvirt keeps every secret definition in memory and writes the persistent ones to its config
directory (``virsecretobj.c``); this store does the same over a :class:`SecretVault` (the host
database and its 0600 value files, :class:`~sevlaunch.host.store.Store`). The rules, in
libvirt's order and words:

- redefining a UUID may not change its usage ID, nor turn a private secret public;
- no two secrets of one usage type share a usage ID;
- an ephemeral secret never reaches the vault (its value lives only in this process);
- a value is at most 64 KiB, libvirt's ``REMOTE_SECRET_VALUE_MAX``.

Values are never returned by a read API: :meth:`SecretStore.value` exists for the QEMU
driver, which resolves a domain's references while it builds a launch (libvirt's
``VIR_SECRET_GET_VALUE_INTERNAL_CALL``), and so it ignores ``private``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Protocol

from sevlaunch.errors import SecretError
from sevlaunch.host.secrets import Secret

MAX_VALUE = 64 * 1024
_log = logging.getLogger(__name__)


class SecretVault(Protocol):
    """Where persistent secrets are kept: their XML definitions and their values."""

    def saved_secrets(self) -> Iterable[tuple[str, str, bool]]:
        """(uuid, definition XML, has a value) for every saved secret."""
        ...

    def save_secret(self, uid: str, xml: str) -> None: ...

    def forget_secret(self, uid: str) -> None:
        """Delete a definition and its value."""
        ...

    def save_value(self, uid: str, value: bytes) -> None: ...

    def saved_value(self, uid: str) -> bytes | None: ...


def parse_secret_uuid(text: str) -> uuid.UUID:
    """A secret UUID named by a caller (virSecretLookupByUUIDString's check)."""
    try:
        return uuid.UUID(text)
    except ValueError as exc:
        raise SecretError(
            "invalid argument",
            f"uuidstr in virSecretLookupByUUIDString must be a valid UUID, got '{text}'",
            field="uuid",
            value=text,
        ) from exc


def _not_found(secret_uuid: uuid.UUID) -> SecretError:
    return SecretError(
        "Secret not found",
        f"no secret with matching uuid '{secret_uuid}'",
        field="uuid",
        value=str(secret_uuid),
    )


class SecretStore:
    """Every secret definition, with libvirt's define rules; persistent ones also in ``vault``."""

    def __init__(
        self, vault: SecretVault | None = None, *, new_uuid: Callable[[], uuid.UUID] = uuid.uuid4
    ) -> None:
        self._vault = vault
        self._new_uuid = new_uuid
        self._defs: dict[uuid.UUID, Secret] = {}
        self._with_value: set[uuid.UUID] = set()
        self._ephemeral_values: dict[uuid.UUID, bytes] = {}
        if vault is not None:
            self._load(vault)

    def __repr__(self) -> str:
        return f"SecretStore({len(self._defs)} secrets)"

    def _load(self, vault: SecretVault) -> None:
        """Read the saved definitions. One that breaks a rule (a database from before the rules
        were enforced) is kept and logged, not dropped: nothing the user stored is lost."""
        for uid, xml, has_value in vault.saved_secrets():
            secret = Secret.from_xml(xml)
            key = secret.uuid or uuid.UUID(uid)
            try:
                self._check_usage_unique(replace(secret, uuid=key))
            except SecretError as exc:
                _log.warning("secret %s kept although it breaks a rule: %s", key, exc)
            self._defs[key] = replace(secret, uuid=key)
            if has_value:
                self._with_value.add(key)

    # -- definitions

    def define(self, secret: Secret) -> Secret:
        """virSecretDefineXML: add or redefine; a new secret without a UUID gets one."""
        if secret.uuid is None:
            secret = replace(secret, uuid=self._new_uuid())
        key = self._key(secret)
        old = self._defs.get(key)
        if old is not None:
            _check_redefine(key, old, secret)
        else:
            self._check_usage_unique(secret)
        self._persist(key, old, secret)
        self._defs[key] = secret
        return secret

    def _persist(self, key: uuid.UUID, old: Secret | None, secret: Secret) -> None:
        """libvirt's secretDefineXML: save a persistent definition (and a value it had while
        ephemeral); a secret turned ephemeral leaves the vault and keeps its value here."""
        if self._vault is None:
            return
        uid = str(key)
        if not secret.ephemeral:
            if old is not None and old.ephemeral and key in self._ephemeral_values:
                self._vault.save_value(uid, self._ephemeral_values.pop(key))
            self._vault.save_secret(uid, secret.to_xml())
        elif old is not None and not old.ephemeral:
            value = self._vault.saved_value(uid)
            if value is not None:
                self._ephemeral_values[key] = value
            self._vault.forget_secret(uid)

    def _check_usage_unique(self, secret: Secret) -> None:
        if secret.usage is None:
            return
        for other in self._defs.values():
            if other.uuid != secret.uuid and other.usage == secret.usage:
                raise SecretError(
                    "internal error",
                    f"a secret with UUID {other.uuid} already defined for use with "
                    f"{secret.usage_id}",
                    field="usage",
                    value=secret.usage_id,
                )

    @staticmethod
    def _key(secret: Secret) -> uuid.UUID:
        if secret.uuid is None:  # define() assigns one first; a caller bypassing it is a bug
            raise SecretError("internal error", "a stored secret needs a UUID", field="uuid")
        return secret.uuid

    def lookup(self, secret_uuid: uuid.UUID) -> Secret:
        try:
            return self._defs[secret_uuid]
        except KeyError:
            raise _not_found(secret_uuid) from None  # the UUID is the whole story

    def list(self) -> tuple[Secret, ...]:
        return tuple(self._defs[key] for key in sorted(self._defs))

    def undefine(self, secret_uuid: uuid.UUID) -> None:
        secret = self.lookup(secret_uuid)
        if self._vault is not None and not secret.ephemeral:
            self._vault.forget_secret(str(secret_uuid))
        del self._defs[secret_uuid]
        self._with_value.discard(secret_uuid)
        self._ephemeral_values.pop(secret_uuid, None)

    # -- values

    def has_value(self, secret_uuid: uuid.UUID) -> bool:
        self.lookup(secret_uuid)
        return secret_uuid in self._with_value

    def set_value(self, secret_uuid: uuid.UUID, value: bytes) -> None:
        """virSecretSetValue: an ephemeral secret's value stays in memory, others go to the vault."""
        secret = self.lookup(secret_uuid)
        if len(value) > MAX_VALUE:
            raise SecretError(
                "invalid argument",
                f"secret value of {len(value)} bytes exceeds libvirt's limit of {MAX_VALUE} "
                "bytes (REMOTE_SECRET_VALUE_MAX)",
                field="value",
                value=len(value),
            )
        if secret.ephemeral or self._vault is None:
            self._ephemeral_values[secret_uuid] = bytes(value)
        else:
            self._vault.save_value(str(secret_uuid), bytes(value))
        self._with_value.add(secret_uuid)

    def value(self, secret_uuid: uuid.UUID) -> bytes:
        """Internal: a domain's referenced blob while a launch is built; never served."""
        self.lookup(secret_uuid)
        found = self._ephemeral_values.get(secret_uuid)
        if found is None and self._vault is not None and secret_uuid in self._with_value:
            found = self._vault.saved_value(str(secret_uuid))
        if found is None:
            raise SecretError(
                "Secret not found",
                f"secret '{secret_uuid}' does not have a value",
                field="value",
                value=str(secret_uuid),
            )
        return found


def _check_redefine(key: uuid.UUID, old: Secret, new: Secret) -> None:
    """virSecretObjListAdd on an existing UUID: same usage ID, private stays private."""
    if old.usage_id != new.usage_id:
        raise SecretError(
            "internal error",
            f"a secret with UUID {key} is already defined for use with {old.usage_id or '(null)'}",
            field="usage",
            value=new.usage_id,
        )
    if old.private and not new.private:
        raise SecretError(
            "internal error",
            "cannot change private flag on existing secret",
            field="private",
            value=False,
        )
