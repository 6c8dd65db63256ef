"""Launch security info and state: libvirt's parameter names, its checks in its order, QEMU's
argument names, and the measurement typed once."""

from __future__ import annotations

import base64

import pytest

from sevlaunch.errors import HostError
from sevlaunch.host.domxml import LaunchSecurity
from sevlaunch.host.launchsec import (
    check_secret_request,
    check_state_params,
    inject_arguments,
    security_info,
)

MEASURE = base64.b64encode(bytes(range(48))).decode()
SEV = {"api-major": 0, "api-minor": 24, "build-id": 15, "policy": 3, "state": "launch-secret"}
HEADER, SECRET = base64.b64encode(b"h" * 52).decode(), base64.b64encode(b"s" * 32).decode()


def test_the_info_is_the_measurement_and_the_platform_values() -> None:
    info = security_info({"data": MEASURE}, SEV)
    assert info.to_wire() == {
        "sev-measurement": MEASURE,
        "sev-api-major": 0,
        "sev-api-minor": 24,
        "sev-build-id": 15,
        "sev-policy": 3,
    }


def test_a_hypervisors_short_measurement_is_an_internal_error_with_its_cause() -> None:
    with pytest.raises(HostError) as caught:
        security_info({"data": base64.b64encode(b"short").decode()}, SEV)
    assert caught.value.kind == "internal error"
    assert caught.value.__cause__ is not None


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"sev-secret-gpa": 1}, "parameter 'sev-secret-gpa' not supported"),
        ({"sev-secret": b"bytes"}, "invalid type for parameter 'sev-secret'"),
        ({"sev-secret-set-address": True}, "invalid type for parameter 'sev-secret-set-address'"),
    ],
)
def test_parameters_are_checked_by_name_and_type(params: dict[str, object], message: str) -> None:
    with pytest.raises(HostError, match=message):
        check_state_params(params)


def test_only_sev_domains_take_a_secret_and_both_parts_in_base64() -> None:
    sev = LaunchSecurity(policy=1)
    check_secret_request(sev, {"sev-secret-header": HEADER, "sev-secret": SECRET})
    for lsec in (None, LaunchSecurity(type="sev-snp", policy=0x30000)):
        with pytest.raises(HostError, match="only supported in SEV-enabled domains"):
            check_secret_request(lsec, {})
    with pytest.raises(HostError, match="Both secret and the secret header are required"):
        check_secret_request(sev, {"sev-secret": SECRET})
    with pytest.raises(HostError, match="'sev-secret' is not valid base64") as caught:
        check_secret_request(sev, {"sev-secret-header": HEADER, "sev-secret": "!!"})
    assert caught.value.__cause__ is not None


def test_qemus_argument_names() -> None:
    assert inject_arguments({"sev-secret-header": HEADER, "sev-secret": SECRET}) == {
        "packet-header": HEADER,
        "secret": SECRET,
    }
    with_gpa = {"sev-secret-header": HEADER, "sev-secret": SECRET, "sev-secret-set-address": 4096}
    assert inject_arguments(with_gpa)["gpa"] == 4096
