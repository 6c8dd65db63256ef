"""Random command sequences (hypothesis stateful): nothing crashes, and guest count, ASID
ownership and states stay consistent with the tables after every command."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from sevlaunch.firmware import GUEST_TABLE, Firmware, PlatformState, Profile, SparseMemory
from sevlaunch.formats.commands import (
    ActivateBuffer,
    Command,
    DbgBuffer,
    GuestStatusBuffer,
    HandleBuffer,
    InitBuffer,
    LaunchMeasureBuffer,
    LaunchStartBuffer,
    LaunchUpdateBuffer,
)
from sevlaunch.formats.status import Status
from tests.firmware.helpers import seeded_rng

TINY = Profile("tiny", 1, 55, 1, 51, 1, max_sev_asids=2, max_es_asids=2)
POLICIES = st.sampled_from([0x0, 0x1, 0x2, 0x4, 0x5, 0x40, 0x0137_0000])
HANDLES = st.integers(min_value=0, max_value=8)
ASIDS = st.integers(min_value=0, max_value=5)
NO_BUFFER = (
    Command.SHUTDOWN,
    Command.PLATFORM_RESET,
    Command.PEK_GEN,
    Command.PDH_GEN,
    Command.DF_FLUSH,
)


class FirmwareMachine(RuleBasedStateMachine):
    guests = Bundle("guests")

    def __init__(self, state: bytes) -> None:
        super().__init__()
        self.fw = Firmware(TINY, rng=seeded_rng(3).randbytes, state=state)
        self.mem = SparseMemory()
        self.handles: set[int] = set()

    def run(self, command: Command, buffer: bytes) -> tuple[Status, bytes]:
        status, written = self.fw.execute(command, buffer, self.mem)
        assert isinstance(status, Status)
        return status, written

    @initialize(es=st.booleans())
    def boot(self, es: bool) -> None:
        self.init(es)

    @rule(es=st.booleans())
    def init(self, es: bool) -> None:
        self.run(Command.INIT, InitBuffer(int(es), 1 << 20, 1 << 20).to_bytes())

    @rule(command=st.sampled_from(NO_BUFFER))
    def bufferless(self, command: Command) -> None:
        status, _ = self.run(command, b"")
        if command is Command.SHUTDOWN and status is Status.SUCCESS:
            self.handles.clear()

    @rule(target=guests, policy=POLICIES, share=st.one_of(st.just(0), guests, HANDLES))
    def launch_start(self, policy: int, share: int) -> MultipleResults[int]:
        status, written = self.run(
            Command.LAUNCH_START, LaunchStartBuffer(share, policy).to_bytes()
        )
        if status is not Status.SUCCESS:
            return multiple()
        handle = LaunchStartBuffer.from_bytes(written).handle
        assert handle not in self.handles
        self.handles.add(handle)
        return multiple(handle)

    @rule(handle=st.one_of(guests, HANDLES), asid=ASIDS)
    def activate(self, handle: int, asid: int) -> None:
        self.run(Command.ACTIVATE, ActivateBuffer(handle, asid).to_bytes())

    @rule(handle=guests)
    def activate_in_range(self, handle: int) -> None:
        """Try each ASID of the guest's range, as KVM's allocator would."""
        _, written = self.run(Command.GUEST_STATUS, GuestStatusBuffer(handle).to_bytes())
        es = bool(GuestStatusBuffer.from_bytes(written).policy & 0x4)
        for asid in TINY.es_asids if es else TINY.sev_asids:
            status, _ = self.run(Command.ACTIVATE, ActivateBuffer(handle, asid).to_bytes())
            if status is not Status.ASID_OWNED and status is not Status.DF_FLUSH_REQUIRED:
                return

    @rule(
        handle=st.one_of(guests, HANDLES),
        command=st.sampled_from([Command.DEACTIVATE, Command.LAUNCH_FINISH, Command.DECOMMISSION]),
    )
    def by_handle(self, handle: int, command: Command) -> None:
        status, _ = self.run(command, HandleBuffer(handle).to_bytes())
        if command is Command.DECOMMISSION and status is Status.SUCCESS:
            self.handles.remove(handle)

    @rule(
        handle=st.one_of(guests, HANDLES),
        paddr=st.integers(0, 0x30000),
        length=st.integers(0, 0x2000),
    )
    def update(self, handle: int, paddr: int, length: int) -> None:
        self.run(Command.LAUNCH_UPDATE_DATA, LaunchUpdateBuffer(handle, paddr, length).to_bytes())

    @rule(handle=st.one_of(guests, HANDLES), length=st.sampled_from([0, 0x2F, 0x30]))
    def measure(self, handle: int, length: int) -> None:
        self.run(Command.LAUNCH_MEASURE, LaunchMeasureBuffer(handle, 0x1000, length).to_bytes())

    @rule(
        handle=st.one_of(guests, HANDLES),
        src=st.integers(0, 0x300).map(lambda v: v * 16),
        length=st.integers(0, 0x10).map(lambda v: v * 16),
    )
    def dbg(self, handle: int, src: int, length: int) -> None:
        self.run(Command.DBG_DECRYPT, DbgBuffer(handle, src, 0x8000, length).to_bytes())

    @rule(command=st.integers(0, 0x80), buffer=st.binary(max_size=0x40))
    def garbage(self, command: int, buffer: bytes) -> None:
        status, written = self.fw.execute(command, buffer, self.mem)
        if status is Status.SUCCESS and command == Command.LAUNCH_START:
            self.handles.add(LaunchStartBuffer.from_bytes(written).handle)
        elif status is Status.SUCCESS and command == Command.DECOMMISSION:
            self.handles.discard(HandleBuffer.from_bytes(written).handle)
        elif status is Status.SUCCESS and command == Command.SHUTDOWN:
            self.handles.clear()

    @invariant()
    def guests_match_the_model(self) -> None:
        status, written = self.run(Command.PLATFORM_STATUS, bytes(12))
        assert status is Status.SUCCESS
        assert written[8] == len(self.handles)
        state = self.fw.state
        if state is PlatformState.UNINIT:
            assert not self.handles
        else:
            assert (state is PlatformState.WORKING) == bool(self.handles)

    @invariant()
    def asids_are_consistent(self) -> None:
        core = self.fw._core
        for handle in self.handles:
            _, written = self.run(Command.GUEST_STATUS, GuestStatusBuffer(handle).to_bytes())
            reported = GuestStatusBuffer.from_bytes(written)
            guest = core.guests[handle]
            assert (reported.asid, reported.state) == (guest.asid, guest.state)
            assert guest.state in GUEST_TABLE
            if guest.active:
                allowed = TINY.es_asids if guest.es else TINY.sev_asids
                assert guest.asid in allowed
                assert handle in core.asids.owners(guest.asid)
        for asid, owners in core.asids.bound.items():
            assert owners
            assert asid not in core.asids.dirty
            assert {core.guests[h].asid for h in owners} == {asid}
            assert len({core.guests[h].key_group for h in owners}) == 1
        for es, asids in ((True, TINY.es_asids), (False, TINY.sev_asids)):
            keys = {g.key_group for g in core.guests.values() if g.es == es}
            assert len(keys) <= len(asids)


def test_random_command_sequences(factory_state: bytes) -> None:
    class Machine(FirmwareMachine):
        def __init__(self) -> None:
            super().__init__(factory_state)

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=100,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
