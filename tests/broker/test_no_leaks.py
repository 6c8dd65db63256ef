"""Neither the logs (at DEBUG, SQL included) nor the database files hold a plaintext TEK,
TIK or secret value, in raw, hex or base64 form."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.broker.conftest import DIGEST, LAUNCHER, POLICY, SECRET, Instance, setup_owner, start
from tests.broker.fakeplatform import FakePlatform


def _forms(value: bytes) -> list[bytes]:
    return [value, value.hex().encode(), value.hex().upper().encode(), base64.b64encode(value)]


def test_logs_and_database_hold_no_keys_or_secrets(
    make_instance: Callable[..., Instance],
    tmp_path: Path,
    platform: FakePlatform,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.DEBUG)
    try:
        instance = make_instance(f"sqlite:///{tmp_path / 'broker.db'}")
        setup_owner(instance.client, platform)
        secrets = [SECRET]
        keys = []
        for digest in (DIGEST, bytes(32)):  # one release, one refusal
            launch = start(instance.client, platform)
            k = platform.launch_start(str(launch["dhCert"]), str(launch["session"]), POLICY)
            keys.append(k)
            r = instance.client.post(
                f"/v1/launches/{launch['id']}/measurement",
                headers=LAUNCHER,
                json=platform.info(platform.launch_measure(k, digest, POLICY), POLICY),
            )
            assert r.status_code in (200, 403)
        instance.broker.engine.dispose()
    finally:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    assert any("sqlalchemy" in r.name for r in caplog.records), "SQL logging was not captured"
    logs = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records).encode()
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("broker.db*"))
    assert stored, "no database file found"
    needles = [*secrets, *(k.tek for k in keys), *(k.tik for k in keys)]
    for needle in needles:
        for form in _forms(needle):
            assert form not in logs
            assert form not in stored
