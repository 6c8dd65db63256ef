"""The guest owner as the VM tool sees it: a broker over HTTP, or the owner toolkit run locally.

Both answer the same two questions: "here is the platform, give me a session" (steps 4-5) and
"here is the measurement, give me the secret" (step 11). A refusal raises; nothing returns a
bool.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from sevlaunch.errors import UsageError
from sevlaunch.orchestrate.owner_config import OwnerConfig
from sevlaunch.protocol import (
    LaunchConfiguration,
    LaunchSecurityInfo,
    NodeSevInfo,
    SecretRelease,
    SessionOffer,
    StepReport,
)

if TYPE_CHECKING:
    from sevlaunch.owner.session import LaunchSession


class GuestOwner(Protocol):
    def begin(
        self,
        node_info: NodeSevInfo,
        cek: bytes | None = None,
        *,
        domain: str | None = None,
        host: str | None = None,
    ) -> SessionOffer:
        """Verify the platform (``cek``: the AMD-signed CEK when the chain's is unsigned);
        ``domain`` names the guest on its host, ``host`` is the host's page, for the owner's
        records."""
        ...

    def records_page(self) -> str | None:
        """Where a person reads the owner's records of a launch (a broker's page), if anywhere."""
        ...

    def attest(
        self,
        launch_id: str,
        launch_info: LaunchSecurityInfo,
        configuration: LaunchConfiguration | None = None,
    ) -> SecretRelease:
        """Step 11 (``configuration``: what the VM tool says of the domain, for the words of
        a refusal only)."""
        ...

    def report_steps(
        self, launch_id: str, reports: list[StepReport], host_launch: int | None = None
    ) -> int:
        """Keep the VM tool's record of the launch's steps with the owner's (0: not kept)."""
        ...


class BrokerOwner:
    """The attestation broker (``sevlaunch broker serve``) plays the guest owner."""

    def __init__(
        self,
        url: str,
        token: bytes,
        workload: str,
        *,
        ca_file: str | None = None,
        insecure_plain_http: bool = False,
    ) -> None:
        from sevlaunch.broker.client import BrokerClient

        self.client = BrokerClient(
            url, token, ca_file=ca_file, insecure_plain_http=insecure_plain_http
        )
        self.workload = workload

    #: Seconds the calls after step 4 wait for a broker that went away: a launch outlives a
    #: broker restart, while a wrong address is still told at once, at step 4.
    RECONNECT = 10.0

    def begin(
        self,
        node_info: NodeSevInfo,
        cek: bytes | None = None,
        *,
        domain: str | None = None,
        host: str | None = None,
    ) -> SessionOffer:
        offer = self.client.start_launch(self.workload, node_info, cek, domain=domain, host=host)
        self.client.reconnect = self.RECONNECT  # this broker answered: wait for it from now on
        return offer

    def records_page(self) -> str | None:
        address = self.client.address
        return None if address.scheme == "unix" else f"{address}/"

    def attest(
        self,
        launch_id: str,
        launch_info: LaunchSecurityInfo,
        configuration: LaunchConfiguration | None = None,
    ) -> SecretRelease:
        return self.client.finish_launch(launch_id, launch_info, configuration)

    def report_steps(
        self, launch_id: str, reports: list[StepReport], host_launch: int | None = None
    ) -> int:
        return self.client.report_steps(launch_id, reports, host_launch)


class LocalOwner:
    """The owner toolkit run in this process; TEK and TIK never leave memory."""

    def __init__(self, config: OwnerConfig) -> None:
        self.config = config
        self._launches: dict[str, LaunchSession] = {}  # launch id -> its TEK/TIK, until step 11
        self._digests = list(config.digests)
        if config.firmware is not None:
            self._digests.append(_reference_digest(config, config.firmware))
        if not self._digests:
            raise UsageError(
                "owner.json gives neither a firmware nor digests: nothing to check a measurement against"
            )

    def records_page(self) -> str | None:
        return None  # the local owner keeps no records a browser could read

    def begin(
        self,
        node_info: NodeSevInfo,
        cek: bytes | None = None,
        *,
        domain: str | None = None,
        host: str | None = None,
    ) -> SessionOffer:
        del domain, host  # the local owner keeps no records
        from sevlaunch.owner.session import make_session
        from sevlaunch.owner.verify import trust_store, verify_pdh_and_chain

        trust = trust_store([p.read_bytes() for p in self.config.trust_roots])
        ca = self.config.ca.read_bytes() if self.config.ca else None
        platform = verify_pdh_and_chain(node_info.pdh, node_info.cert_chain, trust, ca=ca, cek=cek)
        launch = make_session(platform, self.config.policy, rng=os.urandom)
        launch_id = secrets.token_hex(8)
        self._launches[launch_id] = launch
        return SessionOffer(
            launch_id, launch.godh.to_bytes(), launch.session.to_bytes(), launch.policy.to_int()
        )

    def report_steps(
        self, launch_id: str, reports: list[StepReport], host_launch: int | None = None
    ) -> int:
        """The local owner keeps no records: the terminal's table is the record."""
        del launch_id, reports, host_launch
        return 0

    def attest(
        self,
        launch_id: str,
        launch_info: LaunchSecurityInfo,
        configuration: LaunchConfiguration | None = None,
    ) -> SecretRelease:
        """The same decision as the broker's (:func:`sevlaunch.owner.decision.decide`)."""
        from sevlaunch.owner.decision import Reason, Registration, decide, refuse
        from sevlaunch.owner.secret import build_packet, secret_table

        launch = self._launches.pop(launch_id, None)
        if launch is None:
            raise refuse(
                Reason.REPLAY,
                f"launch {launch_id} is single-use and unknown or already used; start a new launch",
            )
        registration = Registration(
            policy=launch.policy.to_int(),
            digests=tuple(self._digests),
            min_api=self.config.min_api,
            min_build=self.config.min_build,
            workload=f"owner directory {str(self.config.root)!r}",
        )
        decide(launch_info, registration, launch.keys, configuration)
        table = secret_table(
            (name, path.read_bytes()) for name, path in self.config.secrets.items()
        )
        packet = build_packet(table, launch.keys, launch_info.measurement, rng=os.urandom)
        return SecretRelease(packet.header.to_bytes(), packet.payload)


def _reference_digest(config: OwnerConfig, firmware: Path) -> bytes:
    """The launch digest of the owner's reference artifacts (VMSAs added for SEV-ES)."""
    from sevlaunch.owner.launch_digest import measure_direct_boot, measure_firmware

    with firmware.open("rb") as fw:
        measured = measure_firmware(fw)
    hashes = None
    if config.kernel is not None:
        with config.kernel.open("rb") as kernel:
            if config.initrd is not None:
                with config.initrd.open("rb") as initrd:
                    hashes = measure_direct_boot(kernel, initrd, config.cmdline).hashes()
            else:
                hashes = measure_direct_boot(kernel, None, config.cmdline).hashes()
    pages: tuple[bytes, ...] = ()
    if config.policy.requires_es:
        from sevlaunch.owner.vmsa import EsVmsas, es_pages, legacy_from_option, vcpu_type

        es = config.es
        shape = EsVmsas(
            es.vcpus,
            cpu=vcpu_type(name=es.vcpu_type),
            legacy=legacy_from_option(es.legacy_vm_type),
        )
        pages = es_pages(measured, shape)
    return measured.digest(hashes, pages)
