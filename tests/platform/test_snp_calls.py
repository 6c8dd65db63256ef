"""The SNP procedures and host operations over a real platform service: SNP brought up
before SEV as Linux does, a launch page by page with RMPUPDATE, a CPUID page the firmware
corrects, a guest request answered through the service."""

from __future__ import annotations

import time

import pytest

from sevlaunch.crypto.snp import guest_msg
from sevlaunch.errors import PlatformError
from sevlaunch.formats.snp.cpuid import CpuidEntry, CpuidTable
from sevlaunch.formats.snp.guest_msg import (
    MessageHeader,
    MessageType,
    ReportRequest,
    ReportResponse,
)
from sevlaunch.formats.snp.report import AttestationReport
from sevlaunch.formats.snp.secrets import SecretsPage
from sevlaunch.formats.status import Status
from sevlaunch.platform import snp_calls, snp_host
from sevlaunch.platform.background import BackgroundService
from sevlaunch.platform.client import PlatformClient

WINDOW = 3 << 36
GCTX = WINDOW + 0xF_0000_0000


def test_snp_comes_up_around_an_idle_sev_platform(real_service: BackgroundService) -> None:
    with PlatformClient(real_service.socket_path) as client:
        client.init()
        status = client.run(snp_calls.ensure_snp_init())
        assert status.state == 1
        assert client.platform_status().state == 1  # SEV is INIT again
        assert client.run(snp_calls.ensure_snp_init()) == status


def test_snp_cannot_come_up_under_running_sev_guests(real_service: BackgroundService) -> None:
    with PlatformClient(real_service.socket_path) as client:
        client.init()
        client.launch_start(0x1, b"", b"")
        with pytest.raises(PlatformError, match="SEV guest"):
            client.run(snp_calls.ensure_snp_init())


def _page(client: PlatformClient, gpa: int, page_type: int, plain: bytes) -> bytes:
    spa = WINDOW + gpa
    assert client.run(snp_host.rmp_update(spa, 1, private=True, asid=1, gpa=gpa)).ok
    reply = client.run(snp_calls.launch_update(GCTX, spa, page_type, plain))
    assert reply.status == 0, reply.detail
    return snp_calls.page_after(reply, spa, plain)


def test_a_launch_and_a_report_through_the_service(real_service: BackgroundService) -> None:
    with PlatformClient(real_service.socket_path) as client:
        client.run(snp_calls.ensure_snp_init())
        client.run(snp_calls.gctx_create(GCTX))
        client.run(snp_calls.launch_start(GCTX, 0x30000))
        client.run(snp_calls.activate(GCTX, 1))
        firmware_page = _page(client, 0xFFFF_F000, 1, b"\x90" * 4096)
        assert firmware_page != b"\x90" * 4096
        in_use = client.run(
            snp_host.rmp_update(WINDOW + 0xFFFF_F000, 1, private=True, asid=2, gpa=0)
        )
        assert (in_use.ok, in_use.code) == (False, "FAIL_INUSE")
        secrets_cipher = _page(client, 0x80_D000, 5, bytes(4096))
        refused = CpuidTable((CpuidEntry(1, ecx=1 << 24),)).to_page()
        spa = WINDOW + 0x80_E000
        assert client.run(snp_host.rmp_update(spa, 1, private=True, asid=1, gpa=0x80_E000)).ok
        reply = client.run(snp_calls.launch_update(GCTX, spa, 6, refused))
        assert reply.status == Status.INVALID_PARAM
        fixed = CpuidTable.from_bytes(snp_calls.page_after(reply, spa, refused))
        assert fixed.entries[0].ecx == 0
        client.run(
            snp_calls.launch_finish(
                GCTX,
                id_block=None,
                id_auth=None,
                author_key=False,
                vcek_disabled=False,
                host_data=b"D" * 32,
            )
        )
        secrets = SecretsPage.from_bytes(
            client.run(snp_host.guest_read(GCTX, WINDOW + 0x80_D000, secrets_cipher))
        )
        header = MessageHeader(msg_seqno=1, msg_type=MessageType.REPORT_REQ, msg_size=0)
        page = guest_msg.seal(secrets.vmpck0, header, ReportRequest(b"R" * 64).to_bytes())
        answer = client.run(snp_calls.guest_request(GCTX, page))
        _, payload = guest_msg.open_message(secrets.vmpck0, answer)
        report = AttestationReport.from_bytes(ReportResponse.from_bytes(payload).report)
        assert (report.report_data, report.host_data) == (b"R" * 64, b"D" * 32)
        client.run(snp_calls.decommission(GCTX))
        assert client.run(snp_host.info()).guests == 0


def test_an_snp_context_is_reached_only_through_its_connection(
    real_service: BackgroundService,
) -> None:
    from sevlaunch.errors import FirmwareError

    with PlatformClient(real_service.socket_path) as owner:
        owner.run(snp_calls.ensure_snp_init())
        owner.run(snp_calls.gctx_create(GCTX))
        owner.run(snp_calls.launch_start(GCTX, 0x30000))
        with PlatformClient(real_service.socket_path) as stranger:
            for attempt in (
                snp_calls.activate(GCTX, 1),
                snp_calls.decommission(GCTX),
                snp_host.guest_read(GCTX, WINDOW, bytes(16)),
            ):
                with pytest.raises((FirmwareError, PlatformError), match="this connection"):
                    stranger.run(attempt)
        owner.run(snp_calls.activate(GCTX, 1))
        assert owner.run(snp_host.info()).guests == 1
    with PlatformClient(real_service.socket_path) as later:
        deadline = time.monotonic() + 10  # the release runs after the close, asynchronously
        while later.run(snp_host.info()).guests and time.monotonic() < deadline:
            time.sleep(0.02)
        assert later.run(snp_host.info()).guests == 0  # released when its connection closed
