"""The broker's launch half: a platform is remembered only as the verifier's own object, under
the exact bytes it was verified from, and a cache hit is never a way around verification."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sevlaunch.broker.service import Broker, NewWorkload
from sevlaunch.crypto.chain import VerifiedPlatform
from sevlaunch.errors import LaunchRefusedError
from tests.broker.conftest import DIGEST, POLICY, Instance
from tests.broker.fakeplatform import FakePlatform


def _broker(make_instance: Callable[..., Instance], url: str, platform: FakePlatform) -> Broker:
    broker = make_instance(url).broker
    broker.add_root(platform.ca_file, "lab")
    broker.add_workload(NewWorkload("web", (POLICY,), (DIGEST,)))
    return broker


def test_the_memo_holds_the_verifiers_object_under_the_exact_bytes(
    make_instance: Callable[..., Instance], sqlite_url: str, platform: FakePlatform
) -> None:
    broker = _broker(make_instance, sqlite_url, platform)
    node = platform.node
    broker.start_launch("web", node.pdh, node.cert_chain)
    remembered = broker.catalog.view.platforms
    assert list(remembered) == [(node.pdh, node.cert_chain, None)]
    assert isinstance(remembered[(node.pdh, node.cert_chain, None)].platform, VerifiedPlatform)
    broker.start_launch("web", node.pdh, node.cert_chain)
    hits = [a.detail for a in broker.audit() if a.action == "launch.start"]
    assert [h["chain-cache"] for h in hits if isinstance(h, dict)] == ["miss", "hit"]


def test_a_chain_flipped_after_a_hit_is_verified_again_and_refused(
    make_instance: Callable[..., Instance], sqlite_url: str, platform: FakePlatform
) -> None:
    broker = _broker(make_instance, sqlite_url, platform)
    node = platform.node
    broker.start_launch("web", node.pdh, node.cert_chain)
    flipped = bytearray(node.cert_chain)
    flipped[0x100] ^= 0x01
    with pytest.raises(LaunchRefusedError) as refused:
        broker.start_launch("web", node.pdh, bytes(flipped))
    assert refused.value.reason == "platform-not-verified"
