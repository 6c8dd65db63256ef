"""Private files: what every service makes is its own under umask 022, and a key or token
file open to others is refused at start as ssh refuses such a key (issue 13, 4)."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from sevlaunch._files import read_private, write_atomic
from sevlaunch.errors import UnprotectedFileError, UsageError
from sevlaunch.orchestrate.services import cli, start_service
from tests.services import broker_files, run_cli, service
from tests.tlsca import TlsFiles

LOOSE = 0o022  # the usual umask: files 0644, sockets 0755


@pytest.fixture
def short(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory with a short path (a Unix socket's is at most 107 bytes)."""
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="sle-", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _modes(root: Path) -> dict[str, int]:
    """Every entry under ``root`` (and ``root`` itself) with its permission bits."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def _assert_private(root: Path) -> None:
    for name, mode in _modes(root).items():
        is_dir = (root / name).is_dir() and not (root / name).is_symlink()
        assert mode & 0o077 == 0, f"{root / name} is {mode:04o}"
        assert mode == (0o700 if is_dir else 0o600), f"{root / name} is {mode:04o}"


def test_broker_database_wal_shm_and_socket_are_0600_under_umask_022(short: Path) -> None:
    data = short / "data"
    data.mkdir(mode=0o700)
    sock = short / "b.sock"
    with service(
        "broker", short / "b", listen=f"unix:{sock}", umask=LOOSE, db=f"sqlite:///{data}/broker.db"
    ) as running:
        done = run_cli(
            "broker", "workload", "list", "--broker", running.address,
            "--owner-token-file", str(running.extra["owner"]),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        names = {p.name for p in data.iterdir()}
        assert {"broker.db", "broker.db-wal", "broker.db-shm"} <= names
        _assert_private(data)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600


def test_host_state_and_socket_are_private_under_umask_022(short: Path) -> None:
    sock = short / "h.sock"
    with service("host", short / "h", listen=f"unix:{sock}", umask=LOOSE) as running:
        done = run_cli("host", "list", "--all", "-c", running.address)
        assert done.returncode == 0, done.stderr
        assert (short / "h" / "state" / "host.db").exists()
        _assert_private(short / "h" / "state")
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600


def test_platform_state_and_socket_are_private_under_umask_022(short: Path) -> None:
    state, sock = short / "p", short / "p.sock"
    platform = start_service(
        "platform",
        cli("platform", "serve", "--state", str(state), "--listen", f"unix:{sock}",
            "--profile", "milan"),
        log=short / "p.log", ready=sock, connect=True, umask=LOOSE,  # the test's subject
    )  # fmt: skip
    try:
        done = run_cli("platform", "init", "--platform", str(sock))
        assert done.returncode == 0, done.stderr
        assert any(state.iterdir())
        _assert_private(state)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    finally:
        platform.stop(10)


def _loosen(path: Path, mode: int) -> Path:
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602])
def test_read_private_refuses_a_file_open_to_group_or_others(tmp_path: Path, mode: int) -> None:
    key = _loosen(write_atomic(tmp_path / "kek", b"k" * 32), mode)
    with pytest.raises(UnprotectedFileError) as refused:
        read_private(key, "KEK file")
    assert refused.value.mode == mode
    assert str(refused.value) == (
        f"the KEK file {key} is open to group or others (mode {mode:04o}); it must be "
        f"private to its owner: chmod 600 {key}"
    )


def test_read_private_reads_an_owner_only_file(tmp_path: Path) -> None:
    assert read_private(write_atomic(tmp_path / "t", b"secret"), "token file") == b"secret"
    assert read_private(_loosen(tmp_path / "t", 0o400), "token file") == b"secret"
    with pytest.raises(UsageError, match="cannot read the token file"):
        read_private(tmp_path / "absent", "token file")


@pytest.mark.parametrize("which", ["kek", "owner", "launcher"])
def test_broker_refuses_a_readable_kek_or_token_at_start(tmp_path: Path, which: str) -> None:
    files = broker_files(tmp_path)
    _loosen(files[which], 0o644)
    done = run_cli(
        "broker", "serve", "--db", f"sqlite:///{tmp_path / 'b.db'}", "--kek-file",
        str(files["kek"]), "--owner-token-file", str(files["owner"]),
        "--launcher-token-file", str(files["launcher"]), "--listen", "tcp:127.0.0.1:1",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"{files[which]} is open to group or others (mode 0644)" in done.stderr
    assert not (tmp_path / "b.db").exists()  # refused before anything was made


def test_host_refuses_a_readable_token_or_tls_key_at_start(tmp_path: Path, tls: TlsFiles) -> None:
    token = _loosen(write_atomic(tmp_path / "host.token", b"x" * 32), 0o640)
    done = run_cli(
        "host", "serve", "--state", str(tmp_path / "s"), "--listen", "tcp:127.0.0.1:1",
        "--host-token-file", str(token),
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1
    assert f"the host token file {token} is open to group or others (mode 0640)" in done.stderr
    key = _loosen(write_atomic(tmp_path / "tls.key", tls.key.read_bytes()), 0o644)
    token.chmod(0o600)
    done = run_cli(
        "host", "serve", "--state", str(tmp_path / "s"), "--listen", "tcp:127.0.0.1:1",
        "--host-token-file", str(token), "--tls-cert", str(tls.cert), "--tls-key", str(key),
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"the TLS private key {key} is open to group or others" in done.stderr


@pytest.mark.parametrize("durable", [True, False])
def test_write_atomic_fsyncs_only_what_must_survive_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durable: bool
) -> None:
    """State and keys are flushed before the rename; a launch blob (``durable=False``) is as
    private and atomic but not flushed, so a start does not wait on the disk."""
    import os

    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    path = write_atomic(tmp_path / "blob", b"dh-cert", 0o600, durable=durable)
    assert path.read_bytes() == b"dh-cert"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(tmp_path.iterdir()) == [path]
    assert bool(synced) is durable
