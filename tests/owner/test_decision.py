"""Step 11's one decision: a digest or a refusal with one code, never a bool; and the same
code from the broker and from the local owner for each kind of refusal."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from sevlaunch.broker.service import Broker, NewWorkload
from sevlaunch.crypto.launch import TransportKeys
from sevlaunch.errors import LaunchRefusedError, MeasurementMismatchError
from sevlaunch.formats.session import Measurement
from sevlaunch.orchestrate.owner_config import OwnerConfig
from sevlaunch.orchestrate.owner_port import LocalOwner
from sevlaunch.owner.decision import Reason, Registration, decide
from sevlaunch.owner.measurement import expected_measurement, matches
from sevlaunch.protocol import LaunchConfiguration, LaunchSecurityInfo
from tests.broker.conftest import (  # noqa: F401 - fixtures
    DIGEST,
    SECRET,
    Instance,
    make_instance,
    sqlite_url,
)
from tests.broker.fakeplatform import FakePlatform

TEK, TIK = bytes(range(16)), bytes(range(16, 32))
KEYS = TransportKeys(TEK, TIK)
OTHER = hashlib.sha256(b"another firmware").digest()
POLICY = 0x1


def _info(digest: bytes = DIGEST, *, tik: bytes = TIK, policy: int = POLICY) -> LaunchSecurityInfo:
    measured = expected_measurement(
        digest, api_major=1, api_minor=52, build_id=4, policy=policy, mnonce=bytes(16), tik=tik
    )
    return LaunchSecurityInfo(measured, 1, 52, 4, policy)


def _refused(*args: object, **kwargs: object) -> LaunchRefusedError:
    with pytest.raises(LaunchRefusedError) as caught:
        decide(*args, **kwargs)  # type: ignore[arg-type]
    return caught.value


def test_a_match_returns_the_digest_that_explains_it() -> None:
    registration = Registration(POLICY, (OTHER, DIGEST))
    assert decide(_info(), registration, KEYS) == DIGEST


def test_matches_raises_instead_of_returning_false() -> None:
    assert matches(_info(), DIGEST, TIK) is None  # type: ignore[func-returns-value]
    with pytest.raises(MeasurementMismatchError):
        matches(_info(), OTHER, TIK)


def test_each_refusal_has_its_code() -> None:
    registration = Registration(POLICY, (DIGEST,), min_api=(1, 53))
    assert _refused(_info(), registration, KEYS).reason == Reason.FIRMWARE_TOO_OLD
    registration = Registration(POLICY, (DIGEST,), min_api=(1, 52), min_build=5)
    assert _refused(_info(), registration, KEYS).reason == Reason.FIRMWARE_TOO_OLD
    assert _refused(_info(policy=0x5), Registration(POLICY, (DIGEST,)), KEYS).reason == (
        Reason.POLICY_MISMATCH
    )
    refused = _refused(_info(OTHER), Registration(POLICY, (DIGEST,)), KEYS)
    assert refused.reason == Reason.MEASUREMENT_MISMATCH
    assert "do not trust it" in str(refused)


def test_swapped_keys_are_diagnosed() -> None:
    refused = _refused(_info(tik=TEK), Registration(POLICY, (DIGEST,)), KEYS)
    assert refused.reason == Reason.MEASUREMENT_MISMATCH
    assert refused.diagnosis is not None
    assert "swapped" in refused.diagnosis


def test_an_unmeasurable_configuration_is_not_called_a_compromised_guest() -> None:
    """issue 14 item 6: a direct boot without kernelHashes='yes' cannot match a registered
    direct-boot digest; the refusal says so and how to fix it."""
    unhashed = LaunchConfiguration(direct_boot=True, kernel_hashes=False)
    refused = _refused(_info(OTHER), Registration(POLICY, (DIGEST,)), KEYS, unhashed)
    assert refused.reason == Reason.UNMEASURABLE
    assert "cannot be measured as registered" in str(refused)
    assert "do not trust" not in str(refused)
    assert refused.diagnosis is not None
    assert "kernelHashes='yes'" in refused.diagnosis
    hashed = LaunchConfiguration(direct_boot=True, kernel_hashes=True)
    assert _refused(_info(OTHER), Registration(POLICY, (DIGEST,)), KEYS, hashed).reason == (
        Reason.MEASUREMENT_MISMATCH
    )
    # the claim never releases anything: a matching measurement is what counts
    assert decide(_info(), Registration(POLICY, (DIGEST,)), KEYS, unhashed) == DIGEST


# ---- the broker and the local owner give the same code


class Owners:
    """One platform, one registration (policy, digest, minimum firmware) at both owners."""

    def __init__(self, broker: Broker, local: LocalOwner, platform: FakePlatform) -> None:
        self.broker, self.local, self.platform = broker, local, platform

    def broker_refusal(self, fault: str) -> str:
        started = self.broker.start_launch("web", *self._node_bytes())
        info = self._measured(base64.b64encode(started.godh).decode(),
                              base64.b64encode(started.session).decode(), fault)  # fmt: skip
        return self._reason(lambda: self.broker.finish_launch(started.id, info), fault,
                            lambda: self.broker.finish_launch(started.id, info))  # fmt: skip

    def local_refusal(self, fault: str) -> str:
        offer = self.local.begin(self.platform.node)
        info = self._measured(offer.dh_cert_b64, offer.session_b64, fault)
        return self._reason(lambda: self.local.attest(offer.launch_id, info), fault,
                            lambda: self.local.attest(offer.launch_id, info))  # fmt: skip

    def _node_bytes(self) -> tuple[bytes, bytes]:
        return self.platform.node.pdh, self.platform.node.cert_chain

    def _measured(self, godh: str, session: str, fault: str) -> LaunchSecurityInfo:
        keys = self.platform.launch_start(godh, session, POLICY)
        policy = 0x5 if fault == "policy" else POLICY
        digest = OTHER if fault == "measurement" else DIGEST
        measurement: Measurement = self.platform.launch_measure(keys, digest, policy)
        api = {"api": (1, 40), "build": (1, 50)}.get(fault, self.platform.api)
        build = 1 if fault == "build" else self.platform.build
        return LaunchSecurityInfo(measurement, *api, build, policy)

    @staticmethod
    def _reason(first: Callable[[], object], fault: str, again: Callable[[], object]) -> str:
        try:
            first()
        except LaunchRefusedError as exc:
            return exc.reason
        assert fault == "replay", f"{fault}: a secret was released"
        with pytest.raises(LaunchRefusedError) as caught:
            again()
        return caught.value.reason


@pytest.fixture
def owners(
    make_instance: Callable[..., Instance],  # noqa: F811
    sqlite_url: str,  # noqa: F811
    tmp_path: Path,
) -> Owners:
    platform = FakePlatform.create(b"parity")
    broker = make_instance(sqlite_url).broker
    broker.add_root(platform.ca_file, "lab")
    broker.add_workload(
        NewWorkload(
            "web", (POLICY,), (DIGEST,), min_api=(1, 50), min_build=2, secrets={"luks-key": SECRET}
        )
    )
    (tmp_path / "ca.cert").write_bytes(platform.ca_file)
    (tmp_path / "ark.cert").write_bytes(platform.ark.to_bytes())
    (tmp_path / "key").write_bytes(SECRET)
    (tmp_path / "owner.json").write_text(json.dumps({
        "policy": hex(POLICY), "trust-roots": ["ark.cert"], "ca": "ca.cert",
        "digests": [DIGEST.hex()], "secrets": {"luks-key": "key"},
        "min-api": "1.50", "min-build": 2,
    }))  # fmt: skip
    return Owners(broker, LocalOwner(OwnerConfig.load(tmp_path)), platform)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("measurement", Reason.MEASUREMENT_MISMATCH),
        ("policy", Reason.POLICY_MISMATCH),
        ("api", Reason.FIRMWARE_TOO_OLD),
        ("build", Reason.FIRMWARE_TOO_OLD),
        ("replay", Reason.REPLAY),
    ],
)
def test_broker_and_local_owner_refuse_alike(owners: Owners, fault: str, reason: Reason) -> None:
    assert owners.broker_refusal(fault) == owners.local_refusal(fault) == reason
