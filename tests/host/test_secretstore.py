"""The host's secret store: libvirt's virSecret rules and words, in memory and over the real
host database (values in 0600 files, ephemeral secrets never on disk)."""

from __future__ import annotations

import itertools
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sevlaunch.errors import HostError, SecretError
from sevlaunch.host.secrets import Secret, SecretUsage
from sevlaunch.host.secretstore import MAX_VALUE, SecretStore, SecretVault, parse_secret_uuid
from sevlaunch.host.store import Store

VOLUME = SecretUsage(type="volume", target="/img/a")


def counting() -> Iterator[uuid.UUID]:
    return (uuid.UUID(int=n) for n in itertools.count(1))


@pytest.fixture(params=["memory", "database"])
def vault(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store | None]:
    """Every rule holds both for the pure store and for the one the daemon uses."""
    if request.param == "memory":
        yield None
        return
    store = Store(tmp_path / "state")
    yield store
    store.close()


def make(vault: Store | None) -> SecretStore:
    numbers = counting()
    return SecretStore(vault, new_uuid=lambda: next(numbers))


def test_the_host_database_is_a_vault(tmp_path: Path) -> None:
    store: SecretVault = Store(tmp_path / "s")
    assert list(store.saved_secrets()) == []


def test_define_assigns_uuids_and_lists_definitions_only(vault: Store | None) -> None:
    secrets = make(vault)
    first = secrets.define(Secret(description="godh"))
    second = secrets.define(Secret(description="session", private=True))
    assert (first.uuid, second.uuid) == (uuid.UUID(int=1), uuid.UUID(int=2))
    secrets.set_value(uuid.UUID(int=2), b"\x01\x02VALUE-XYZ")
    assert secrets.list() == (first, second)
    assert all("VALUE-XYZ" not in s.to_xml() + repr(s) for s in secrets.list())
    assert "VALUE-XYZ" not in repr(secrets)
    assert secrets.has_value(uuid.UUID(int=2))
    assert not secrets.has_value(uuid.UUID(int=1))
    assert secrets.value(uuid.UUID(int=2)) == b"\x01\x02VALUE-XYZ"


def test_redefine_keeps_the_value_and_undefine_drops_both(vault: Store | None) -> None:
    secrets = make(vault)
    key = secrets.define(Secret(description="old")).uuid
    assert key is not None
    secrets.set_value(key, b"first")
    secrets.set_value(key, b"second")
    secrets.define(Secret(uuid=key, description="new"))
    assert secrets.lookup(key).description == "new"
    assert secrets.value(key) == b"second"
    secrets.undefine(key)
    assert secrets.list() == ()
    with pytest.raises(SecretError) as caught:
        secrets.value(key)
    assert str(caught.value) == (
        "Secret not found: no secret with matching uuid '00000000-0000-0000-0000-000000000001'"
    )


@pytest.mark.parametrize("action", ["lookup", "value", "undefine", "has_value", "set_value"])
def test_unknown_uuid_is_not_found(action: str) -> None:
    call = getattr(SecretStore(), action)
    missing = uuid.UUID(int=99)
    with pytest.raises(SecretError, match=r"^Secret not found: no secret with matching uuid"):
        call(missing, b"x") if action == "set_value" else call(missing)


def test_a_value_never_set_is_reported(vault: Store | None) -> None:
    secrets = make(vault)
    key = secrets.define(Secret()).uuid
    assert key is not None
    with pytest.raises(SecretError, match="does not have a value"):
        secrets.value(key)


def test_a_usage_belongs_to_one_secret_in_libvirts_words(vault: Store | None) -> None:
    secrets = make(vault)
    first = secrets.define(Secret(usage=VOLUME))
    with pytest.raises(SecretError) as caught:
        secrets.define(Secret(usage=VOLUME))
    assert str(caught.value) == (
        "internal error: a secret with UUID 00000000-0000-0000-0000-000000000001 already "
        "defined for use with /img/a"
    )
    assert len(secrets.list()) == 1
    other = secrets.define(Secret(usage=SecretUsage(type="ceph", target="/img/a")))
    assert other.uuid != first.uuid  # another usage type may share the usage ID, as in libvirt


def test_a_usage_is_fixed_for_a_uuid(vault: Store | None) -> None:
    secrets = make(vault)
    first = secrets.define(Secret(usage=VOLUME))
    moved = Secret(uuid=first.uuid, usage=SecretUsage(type="volume", target="/img/b"))
    with pytest.raises(SecretError) as caught:
        secrets.define(moved)
    assert str(caught.value) == (
        "internal error: a secret with UUID 00000000-0000-0000-0000-000000000001 is already "
        "defined for use with /img/a"
    )
    plain = secrets.define(Secret())
    with pytest.raises(SecretError, match=r"already defined for use with \(null\)$"):
        secrets.define(Secret(uuid=plain.uuid, usage=VOLUME))
    assert secrets.lookup(first.uuid or uuid.UUID(int=0)).usage == VOLUME


def test_a_private_secret_stays_private(vault: Store | None) -> None:
    secrets = make(vault)
    secret = secrets.define(Secret(private=True))
    with pytest.raises(SecretError) as caught:
        secrets.define(Secret(uuid=secret.uuid, private=False))
    assert str(caught.value) == "internal error: cannot change private flag on existing secret"
    assert isinstance(caught.value, HostError)
    secrets.define(Secret(uuid=secret.uuid, private=True, description="still private"))
    public = secrets.define(Secret())
    secrets.define(Secret(uuid=public.uuid, private=True))  # public -> private is allowed


def test_oversized_values_are_refused_and_nothing_is_kept(vault: Store | None) -> None:
    secrets = make(vault)
    key = secrets.define(Secret()).uuid
    assert key is not None
    with pytest.raises(SecretError, match="exceeds libvirt's limit of 65536 bytes"):
        secrets.set_value(key, bytes(MAX_VALUE + 1))
    assert not secrets.has_value(key)
    secrets.set_value(key, bytes(MAX_VALUE))
    assert secrets.has_value(key)


def test_persistent_secrets_survive_a_restart_and_ephemeral_ones_never_touch_disk(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "state")
    secrets = SecretStore(store)
    kept = secrets.define(Secret(private=True, usage=VOLUME))
    fleeting = secrets.define(Secret(ephemeral=True, description="fleeting"))
    assert kept.uuid is not None
    assert fleeting.uuid is not None
    secrets.set_value(kept.uuid, b"kept-VALUE")
    secrets.set_value(fleeting.uuid, b"fleeting-VALUE")
    value_file = store.secret_dir / f"{kept.uuid}.value"
    assert stat.S_IMODE(value_file.stat().st_mode) == 0o600
    assert list(store.secret_dir.iterdir()) == [value_file]
    store.close()
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file():
            assert b"VALUE" not in path.read_bytes() or path == value_file
            assert b"fleeting" not in path.read_bytes()
    again = SecretStore(Store(tmp_path / "state"))
    assert again.list() == (kept,)
    assert again.value(kept.uuid) == b"kept-VALUE"
    with pytest.raises(SecretError, match="already defined for use with /img/a"):
        again.define(Secret(usage=VOLUME))


def test_ephemeral_and_persistent_swap_carries_the_value(tmp_path: Path) -> None:
    """libvirt's secretDefineXML: the value follows a secret into and out of the vault."""
    store = Store(tmp_path / "state")
    secrets = SecretStore(store)
    key = secrets.define(Secret(ephemeral=True)).uuid
    assert key is not None
    secrets.set_value(key, b"v1")
    secrets.define(Secret(uuid=key))
    assert store.saved_value(str(key)) == b"v1"
    assert [row[0] for row in store.saved_secrets()] == [str(key)]
    secrets.define(Secret(uuid=key, ephemeral=True))
    assert store.saved_value(str(key)) is None
    assert list(store.saved_secrets()) == []
    assert secrets.value(key) == b"v1"


def test_a_database_that_broke_the_usage_rule_loads_whole(tmp_path: Path) -> None:
    """Secrets stored before the rules were enforced are kept (and the rule holds from now)."""
    store = Store(tmp_path / "state")
    for n in (1, 2):
        store.save_secret(
            str(uuid.UUID(int=n)), Secret(uuid=uuid.UUID(int=n), usage=VOLUME).to_xml()
        )
    secrets = SecretStore(store)
    assert [s.uuid for s in secrets.list()] == [uuid.UUID(int=1), uuid.UUID(int=2)]
    with pytest.raises(SecretError, match="already defined for use with /img/a"):
        secrets.define(Secret(usage=VOLUME))


def test_a_malformed_uuid_is_an_invalid_argument() -> None:
    with pytest.raises(SecretError) as caught:
        parse_secret_uuid("../../etc/passwd")
    assert caught.value.kind == "invalid argument"
    assert caught.value.value == "../../etc/passwd"
    assert parse_secret_uuid("00000000-0000-0000-0000-000000000007") == uuid.UUID(int=7)
