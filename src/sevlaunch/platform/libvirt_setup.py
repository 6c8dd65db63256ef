"""Set a host up so that Debian's libvirtd drives ``sevlaunch-vmm`` on the emulated platform,
and undo it: ``sevlaunch platform install-libvirt`` / ``uninstall-libvirt``.

What libvirt needs, and why:

- ``/dev/sev``, a symlink to the platform socket. libvirt clears the hypervisor's
  environment, so the VMM cannot be told where the platform is; it opens ``/dev/sev`` as QEMU
  does. libvirt's mount namespace gives the hypervisor a private /dev and copies the link into
  it (qemu_namespace.c); its cgroup code skips a path that is no device (qemu_cgroup.c).
- The socket reachable by the qemu user (``libvirt-qemu`` on Debian): the platform makes it
  0600 for root. libvirt probes an emulator as that user (with CAP_DAC_OVERRIDE only where it
  keeps capabilities), and runs domains as that user, chowning ``/dev/sev`` (the link's
  target, the socket) to it while the domain runs and back afterwards
  (security_dac.c, virSecurityDACSetSEVLabel). The socket gets the qemu user's group and mode
  0660 here; every directory above it must let that user through.
- The emulator, ``sevlaunch-vmm``, and the interpreter it runs, executable by that user.
- qemu.conf settings, in one marked block: ``user``/``group`` when asked (``root`` as
  ``"+0"``, for an emulator only root can run), ``stdio_handler = "file"`` for a libvirtd
  without virtlogd.
- libvirt's capability cache entry for the emulator removed, so the next look-up probes the
  emulator again (a /dev/sev that appears does not invalidate it).
- Optionally a directory holding ``qemu-system-x86_64`` linked to the VMM: ``virsh
  nodesevinfo`` and ``virNodeGetSEVInfo`` ask libvirt's *default* emulator, the first
  ``qemu-system-x86_64`` on libvirtd's PATH. A libvirtd started with that directory first on
  its PATH answers them from the emulated platform; domains that name
  ``/usr/bin/qemu-system-x86_64`` as their ``<emulator>`` still run real QEMU.

Every change is recorded in a manifest (JSON); uninstall reverts exactly those changes and
leaves alone what someone changed since.
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import re
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sevlaunch._files import write_atomic
from sevlaunch.errors import HostSetupError

BEGIN = "# BEGIN sevlaunch platform install-libvirt (do not edit: uninstall-libvirt removes it)"
END = "# END sevlaunch platform install-libvirt"
JOINED = " [the line before had no newline]"
DEFAULT_QEMU_USER = "libvirt-qemu"  # Debian's build-time default (qemu.conf: user, group)
DEFAULT_EMULATOR_NAME = "qemu-system-x86_64"
Log = Callable[[str], None]


@dataclass(frozen=True)
class Layout:
    """Every path the setup touches, so that tests can run it under a scratch root."""

    dev_sev: Path = Path("/dev/sev")
    qemu_conf: Path = Path("/etc/libvirt/qemu.conf")
    caps_cache: Path = Path("/var/cache/libvirt/qemu/capabilities")
    manifest: Path = Path("/var/lib/sevlaunch/libvirt-install.json")


@dataclass(frozen=True)
class Request:
    socket: Path
    emulator: Path
    qemu_user: str | None = None  #: written to qemu.conf when given (``root`` → ``"+0"``)
    stdio_file: bool = False  #: ``stdio_handler = "file"``: no virtlogd on this host
    default_emulator_dir: Path | None = None


@dataclass
class Manifest:
    """What install changed, for uninstall to revert."""

    socket: str
    dev_sev: str | None = None
    qemu_conf: str | None = None
    socket_mode: int | None = None
    socket_gid: int | None = None
    default_emulator: str | None = None
    caches: list[str] = field(default_factory=list)


# ---- qemu.conf, pure --------------------------------------------------------------------


def add_block(text: str, settings: Mapping[str, str]) -> str:
    """``text`` with one marked block of ``key = value`` lines at its end (replacing ours).
    A file without a final newline gets one before the block, and the block says so, so that
    :func:`remove_block` gives back the very text it was given."""
    base = remove_block(text)
    if not settings:
        return base
    head = BEGIN if not base or base.endswith("\n") else "\n" + BEGIN + JOINED
    lines = [head, *(f"{key} = {value}" for key, value in settings.items()), END]
    return base + "\n".join(lines) + "\n"


def remove_block(text: str) -> str:
    """``text`` without the marked block (and only it)."""
    start = text.find(BEGIN)
    if start < 0:
        return text
    end = text.find(END, start)
    if end < 0:
        raise HostSetupError("qemu.conf", f"the block opened by {BEGIN!r} has no end line")
    after = end + len(END)
    if text.startswith("\n", after):
        after += 1
    if text.startswith(JOINED, start + len(BEGIN)) and text[start - 1 : start] == "\n":
        start -= 1  # the newline the block added
    return text[:start] + text[after:]


_SETTING = re.compile(r'^\s*(user|group)\s*=\s*"([^"]*)"', re.MULTILINE)


def configured_user(text: str) -> tuple[str, str]:
    """The qemu user and group a qemu.conf sets (the last setting wins, as libvirt reads)."""
    found = {"user": DEFAULT_QEMU_USER, "group": DEFAULT_QEMU_USER}
    for key, value in _SETTING.findall(text):
        found[key] = value
    return found["user"], found["group"]


def qemu_settings(request: Request) -> dict[str, str]:
    out: dict[str, str] = {}
    if request.qemu_user is not None:
        name = "+0" if request.qemu_user == "root" else request.qemu_user
        out["user"] = out["group"] = f'"{name}"'
    if request.stdio_file:
        out["stdio_handler"] = '"file"'
    return out


# ---- who can reach what -----------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    uid: int
    gids: frozenset[int]

    @classmethod
    def of(cls, user: str, group: str) -> Identity:
        """A qemu.conf ``user``/``group`` pair (names, or ``+N`` numbers)."""
        uid = int(user[1:]) if user.startswith("+") else pwd.getpwnam(user).pw_uid
        gid = int(group[1:]) if group.startswith("+") else grp.getgrnam(group).gr_gid
        name = pwd.getpwuid(uid).pw_name
        extra = {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
        return cls(uid, frozenset({gid, *extra}))


def _allows(st: os.stat_result, who: Identity, bits: int) -> bool:
    """Whether mode bits ``bits`` (of r=4, w=2, x=1) are granted to ``who`` by ``st``."""
    if who.uid == 0:
        return not bits & 1 or bool(st.st_mode & 0o111) or stat.S_ISDIR(st.st_mode)
    shift = 6 if st.st_uid == who.uid else 3 if st.st_gid in who.gids else 0
    return (st.st_mode >> shift) & bits == bits


def unreachable(path: Path, who: Identity, bits: int) -> str | None:
    """Why ``who`` cannot use ``path`` with ``bits`` (through every directory above it and
    every symlink on the way), or None when it can."""
    for candidate in dict.fromkeys((path, Path(os.path.realpath(path)))):
        for parent in reversed(candidate.parents):
            st = parent.stat()
            if not _allows(st, who, 1):
                return f"{parent} (mode {stat.S_IMODE(st.st_mode):04o}, {_owner(st)}) is closed"
    try:
        st = path.stat()
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if not _allows(st, who, bits):
        return f"{path} (mode {stat.S_IMODE(st.st_mode):04o}, {_owner(st)}) is not open to it"
    return None


def _owner(st: os.stat_result) -> str:
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return f"{user}:{group}"


def interpreter(script: Path) -> Path | None:
    """The ``#!`` interpreter of a script (a console script's Python), None for a binary."""
    with script.open("rb") as f:
        head = f.readline(512)
    if not head.startswith(b"#!"):
        return None
    words = head[2:].decode(errors="replace").split()
    if not words:
        return None
    if Path(words[0]).name == "env" and len(words) > 1:
        return None  # found on PATH at run time: nothing fixed to check
    return Path(words[0])


def emulator_problems(emulator: Path, who: Identity) -> list[str]:
    problems = []
    why = unreachable(emulator, who, 5)
    if why is not None:
        problems.append(why)
    elif (python := interpreter(emulator)) is not None:
        why = unreachable(python, who, 5)
        if why is not None:
            problems.append(f"its interpreter {python}: {why}")
    return problems


# ---- install and uninstall ---------------------------------------------------------------


def cache_entries(layout: Layout, binaries: Iterable[Path]) -> list[Path]:
    """libvirt's capability cache files for ``binaries``: SHA-256 of the path as given."""
    return [
        layout.caps_cache / (hashlib.sha256(str(b).encode()).hexdigest() + ".xml") for b in binaries
    ]


def install(request: Request, layout: Layout = Layout(), log: Log = print) -> Manifest:
    """Make the changes, recording each in the manifest as it is made."""
    if layout.manifest.exists():
        raise HostSetupError(str(layout.manifest), "already installed: run uninstall-libvirt first")
    _check_socket(request.socket)
    manifest = Manifest(socket=str(request.socket))
    try:
        _link_dev_sev(request.socket, layout.dev_sev, manifest, log)
        _edit_qemu_conf(request, layout.qemu_conf, manifest, log)
        user, group = configured_user(layout.qemu_conf.read_text())
        who = Identity.of(user, group)
        _open_socket(request.socket, who, manifest, log)
        problems = emulator_problems(request.emulator, who)
        if problems:
            raise HostSetupError(
                str(request.emulator),
                f"the qemu user {user} cannot run it: {'; '.join(problems)}; install "
                "sevlaunch where that user can read it (a venv under /opt), or give "
                "--qemu-user root",
            )
        if request.default_emulator_dir is not None:
            _link_default_emulator(request, request.default_emulator_dir, manifest, log)
        _drop_caches(layout, request, manifest, log)
    except BaseException:
        _revert(manifest, layout, log)
        raise
    layout.manifest.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(layout.manifest, json.dumps(asdict(manifest), indent=1).encode())
    return manifest


def uninstall(layout: Layout = Layout(), log: Log = print) -> Manifest:
    """Revert what the manifest records, then remove it."""
    try:
        manifest = Manifest(**json.loads(layout.manifest.read_text()))
    except FileNotFoundError as exc:
        raise HostSetupError(str(layout.manifest), "nothing installed here") from exc
    _revert(manifest, layout, log)
    layout.manifest.unlink()
    return manifest


def _check_socket(socket: Path) -> None:
    try:
        mode = socket.stat().st_mode
    except OSError as exc:
        raise HostSetupError(
            str(socket), f"{exc.strerror}: start 'sevlaunch platform serve' first"
        ) from exc
    if not stat.S_ISSOCK(mode):
        raise HostSetupError(str(socket), "not a socket: give the platform service's socket")


def _link_dev_sev(socket: Path, dev_sev: Path, manifest: Manifest, log: Log) -> None:
    if dev_sev.is_symlink():
        if Path(os.readlink(dev_sev)) == socket:
            return  # already ours in effect; not recorded, so uninstall leaves it
        raise HostSetupError(str(dev_sev), f"already links to {os.readlink(dev_sev)}")
    if dev_sev.exists():
        kind = "a real SEV device" if stat.S_ISCHR(dev_sev.stat().st_mode) else "there"
        raise HostSetupError(
            str(dev_sev),
            f"{kind}: this host has SEV; use real QEMU here, not the emulated platform",
        )
    dev_sev.symlink_to(socket)
    manifest.dev_sev = str(dev_sev)
    log(f"linked {dev_sev} -> {socket}")


def _edit_qemu_conf(request: Request, conf: Path, manifest: Manifest, log: Log) -> None:
    settings = qemu_settings(request)
    if not settings:
        return
    text = conf.read_text()
    if BEGIN in text:
        raise HostSetupError(str(conf), "holds a block from an earlier install: remove it")
    conf.write_text(add_block(text, settings))
    manifest.qemu_conf = str(conf)
    log(f"{conf}: " + ", ".join(f"{k} = {v}" for k, v in settings.items()))


def _open_socket(socket: Path, who: Identity, manifest: Manifest, log: Log) -> None:
    """Give the socket the qemu user's group, 0660, unless that user can connect already."""
    if unreachable(socket, who, 2) is None:
        return
    st = socket.stat()
    gid = min(who.gids)
    manifest.socket_mode, manifest.socket_gid = stat.S_IMODE(st.st_mode), st.st_gid
    os.chown(socket, -1, gid)
    socket.chmod(0o660)
    why = unreachable(socket, who, 2)
    if why is not None:
        raise HostSetupError(str(socket), f"the qemu user still cannot connect: {why}")
    log(
        f"{socket}: group {grp.getgrgid(gid).gr_name}, mode 0660 (serve it with "
        "--socket-mode 0660 and this group to keep it so)"
    )


def _link_default_emulator(request: Request, directory: Path, manifest: Manifest, log: Log) -> None:
    link = directory / DEFAULT_EMULATOR_NAME
    if link.exists() or link.is_symlink():
        raise HostSetupError(str(link), "exists already")
    directory.mkdir(parents=True, exist_ok=True)
    link.symlink_to(request.emulator)
    manifest.default_emulator = str(link)
    log(
        f"linked {link} -> {request.emulator}: start libvirtd with "
        f"PATH={directory}:$PATH for nodesevinfo"
    )


def _drop_caches(layout: Layout, request: Request, manifest: Manifest, log: Log) -> None:
    binaries = [request.emulator]
    if manifest.default_emulator is not None:
        binaries.append(Path(manifest.default_emulator))
    for entry in cache_entries(layout, binaries):
        if entry.exists():
            entry.unlink()
            log(f"removed libvirt's cached capabilities {entry}")
        manifest.caches.append(str(entry))


def _revert(manifest: Manifest, layout: Layout, log: Log) -> None:
    """Undo each recorded change whose result is still as install left it."""
    if manifest.default_emulator is not None:
        link = Path(manifest.default_emulator)
        if link.is_symlink():
            link.unlink()
            log(f"removed {link}")
    for entry in map(Path, manifest.caches):  # probed with the platform in place: stale now
        if entry.exists():
            entry.unlink()
    if manifest.socket_mode is not None and manifest.socket_gid is not None:
        socket = Path(manifest.socket)
        if socket.exists() and stat.S_ISSOCK(socket.stat().st_mode):
            os.chown(socket, -1, manifest.socket_gid)
            socket.chmod(manifest.socket_mode)
    if manifest.qemu_conf is not None:
        conf = Path(manifest.qemu_conf)
        conf.write_text(remove_block(conf.read_text()))
        log(f"{conf}: sevlaunch settings removed")
    if manifest.dev_sev is not None:
        dev = Path(manifest.dev_sev)
        if dev.is_symlink() and Path(os.readlink(dev)) == Path(manifest.socket):
            dev.unlink()
            log(f"removed {dev}")
