"""Storage faults (issue 13, 8): a full or read-only disk under the host manager or the broker
gives a JSON 503 naming the cause, reads keep working and writes recover; a read-only state
directory at start is one line naming the path and exit 1, for all three services.

The disks are small tmpfs mounts made here and unmounted after (root only; skipped with the
reason otherwise): root ignores file modes, so read-only is a real ``remount,ro``.
"""

from __future__ import annotations

import base64
import errno
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sevlaunch import _storage
from sevlaunch.errors import StorageError
from tests.services import Service, broker_files, run_cli, service

MiB = 1 << 20


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def disk() -> Iterator[Path]:
    """An 8 MiB tmpfs, unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs (a full disk for the service)")
    where = Path(tempfile.mkdtemp(prefix="sl-disk-", dir="/tmp"))
    done = _mount("-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(where))
    if done.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        _mount("-o", "remount,rw", str(where))
        if subprocess.run(["umount", str(where)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=False)
        shutil.rmtree(where, ignore_errors=True)


def _fill(directory: Path) -> Path:
    """Take every free byte of ``directory``'s file system."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (MiB, 4096, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return filler


def _http(running: Service) -> httpx.Client:
    port = running.address.rsplit(":", 1)[1]
    return httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {running.token.decode()}"},
        timeout=30,
    )


def _reason(running: Service, response: httpx.Response) -> str:
    body = response.json()
    return str(body["error"]["code"] if running.kind == "host" else body["error"])


def _write(running: Service, client: httpx.Client, n: int) -> httpx.Response:
    """One write that needs fresh pages (a few KiB of WAL at least)."""
    if running.kind == "host":
        xml = (
            f"<domain type='kvm'><name>big-{n}</name><memory unit='KiB'>65536</memory>"
            f"<description>{'d' * 200_000}</description>"
            "<os><type arch='x86_64' machine='pc'>hvm</type></os></domain>"
        )
        return client.post("/v1/domains", content=xml, headers={"Content-Type": "application/xml"})
    digests = [os.urandom(32).hex() for _ in range(256)]  # the most a workload holds
    secrets = {"luks-key": base64.b64encode(os.urandom(64)).decode()}
    body = {"name": f"big-{n}", "policies": [1], "digests": digests, "secrets": secrets}
    return client.post("/v1/workloads", json=body)


def _read(running: Service, client: httpx.Client) -> httpx.Response:
    return client.get("/v1/domains?all=true" if running.kind == "host" else "/v1/workloads")


def _until_refused(running: Service, client: httpx.Client, start: int) -> httpx.Response:
    for n in range(start, start + 30):  # bounded: 30 writes of ~1 MiB overfill 8 MiB
        response = _write(running, client, n)
        if response.status_code != 201 and response.status_code != 200:
            return response
    raise AssertionError("every write succeeded on a full disk")


@pytest.fixture(params=["host", "broker"])
def on_disk(request: pytest.FixtureRequest, disk: Path) -> Iterator[Service]:
    kind = str(request.param)
    root = Path(tempfile.mkdtemp(prefix=f"sl-{kind}-", dir="/tmp"))
    try:
        if kind == "host":
            extra = ("--state", str(disk / "state"))
            with service("host", root, extra=extra) as running:
                yield running
        else:
            with service("broker", root, db=f"sqlite:///{disk}/broker.db") as running:
                yield running
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_full_disk_is_a_json_503_reads_work_and_writes_recover(
    on_disk: Service, disk: Path
) -> None:
    with _http(on_disk) as client:
        assert _write(on_disk, client, 0).status_code in (200, 201)
        filler = _fill(disk)
        refused = _until_refused(on_disk, client, 1)
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"] == "application/json"
        assert _reason(on_disk, refused) == "storage-full"
        assert "reads still work" in refused.text
        listed = _read(on_disk, client)
        assert listed.status_code == 200
        assert "big-0" in listed.text
        filler.unlink()
        assert _write(on_disk, client, 100).status_code in (200, 201)
        assert "big-100" in _read(on_disk, client).text
    assert on_disk.proc.poll() is None


SECRET_XML = "<secret ephemeral='no' private='yes'><description>disk</description></secret>"


def test_a_read_only_file_system_under_a_running_host_is_a_json_503(disk: Path) -> None:
    """The host writes each secret value as a file in STATE/secrets: a read-only tmpfs
    mounted over that directory while the daemon runs (a file system the daemon holds open
    for writing cannot be remounted read-only) refuses the next value with a 503."""
    root = Path(tempfile.mkdtemp(prefix="sl-host-", dir="/tmp"))
    values = root / "state" / "secrets"
    try:
        with service("host", root) as running, _http(running) as client:
            made = client.post(
                "/v1/secrets", content=SECRET_XML, headers={"Content-Type": "application/xml"}
            )
            assert made.status_code == 200, made.text
            uid = made.json()["uuid"]
            assert _mount("-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(values)).returncode == 0
            try:
                refused = client.put(f"/v1/secrets/{uid}/value", json={"value": "c2VjcmV0"})
                assert refused.status_code == 503, refused.text
                assert _reason(running, refused) == "storage-read-only"
                assert client.get("/v1/secrets").status_code == 200
            finally:
                subprocess.run(["umount", str(values)], check=True)
            stored = client.put(f"/v1/secrets/{uid}/value", json={"value": "c2VjcmV0"})
            assert stored.status_code == 200, stored.text
            assert running.proc.poll() is None
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _start_argv(kind: str, disk: Path, root: Path) -> list[str]:
    if kind == "platform":
        return [
            "platform",
            "serve",
            "--state",
            str(disk / "state"),
            "--listen",
            str(root / "p.sock"),
        ]
    if kind == "host":
        return ["host", "serve", "--state", str(disk / "state"), "--listen", str(root / "h.sock")]
    files = broker_files(root)
    return [
        "broker", "serve", "--db", f"sqlite:///{disk}/state/broker.db",
        "--kek-file", str(files["kek"]), "--owner-token-file", str(files["owner"]),
        "--launcher-token-file", str(files["launcher"]), "--listen", f"unix:{root / 'b.sock'}",
    ]  # fmt: skip


@pytest.mark.parametrize("kind", ["platform", "host", "broker"])
def test_a_read_only_state_directory_at_start_is_one_line_and_exit_1(kind: str, disk: Path) -> None:
    (disk / "state").mkdir(mode=0o700)
    assert _mount("-o", "remount,ro", str(disk)).returncode == 0
    root = Path(tempfile.mkdtemp(prefix="sl-ro-", dir="/tmp"))
    try:
        done = run_cli(*_start_argv(kind, disk, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert f"{disk / 'state'} is not writable: Read-only file system" in done.stderr


# -- classification (no mounts) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "storage-full"),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), "storage-full"),
        (OSError(errno.EROFS, "Read-only file system"), "storage-read-only"),
        (OSError(errno.EIO, "Input/output error"), "storage-io-error"),
        (OSError(errno.ENOENT, "No such file"), None),
        (ValueError("no"), None),
    ],
)
def test_os_errors_are_classified_by_errno(exc: BaseException, reason: str | None) -> None:
    assert _storage.fault(exc) == reason


def test_sqlite_errors_are_classified_by_their_code(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    sqlite3.connect(db).execute("create table t (x)").connection.commit()
    db.chmod(0o400)
    reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    with pytest.raises(sqlite3.Error) as caught:
        reader.execute("insert into t values (1)")
    assert _storage.fault(caught.value) == "storage-read-only"


def test_a_wrapped_fault_is_found_in_the_chain() -> None:
    import sqlalchemy.exc

    inner = OSError(errno.ENOSPC, "No space left on device")
    outer = RuntimeError("while saving")
    outer.__cause__ = inner
    assert _storage.fault(outer) == "storage-full"
    wrapped = sqlalchemy.exc.OperationalError("INSERT", {}, inner)
    assert _storage.fault(wrapped) == "storage-full"


def test_require_writable_names_the_path(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("")
    with pytest.raises(StorageError) as caught:
        _storage.require_writable(target / "sub", "state directory")
    assert caught.value.path == str(target / "sub")
    assert (
        str(caught.value)
        == f"the state directory {target / 'sub'} is not writable: Not a directory"
    )
    assert _storage.require_writable(tmp_path / "new", "state directory").is_dir()
