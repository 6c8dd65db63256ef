"""The guest model of an SEV-SNP guest after ``cont``: OVMF's measured direct boot, then what
Linux and an attestation agent do to get the workload's secrets (sev-snp.md §1.2, §5).

OVMF checks the kernel, initrd and command line against the hashes table in the measured
SNP_KERNEL_HASHES page, as for SEV. Linux's sev-guest driver takes VMPCK0 from the SECRETS
page (read through the memory controller: it is guest-private). The agent reads its config
from fw_cfg (:data:`~sevlaunch.protocol.snp.FW_CFG_NAME`: the broker's address and the
workload), makes a fresh P-384 key, asks the broker for a nonce, asks the firmware for a
report whose REPORT_DATA binds both (MSG_REPORT_REQ through the guest-request exit, sealed
with VMPCK0 and numbered as Linux numbers them), presents it, and opens the reply sealed to
its key: an OVMF secret table, whose ``luks-key`` unlocks the disks. A refusal halts the boot
with the broker's reason. Secret values are never printed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from cryptography.hazmat.primitives.asymmetric import ec

from sevlaunch.crypto.snp import guest_msg, release
from sevlaunch.errors import FormatError, IntegrityError, LaunchRefusedError, SevlaunchError
from sevlaunch.formats.secret import SecretTable, guid_alias
from sevlaunch.formats.snp.guest_msg import (
    MessageHeader,
    MessageType,
    ReportRequest,
    ReportResponse,
)
from sevlaunch.formats.snp.metadata import SectionType, SevMetadata
from sevlaunch.formats.snp.secrets import SecretsPage
from sevlaunch.protocol.snp import GuestAttestationConfig, SnpEvidence
from sevlaunch.vmm.attest_agent import BrokerAgent
from sevlaunch.vmm.guest import BootMedia, BootResult, Guest, ReadMemory

GuestRequest = Callable[[bytes], Awaitable[bytes]]
PAGE = 4096


class SnpGuestOs(Guest):
    """Boots once; the attestation config comes from fw_cfg (None: the agent has none)."""

    def __init__(
        self,
        media: BootMedia,
        read: ReadMemory,
        console: Callable[[str], None],
        *,
        request: GuestRequest,
        config: GuestAttestationConfig | None,
        agent: BrokerAgent | None = None,
    ) -> None:
        super().__init__(media, read, console, sev=True)
        self.request = request
        self.config = config
        self.agent = agent or BrokerAgent()
        self._seqno = 0

    async def boot(self) -> BootResult:
        self.console("OVMF: booting (AMD SEV-SNP active)")
        if self.media.kernel is not None and not await self._verify_blobs():
            return self._halt("measured direct boot verification failed")
        try:
            vmpck = await self._vmpck()
        except (FormatError, SevlaunchError) as exc:
            return self._halt(f"sev-guest: no usable SECRETS page: {exc}")
        self.console("sev-guest: Initialized SEV guest driver (using VMPCK0 communication key)")
        if self.config is None:
            self.console("sevlaunch-attest: no attestation config in fw_cfg; disks stay locked")
            self.console("Linux: boot complete")
            return BootResult(halted=False)
        try:
            table = await self._attest(vmpck, self.config)
        except LaunchRefusedError as exc:
            return self._halt(f"attestation refused: {exc.reason}: {exc}")
        except SevlaunchError as exc:
            return self._halt(f"attestation failed: {exc}")
        label = self._unlock_disks(table)
        self.console("Linux: boot complete")
        names = tuple(guid_alias(e.guid) for e in table.entries)
        return BootResult(halted=False, secrets=names, disk_label=label)

    def _halt(self, reason: str) -> BootResult:
        self.console(f"Linux: halting: {reason}")
        return BootResult(halted=True, reason=reason)

    async def _vmpck(self) -> bytes:
        metadata = SevMetadata.from_image(self.media.firmware)
        section = metadata.find(SectionType.SNP_SECRETS) if metadata else None
        if section is None:
            raise FormatError(
                "OVMF SEV metadata", "SNP_SECRETS", "the firmware has no SECRETS page"
            )
        return SecretsPage.from_bytes(await self.read(section.gpa, PAGE)).vmpck0

    async def report(self, vmpck: bytes, report_data: bytes) -> bytes:
        """MSG_REPORT_REQ at VMPL 0 (``/dev/sev-guest`` SNP_GET_REPORT)."""
        self._seqno += 1
        header = MessageHeader(msg_seqno=self._seqno, msg_type=MessageType.REPORT_REQ, msg_size=0)
        page = guest_msg.seal(vmpck, header, ReportRequest(report_data).to_bytes())
        answer = await self.request(page)
        try:
            reply, payload = guest_msg.open_message(vmpck, answer)
        except (FormatError, IntegrityError) as exc:
            raise SevlaunchError(f"sev-guest: the firmware's answer does not open: {exc}") from exc
        if reply.msg_seqno != self._seqno + 1 or reply.msg_type != MessageType.REPORT_RSP:
            raise SevlaunchError("sev-guest: the answer is not the response to this request")
        self._seqno += 1
        response = ReportResponse.from_bytes(payload)
        if response.status:
            raise SevlaunchError(f"sev-guest: MSG_REPORT_RSP status {response.status:#x}")
        return response.report

    async def _attest(self, vmpck: bytes, config: GuestAttestationConfig) -> SecretTable:
        key = ec.generate_private_key(ec.SECP384R1())
        public = release.public_der(key.public_key())
        challenge = await self.agent.challenge(config)
        self.console(f"sevlaunch-attest: nonce from {config.broker} for '{config.workload}'")
        report = await self.report(vmpck, release.report_data(challenge.nonce, public))
        self.console("sevlaunch-attest: report from the AMD-SP (MSG_REPORT_RSP), 1184 bytes")
        evidence = SnpEvidence(config.workload, challenge.nonce, report, public)
        sealed = await self.agent.attest(config, evidence)
        plain = release.open_envelope(key, release.Envelope(sealed.ephemeral, sealed.ciphertext))
        table = SecretTable.from_bytes(plain)
        self.console(
            f"sevlaunch-attest: secrets released ({len(table.entries)} entries), "
            f"attestation {sealed.attestation}"
        )
        return table
