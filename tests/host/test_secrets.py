"""virSecret-like secrets: libvirt's secret XML, and a store that never hands values to readers."""

from __future__ import annotations

import itertools
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sevlaunch.errors import HostError, SecretError
from sevlaunch.host.secrets import (
    MAX_VALUE,
    USAGE_ELEMENTS,
    Secret,
    SecretBackend,
    SecretStore,
    SecretUsage,
)

VOLUME_SECRET = """\
<secret ephemeral='no' private='yes'>
  <uuid>c1f11a6d-8c5d-4a3e-ac7a-4e171c5e0d4a</uuid>
  <description>LUKS passphrase for the data disk</description>
  <usage type='volume'>
    <volume>/var/lib/libvirt/images/data.img</volume>
  </usage>
</secret>
"""

GODH_SECRET = """\
<secret ephemeral='no' private='yes'>
  <description>GODH certificate for sev-guest</description>
</secret>
"""


def counting_uuids() -> SecretStore:
    counter = itertools.count(1)
    return SecretStore(new_uuid=lambda: uuid.UUID(int=next(counter)))


# -- XML ------------------------------------------------------------------------------------


def test_volume_secret_parses_and_round_trips() -> None:
    secret = Secret.from_xml(VOLUME_SECRET)
    assert secret == Secret(
        uuid=uuid.UUID("c1f11a6d-8c5d-4a3e-ac7a-4e171c5e0d4a"),
        private=True,
        description="LUKS passphrase for the data disk",
        usage=SecretUsage(type="volume", target="/var/lib/libvirt/images/data.img"),
    )
    assert secret.usage_id == "/var/lib/libvirt/images/data.img"
    assert Secret.from_xml(secret.to_xml()) == secret
    assert secret.to_xml().startswith('<secret ephemeral="no" private="yes">\n  <uuid>c1f11a6d')


def test_secret_without_uuid_or_usage() -> None:
    secret = Secret.from_xml(GODH_SECRET)
    assert (secret.uuid, secret.usage, secret.ephemeral) == (None, None, False)
    assert "<uuid>" not in secret.to_xml()


_texts = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=30
).filter(lambda s: s.strip() == s and "\ufffe" not in s and "\uffff" not in s)


@settings(max_examples=100, deadline=None)
@given(
    secret=st.builds(
        Secret,
        uuid=st.none() | st.uuids(),
        ephemeral=st.booleans(),
        private=st.booleans(),
        description=st.none() | _texts,
        usage=st.none()
        | st.builds(SecretUsage, type=st.sampled_from(sorted(USAGE_ELEMENTS)), target=_texts),
    )
)
def test_generated_secrets_round_trip(secret: Secret) -> None:
    assert Secret.from_xml(secret.to_xml()) == secret


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("<domain/>", "unexpected root element <domain>, expecting <secret>"),
        ("<secret><uuid>xyz</uuid></secret>", "internal error: malformed uuid element"),
        ("<secret ephemeral='sometimes'/>", "Invalid value for attribute 'ephemeral'"),
        ("<secret><usage type='floppy'/></secret>", "unknown secret usage type floppy"),
        ("<secret><usage/></secret>", "unknown secret usage type"),
        (
            "<secret><usage type='volume'/></secret>",
            "volume usage specified, but volume is missing",
        ),
        ("<secret><usage type='ceph'/></secret>", "Ceph usage specified, but name is missing"),
        ("<secret", "XML error: (secret_definition):1:"),
    ],
)
def test_bad_secret_xml(xml: str, message: str) -> None:
    with pytest.raises(SecretError) as caught:
        Secret.from_xml(xml)
    assert message in str(caught.value)
    assert isinstance(caught.value, HostError)


# -- the store ------------------------------------------------------------------------------


def test_store_satisfies_the_backend_protocol() -> None:
    backend: SecretBackend = SecretStore()
    defined = backend.define(Secret())
    assert defined.uuid is not None


def test_define_assigns_uuids_and_lists_definitions_only() -> None:
    store = counting_uuids()
    first = store.define(Secret.from_xml(GODH_SECRET))
    second = store.define(Secret(description="session blob", private=True))
    assert (first.uuid, second.uuid) == (uuid.UUID(int=1), uuid.UUID(int=2))
    store.set_value(uuid.UUID(int=2), b"\x01\x02VALUE-XYZ")
    listed = store.list()
    assert listed == (first, second)
    assert all("VALUE-XYZ" not in item.to_xml() for item in listed)
    assert all("VALUE-XYZ" not in repr(item) for item in listed)
    assert "VALUE-XYZ" not in repr(store)
    assert store.has_value(uuid.UUID(int=2))
    assert not store.has_value(uuid.UUID(int=1))


def test_values_are_set_replaced_and_read_internally() -> None:
    store = counting_uuids()
    ref = store.define(Secret()).uuid
    assert ref is not None
    store.set_value(ref, b"first")
    store.set_value(ref, b"second")
    assert store.get_value(ref) == b"second"


def test_redefine_keeps_the_value() -> None:
    store = counting_uuids()
    secret = store.define(Secret(description="old"))
    assert secret.uuid is not None
    store.set_value(secret.uuid, b"v")
    store.define(Secret(uuid=secret.uuid, description="new"))
    assert store.lookup(secret.uuid).description == "new"
    assert store.get_value(secret.uuid) == b"v"


def test_undefine_removes_definition_and_value() -> None:
    store = counting_uuids()
    ref = store.define(Secret()).uuid
    assert ref is not None
    store.set_value(ref, b"v")
    store.undefine(ref)
    assert store.list() == ()
    with pytest.raises(SecretError, match="Secret not found: no secret with matching uuid"):
        store.get_value(ref)


@pytest.mark.parametrize("action", ["lookup", "get_value", "undefine", "has_value", "set_value"])
def test_unknown_uuid_is_not_found(action: str) -> None:
    store = SecretStore()
    missing = uuid.UUID(int=99)
    call = getattr(store, action)
    with pytest.raises(SecretError) as caught:
        call(missing, b"x") if action == "set_value" else call(missing)
    assert str(caught.value) == (
        "Secret not found: no secret with matching uuid '00000000-0000-0000-0000-000000000063'; "
        "list them with 'secret-list'"
    )


def test_value_never_set_is_reported() -> None:
    store = counting_uuids()
    ref = store.define(Secret()).uuid
    assert ref is not None
    with pytest.raises(SecretError, match="does not have a value"):
        store.get_value(ref)


def test_usage_must_be_unique_and_fixed() -> None:
    store = counting_uuids()
    usage = SecretUsage(type="volume", target="/img/a")
    first = store.define(Secret(usage=usage))
    with pytest.raises(SecretError, match="already defined for use with /img/a"):
        store.define(Secret(usage=usage))
    with pytest.raises(SecretError, match="is already defined for use with /img/a"):
        store.define(Secret(uuid=first.uuid, usage=SecretUsage(type="volume", target="/img/b")))


def test_private_flag_cannot_be_dropped() -> None:
    store = counting_uuids()
    secret = store.define(Secret(private=True))
    with pytest.raises(SecretError, match="cannot change private flag"):
        store.define(Secret(uuid=secret.uuid, private=False))


def test_oversized_values_are_refused() -> None:
    store = counting_uuids()
    ref = store.define(Secret()).uuid
    assert ref is not None
    with pytest.raises(SecretError, match="exceeds the"):
        store.set_value(ref, bytes(MAX_VALUE + 1))
    assert not store.has_value(ref)
