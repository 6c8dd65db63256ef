"""The platform service over a fake firmware: concurrency, serialisation, hostile clients, state."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import stat
import struct
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from sevlaunch.errors import FirmwareError, PlatformError, PlatformUnavailableError
from sevlaunch.platform import protocol as p
from sevlaunch.platform.background import BackgroundService
from sevlaunch.platform.client import AsyncPlatformClient, PlatformClient
from sevlaunch.platform.latency import Latency
from sevlaunch.platform.service import PlatformService, open_service
from sevlaunch.platform.state import STATE_FILE, StateDir, StoredState
from tests.platform.conftest import fake_of
from tests.platform.fakes import CRASH, PROFILE, FakeFirmware, fake_factory

Start = Callable[[], BackgroundService]


def _raw(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(path))
    return sock


def _read_reply(sock: socket.socket) -> p.Response | None:
    """The next response, or None when the service hung up."""
    decoder = p.FrameDecoder()
    while (fr := decoder.next_frame()) is None:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        decoder.feed(chunk)
    return p.decode_response(fr)


def test_status_and_length_query_through_the_client(fake_service: Start) -> None:
    running = fake_service()
    with PlatformClient(running.socket_path) as client:
        status = client.platform_status()
        assert (status.api_major, status.api_minor, status.build_id) == (1, 55, 21)
        assert client.get_id() == b"chip" + bytes(60)
        assert client.profile() == p.ProfileReply("milan", 1, 55, 21, 51, 1, 410, 99)
        assert (client.signed_cek(), client.ca_chain(), client.ark()) == (
            b"signed-cek",
            b"ask-ark",
            b"ark",
        )


def test_firmware_status_raises_firmware_error(fake_service: Start) -> None:
    running = fake_service()
    with PlatformClient(running.socket_path) as client:
        client.init(es=False)
        with pytest.raises(FirmwareError) as info:
            client.init(es=False)
    assert info.value.status == 0x01
    assert "INIT failed: fw_error=1 'Platform state is invalid'" in str(info.value)


def test_twenty_threads_are_served_one_command_at_a_time(fake_service: Start) -> None:
    running = fake_service()
    fake_of(running).delay = 0.002
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            with PlatformClient(running.socket_path) as client:
                for _ in range(5):
                    if i % 2:
                        assert client.get_id() == b"chip" + bytes(60)
                    else:
                        assert client.platform_status().api_major == 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    fw = fake_of(running)
    assert fw.calls == 10 * 5 + 10 * 5 * 2  # GET_ID is a length query plus the real call
    assert fw.max_running == 1


def test_one_client_shared_by_threads(fake_service: Start) -> None:
    running = fake_service()
    with PlatformClient(running.socket_path) as client:
        ids: list[bytes] = []
        threads = [threading.Thread(target=lambda: ids.append(client.get_id())) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert ids == [b"chip" + bytes(60)] * 8


def test_async_clients_run_concurrently(fake_service: Start) -> None:
    running = fake_service()

    async def main() -> list[bytes]:
        clients = [AsyncPlatformClient(running.socket_path) for _ in range(10)]
        try:
            return await asyncio.gather(*(c.get_id() for c in clients))
        finally:
            for c in clients:
                await c.close()

    assert asyncio.run(main()) == [b"chip" + bytes(60)] * 10


def test_firmware_bug_gets_an_error_reply_and_the_service_survives(fake_service: Start) -> None:
    running = fake_service()
    with PlatformClient(running.socket_path) as client:
        reply = client.request(p.MailboxRequest(CRASH, b""))
        assert isinstance(reply, p.ErrorReply)
        assert reply.code is p.ErrorCode.FIRMWARE_FAULT
        assert "firmware bug" in reply.message
        with pytest.raises(PlatformError, match="FIRMWARE_FAULT"):
            client.mailbox(CRASH, b"")
        assert client.platform_status().api_major == 1


def test_memory_outside_the_regions_answers_invalid_address(fake_service: Start) -> None:
    running = fake_service()
    with PlatformClient(running.socket_path) as client:
        reply = client.mailbox(0x0C, struct.pack("<QI", 0x5000, 64))
    assert reply.status == 0x09  # the firmware turned the AddressError into INVALID_ADDRESS


def test_malformed_payload_gets_an_error_and_the_connection_stays_usable(
    fake_service: Start,
) -> None:
    running = fake_service()
    with _raw(running.socket_path) as sock:
        sock.sendall(p.frame(p.Kind.MAILBOX, b"\x01\x02"))
        reply = _read_reply(sock)
        assert isinstance(reply, p.ErrorReply)
        assert reply.code is p.ErrorCode.MALFORMED
        sock.sendall(p.frame(0x42, b""))
        reply = _read_reply(sock)
        assert isinstance(reply, p.ErrorReply)
        assert reply.code is p.ErrorCode.UNKNOWN_OPERATION
        sock.sendall(p.encode_request(p.ServiceRequest(p.ServiceOp.ARK)))
        assert _read_reply(sock) == p.BlobReply(b"ark")


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (b"GET / HTTP/1.1\r\n", p.ErrorCode.MALFORMED),
        (b"SEVP" + bytes([9, 1, 0, 0]) + bytes(4), p.ErrorCode.UNSUPPORTED_VERSION),
        (
            b"SEVP" + bytes([1, 1, 0, 0]) + struct.pack("<I", 0xFFFFFFFF),
            p.ErrorCode.TOO_LARGE,
        ),
    ],
)
def test_broken_headers_are_answered_then_disconnected(
    fake_service: Start, header: bytes, code: p.ErrorCode
) -> None:
    running = fake_service()
    with _raw(running.socket_path) as sock:
        sock.sendall(header)
        reply = _read_reply(sock)
        assert isinstance(reply, p.ErrorReply)
        assert reply.code is code
        assert _read_reply(sock) is None
    with PlatformClient(running.socket_path) as client:
        assert client.platform_status().api_major == 1


def test_garbage_and_truncated_frames_never_take_the_service_down(fake_service: Start) -> None:
    running = fake_service()
    rng = random.Random(1234)
    good = p.encode_request(p.MailboxRequest(0x04, bytes(12)))
    for i in range(60):
        with _raw(running.socket_path) as sock:
            if i % 3 == 0:
                sock.sendall(rng.randbytes(rng.randrange(1, 4096)))
            elif i % 3 == 1:
                sock.sendall(good[: rng.randrange(1, len(good))])
            else:
                sock.sendall(b"SEVP\x01" + rng.randbytes(rng.randrange(0, 64)))
            sock.shutdown(socket.SHUT_WR)
            reply = _read_reply(sock)
            assert reply is None or isinstance(reply, p.ErrorReply)
    with PlatformClient(running.socket_path) as client:
        assert client.platform_status().api_major == 1


def test_state_is_saved_atomically_with_mode_0600_when_it_changes(
    fake_service: Start, short_dir: Path
) -> None:
    running = fake_service()
    state_file = short_dir / "state" / STATE_FILE
    before = state_file.read_bytes()
    with PlatformClient(running.socket_path) as client:
        client.platform_status()
        assert state_file.read_bytes() == before  # a read-only command writes nothing
        client.init(es=False)
        client.pdh_gen()
    stored = StoredState.from_bytes(state_file.read_bytes(), path=state_file)
    assert FakeFirmware(stored.firmware).pdh_generation == 1
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((short_dir / "state").stat().st_mode) == 0o700
    assert sorted(f.name for f in (short_dir / "state").iterdir()) == ["lock", STATE_FILE]


def test_socket_is_created_with_mode_0600(fake_service: Start) -> None:
    running = fake_service()
    assert stat.S_IMODE(running.socket_path.stat().st_mode) == 0o600


def test_state_survives_a_restart(short_dir: Path) -> None:
    service = open_service(short_dir / "state", factory=fake_factory)
    with BackgroundService(service, short_dir / "sock"), PlatformClient(short_dir / "sock") as c:
        c.init(es=False)
        c.pdh_gen()
        c.pdh_gen()
    assert service.store is not None
    service.store.unlock()
    assert not (short_dir / "sock").exists()  # removed on a clean stop
    again = open_service(short_dir / "state", factory=fake_factory)
    assert isinstance(again.firmware, FakeFirmware)
    assert again.firmware.pdh_generation == 2
    assert again.store is not None
    again.store.unlock()


def test_a_second_service_cannot_take_the_state_dir(short_dir: Path) -> None:
    first = open_service(short_dir / "state", factory=fake_factory)
    with pytest.raises(PlatformError, match="in use by another platform service"):
        open_service(short_dir / "state", factory=fake_factory)
    assert first.store is not None
    first.store.unlock()
    open_service(short_dir / "state", factory=fake_factory).store.unlock()  # type: ignore[union-attr]


def test_profile_of_a_state_dir_is_kept(short_dir: Path) -> None:
    open_service(short_dir / "s", "rome", factory=fake_factory).store.unlock()  # type: ignore[union-attr]
    with pytest.raises(PlatformError, match="holds a rome platform, not genoa"):
        open_service(short_dir / "s", "genoa", factory=fake_factory)
    kept = open_service(short_dir / "s", None, factory=fake_factory)
    assert kept.profile.name == "rome"
    kept.store.unlock()  # type: ignore[union-attr]


def test_damaged_state_is_refused(short_dir: Path) -> None:
    open_service(short_dir / "s", factory=fake_factory).store.unlock()  # type: ignore[union-attr]
    state_file = short_dir / "s" / STATE_FILE
    data = bytearray(state_file.read_bytes())
    data[-40] ^= 1
    state_file.write_bytes(bytes(data))
    with pytest.raises(PlatformError, match="damaged"):
        open_service(short_dir / "s", factory=fake_factory)


def test_stale_socket_is_replaced_but_a_live_one_or_a_file_is_not(
    fake_service: Start, short_dir: Path
) -> None:
    path = short_dir / "sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    running = fake_service()
    with PlatformClient(path) as client:
        assert client.platform_status().api_major == 1
    other = PlatformService(FakeFirmware(), PROFILE)
    with pytest.raises(PlatformError, match="another platform service is listening"):
        BackgroundService(other, running.socket_path).__enter__()
    regular = short_dir / "file"
    regular.write_text("x")
    with pytest.raises(PlatformError, match="not a socket"):
        BackgroundService(other, regular).__enter__()
    assert regular.read_text() == "x"


def test_no_service_raises_platform_unavailable(short_dir: Path) -> None:
    with pytest.raises(PlatformUnavailableError, match="sevlaunch platform serve"):
        PlatformClient(short_dir / "nothing").platform_status()


def test_latency_is_spent_while_holding_the_psp(short_dir: Path) -> None:
    """The PSP stays busy for the modelled cost; the emulator's computing (1 ms per command
    on this clock) counts towards it, a command that computed longer than its cost sleeps no
    more."""
    held: list[tuple[float, bool]] = []
    service: PlatformService
    ticks = iter(range(100))

    async def sleep(seconds: float) -> None:
        held.append((round(seconds, 9), service._psp.locked()))

    def clock() -> float:
        return next(ticks) * 0.001

    service = PlatformService(FakeFirmware(), PROFILE, latency=Latency(), sleep=sleep, clock=clock)
    with BackgroundService(service, short_dir / "sock"), PlatformClient(short_dir / "sock") as c:
        c.platform_status()
        c.mailbox(0x30, bytes(0x24))  # LAUNCH_START (the fake refuses it; the PSP still worked)
    assert held == [(0.0, True), (0.003, True)]


def test_latency_model() -> None:
    real = Latency()
    update = struct.pack("<I4xQI", 1, 0, 6 * 1024 * 1024)
    assert real.cost(0x31, update) == pytest.approx(1.0005)
    assert real.cost(0x30, b"") == 0.004
    assert real.cost(0x04, b"") == 0.0005
    assert real.cost(0x31, b"short") == 0.0005


def test_state_dir_save_leaves_no_temporary_files(short_dir: Path) -> None:
    store = StateDir(short_dir / "s")
    store.lock()
    for i in range(3):
        store.save(StoredState("milan", bytes([i]) * 10))
    assert store.load() == StoredState("milan", bytes([2]) * 10)
    assert sorted(os.listdir(store.path)) == ["lock", STATE_FILE]
    store.unlock()
