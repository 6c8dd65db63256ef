"""libvirt's secret XML: parsing, libvirt's errors, round trips."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sevlaunch.errors import HostError, SecretError
from sevlaunch.host.secrets import USAGE_ELEMENTS, Secret, SecretUsage

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
