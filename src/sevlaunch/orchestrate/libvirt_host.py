"""The VM tool's host port over libvirt-python: the 13 steps against any libvirtd.

The calls are libvirt's SEV API as a management application uses it on a real SEV host with
real QEMU: ``getSEVInfo`` (step 2), ``defineXML`` (6), ``createWithFlags(START_PAUSED)`` (8),
``launchSecurityInfo`` (10), ``setLaunchSecurityState`` (12), ``resume`` (13), with
libvirt's domain lifecycle events telling when the domain started, resumed or stopped, and
its console (a ``pty`` serial port) read through ``openConsole`` for the guest's boot.

libvirt keeps no record of steps 7 and 9; the port reports them from what libvirt's start
implies (it builds the sev-guest object from the XML; QEMU measures before it serves QMP).
A libvirtd that restarts mid-launch is reconnected to (the domain keeps running) and the
interrupted call is checked or repeated where that is safe.
"""

from __future__ import annotations

import base64
import contextlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TypeVar

from sevlaunch.errors import FormatError, HostError, QemuCommandError, UsageError
from sevlaunch.protocol import (
    DomainInfo,
    LaunchSecurityInfo,
    NodeSevInfo,
    SecretRelease,
    Step,
    StepReport,
)

T = TypeVar("T")
RECONNECT_WAIT = 30.0  #: seconds a restarting libvirtd gets to come back
BOOTED = re.compile(r"Linux: boot complete|login:")  # the emulated guest's, a real getty's
HALTED = re.compile(r"halting.*")
# virDomainState and the virsh words for it; VIR_DOMAIN_EVENT_* lifecycle types
STATES = ("no state", "running", "blocked", "paused", "shutdown", "shut off", "crashed",
          "pmsuspended")  # fmt: skip
STARTED, SUSPENDED, RESUMED, STOPPED, CRASHED = 2, 3, 4, 5, 8
VIR_ERR_NO_DOMAIN = 42
_QEMU_COMMAND = re.compile(r"unable to execute QEMU command '([^']+)': (.*)", re.DOTALL)


def _libvirt() -> ModuleType:
    try:
        import libvirt as module
    except ImportError as exc:
        raise UsageError(
            "a libvirt URI needs libvirt-python: pip install 'sevlaunch[libvirt]' (it builds "
            "against libvirt's headers: Debian's libvirt-dev and pkg-config)"
        ) from exc
    # libvirt prints every error on stderr by default; the port reports them as HostError
    module.registerErrorHandler(lambda _ctx, _err: None, None)
    found: ModuleType = module
    return found


_loop_lock = threading.Lock()
_loop: list[threading.Thread] = []  # the one event-loop thread, once started


def _event_loop(libvirt: ModuleType) -> None:
    """libvirt's default event loop, once per process, in a daemon thread: events, keepalive
    and close callbacks need it."""
    with _loop_lock:
        if _loop:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        _loop.append(threading.Thread(target=run, name="libvirt-events", daemon=True))
        _loop[0].start()


@dataclass
class _Events:
    """Lifecycle events by domain name, in arrival order: (event, detail, time)."""

    changed: threading.Condition = field(default_factory=threading.Condition)
    seen: dict[str, list[tuple[int, int, float]]] = field(default_factory=dict)

    def callback(self, _conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> None:
        with self.changed:
            self.seen.setdefault(dom.name(), []).append((event, detail, time.monotonic()))
            self.changed.notify_all()

    def wait(self, name: str, since: float, wanted: set[int], timeout: float) -> int | None:
        """The first event of ``wanted`` (or a stop) for ``name`` after ``since``, or None."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for event, _detail, at in self.seen.get(name, ()):
                    if at >= since and event in wanted | {STOPPED, CRASHED}:
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.changed.wait(left)


@dataclass
class _LibvirtWatch:
    """Step 10 on libvirt: no measurement event exists; libvirt's STARTED event means QEMU
    measured already (at machine-init-done, before libvirt could reach its monitor)."""

    events: _Events
    name: str
    since: float = field(default_factory=time.monotonic)
    announcement: str = "the domain started (libvirt's STARTED event); QEMU had measured"
    available: bool = True

    def __enter__(self) -> _LibvirtWatch:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.available = False

    def wait(self, launch: int, timeout: float) -> bool:
        return self.events.wait(self.name, self.since, {STARTED}, timeout) == STARTED


class _Console:
    """A domain's console stream (virDomainOpenConsole), read in a thread."""

    def __init__(self, conn: Any, dom: Any, libvirt: ModuleType) -> None:
        self.text = ""
        self.changed = threading.Condition()
        self._error = libvirt.libvirtError
        self.stream = conn.newStream(0)
        dom.openConsole(None, self.stream, 0)  # not FORCE: a person's console stays theirs
        self._thread = threading.Thread(target=self._read, name="console", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(self._error):  # the stream ends with the domain or the link
            while isinstance(chunk := self.stream.recv(4096), bytes) and chunk:
                with self.changed:
                    self.text += chunk.decode(errors="replace").replace("\r\n", "\n")
                    self.changed.notify_all()

    def close(self) -> None:
        with contextlib.suppress(self._error):  # already ended with the domain or the link
            self.stream.abort()


class LibvirtHost:
    """The host port on one libvirt connection (read-write: libvirt refuses the SEV calls
    on a read-only one)."""

    def __init__(self, uri: str, *, reconnect_wait: float = RECONNECT_WAIT) -> None:
        self.uri = uri
        self.reconnect_wait = reconnect_wait
        self._lv = _libvirt()
        _event_loop(self._lv)
        self._events = _Events()
        self._consoles: dict[str, _Console] = {}
        self._resumed: dict[str, float] = {}  # when this port last resumed each domain
        self._conn: Any = None  # opened by the first call: a refusal fails that step

    def __enter__(self) -> LibvirtHost:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _open(self) -> None:
        conn = self._lv.open(self.uri)
        with contextlib.suppress(self._lv.libvirtError):  # in-process drivers have no link
            conn.setKeepAlive(5, 3)
        conn.domainEventRegisterAny(
            None, self._lv.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._events.callback, None
        )
        self._conn = conn

    def close(self) -> None:
        for console in self._consoles.values():
            console.close()
        if self._conn is not None:
            with contextlib.suppress(self._lv.libvirtError):  # the link may be gone already
                self._conn.close()

    # ---- calls, reconnecting when libvirtd went away ---------------------------------

    def _alive(self) -> bool:
        try:
            return bool(self._conn.isAlive())
        except self._lv.libvirtError:
            return False

    def _reconnect(self) -> None:
        with contextlib.suppress(self._lv.libvirtError):  # the link is gone: that is why
            self._conn.close()
        deadline = time.monotonic() + self.reconnect_wait
        while True:
            try:
                self._open()
                return
            except self._lv.libvirtError as exc:
                if time.monotonic() > deadline:
                    raise _host_error(exc, f"libvirtd at {self.uri} did not come back") from exc
            time.sleep(0.2)

    def _call(self, fn: Callable[[Any], T], *, done: Callable[[], T | None] | None = None) -> T:
        """``fn(connection)``; if libvirtd went away meanwhile, reconnect and call once more,
        unless ``done`` finds the call had its effect already (and gives its result)."""
        if self._conn is None:
            try:
                self._open()
            except self._lv.libvirtError as exc:
                raise _host_error(exc, f"cannot connect to {self.uri}") from exc
        try:
            return fn(self._conn)
        except self._lv.libvirtError as exc:
            if self._alive():
                raise _host_error(exc) from exc
        self._reconnect()
        if done is not None and (result := done()) is not None:
            return result
        try:
            return fn(self._conn)
        except self._lv.libvirtError as exc:
            raise _host_error(exc) from exc

    def _dom(self, conn: Any, name: str) -> Any:
        return conn.lookupByName(name)

    # ---- the port ----------------------------------------------------------------------

    def node_sev_info(self) -> NodeSevInfo:
        info = self._call(lambda c: c.getSEVInfo(0))
        try:
            return NodeSevInfo.from_wire(info)
        except FormatError as exc:
            raise HostError("internal error", f"getSEVInfo: {exc}") from exc

    def domain(self, name: str) -> DomainInfo:
        return self._call(lambda c: self._info(self._dom(c, name)))

    def _info(self, dom: Any) -> DomainInfo:
        state, reason = dom.state()
        return DomainInfo(
            uuid=dom.UUIDString(),
            name=dom.name(),
            state=STATES[state] if 0 <= state < len(STATES) else "no state",
            reason=str(reason),
            launch=max(dom.ID(), 0),  # libvirt's domain id: new at every start
        )

    def define(self, xml: str) -> DomainInfo:
        return self._call(lambda c: self._info(c.defineXML(xml)))

    def start(self, name: str, *, paused: bool = False) -> DomainInfo:
        flags = self._lv.VIR_DOMAIN_START_PAUSED if paused else 0

        def create(c: Any) -> DomainInfo:
            dom = self._dom(c, name)
            dom.createWithFlags(flags)
            return self._info(dom)

        return self._call(create, done=lambda: self._if(name, active=True))

    def _if(
        self, name: str, *, active: bool | None = None, state: str | None = None
    ) -> DomainInfo | None:
        """The domain's info when it is already as a repeated call would leave it."""
        info = self.domain(name)
        if active is not None and info.active != active:
            return None
        if state is not None and info.state != state:
            return None
        return info

    def watch(self, name: str) -> _LibvirtWatch:
        return _LibvirtWatch(self._events, name)

    def report_steps(self, name: str, reports: list[StepReport]) -> int:
        """libvirt keeps no launch timeline: nothing to give it."""
        del name, reports
        return 0

    def timeline(self, name: str, launch: int | None = None) -> list[StepReport]:
        """Steps 7 and 9 as libvirt's start implies them (it keeps no record of its own)."""
        info = self.domain(name)
        if not info.active:
            return []
        now = time.time()
        return [
            StepReport(info.launch, Step.SEV_GUEST_BUILT, "ok", now, 0.0,
                       "libvirt built the sev-guest object from <launchSecurity>"),
            StepReport(info.launch, Step.LAUNCH_MEASURED, "ok", now, 0.0,
                       "QEMU measures at machine-init-done, before libvirt's start returns"),
        ]  # fmt: skip

    def launch_security_info(self, name: str) -> LaunchSecurityInfo | None:
        params = self._call(lambda c: self._dom(c, name).launchSecurityInfo(0))
        if not params:
            return None
        try:
            return LaunchSecurityInfo.from_wire(params)
        except FormatError as exc:
            raise HostError("internal error", f"launchSecurityInfo: {exc}") from exc

    def set_launch_security_state(
        self, name: str, release: SecretRelease, address: int | None = None
    ) -> None:
        params: dict[str, object] = {
            "sev-secret-header": base64.b64encode(release.header).decode(),
            "sev-secret": base64.b64encode(release.secret).decode(),
        }
        if address is not None:
            params["sev-secret-set-address"] = address
        # QEMU takes the same secret again while in launch-secret: a repeat after a lost
        # connection is safe
        self._call(lambda c: self._dom(c, name).setLaunchSecurityState(params, 0))

    def resume(self, name: str) -> DomainInfo:
        """Resume, with the console open first: what the guest prints is read from the start."""
        self._open_console(name)
        self._resumed[name] = time.monotonic()

        def resume(c: Any) -> DomainInfo:
            dom = self._dom(c, name)
            dom.resume()
            return self._info(dom)

        return self._call(resume, done=lambda: self._if(name, state="running"))

    def _open_console(self, name: str) -> None:
        old = self._consoles.pop(name, None)
        if old is not None:
            old.close()
        with contextlib.suppress(self._lv.libvirtError):  # no pty serial or console: none
            self._consoles[name] = _Console(self._conn, self._dom(self._conn, name), self._lv)

    def wait_booted(self, name: str, timeout: float = 60.0) -> DomainInfo:
        """Until libvirt says the domain runs and, where a console is read, the guest says
        it booted; HostError if it halted or the domain stopped."""
        since = self._resumed.get(name, time.monotonic())  # this resume's RESUMED, not older
        running = self.domain(name).state == "running"
        if not running and self._events.wait(name, since, {RESUMED}, timeout) != RESUMED:
            raise HostError("operation failed", f"domain '{name}' did not resume")
        console = self._consoles.get(name)
        if console is not None:
            self._watch_console(name, console, timeout)
        return self.domain(name)

    def _watch_console(self, name: str, console: _Console, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        start = time.monotonic()
        with console.changed:
            while time.monotonic() < deadline:
                if halted := HALTED.search(console.text):
                    raise HostError("operation failed", f"the guest {halted.group(0)}")
                if BOOTED.search(console.text):
                    return
                console.changed.wait(0.2)
                if self._events.wait(name, start, set(), 0) in (STOPPED, CRASHED):
                    raise HostError("operation failed", f"domain '{name}' stopped while booting")

    def destroy(self, name: str) -> DomainInfo:
        def destroy(c: Any) -> DomainInfo:
            dom = self._dom(c, name)
            dom.destroy()
            return self._info(dom)

        return self._call(destroy, done=lambda: self._if(name, active=False))

    def console(self, name: str) -> str:
        console = self._consoles.get(name)
        return console.text if console is not None else ""


def _host_error(exc: Any, context: str | None = None) -> HostError:
    """libvirt's virError as the host port's error: libvirt's "kind: detail" words, and a
    QEMU command failure as QemuCommandError (libvirt reports QEMU's text, not its class)."""
    message = str(exc.get_error_message() or exc)
    kind, _, detail = message.partition(": ")
    if not detail:  # a bare "Domain not found" (VIR_ERR_NO_DOMAIN) is its own kind
        kind, detail = (
            (message, "") if _code(exc) == VIR_ERR_NO_DOMAIN else ("internal error", message)
        )
    found = _QEMU_COMMAND.search(detail)
    if found is not None:
        return QemuCommandError(found.group(1), "GenericError", found.group(2).strip())
    if context is not None:
        detail = f"{context}: {detail}"
    return HostError(kind, detail)


def _code(exc: Any) -> int | None:
    getter = getattr(exc, "get_error_code", None)
    return getter() if getter is not None else None
