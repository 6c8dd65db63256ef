"""``sevlaunch demo --snp``: the SEV-SNP demo's terminal side (see orchestrate/snp_demo.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.panel import Panel

if TYPE_CHECKING:
    from sevlaunch.orchestrate.snp_demo import SnpDemoOutcome
    from sevlaunch.orchestrate.snp_launch import SnpLaunchResult


def demo_snp(
    console: Console, root: Path, *, guests: int, keep: bool, latency: str, cleanup: bool
) -> None:
    from sevlaunch.cli.demo import _dashboards, _finish
    from sevlaunch.errors import SevlaunchError
    from sevlaunch.orchestrate import snp_demo as d
    from sevlaunch.orchestrate.services import Stack

    stack = Stack(root, profile="milan", latency=latency, web=keep, snp=True)
    outcome = d.SnpDemoOutcome()
    began = time.monotonic()
    try:
        console.rule("[bold]sevlaunch demo --snp: SEV-SNP guests attested after boot")
        console.print(f"work directory: {root}")
        with console.status("starting the emulated platform (Milan), key server, host, broker…"):
            stack.start(detach=keep)
        console.print(
            f"[green]✓[/] platform [dim]{stack.platform_socket}[/], key server "
            f"[dim]{stack.kds_url}[/] (VCEKs, cert_chain, CRL), host [dim]{stack.host_uri}[/], "
            f"broker [dim]{stack.broker_url}[/]"
        )
        art = d.make_snp_artifacts(root / "images")
        digest = d.register_snp_workloads(stack, art)
        console.print(
            f"[green]✓[/] guest owner pinned the key server's ARK and registered SNP workload "
            f"[bold]{d.WORKLOAD}[/]: policy {d.POLICY:#x}, launch digest [cyan]{digest}[/], "
            "secret: the disk passphrase (luks-key)"
        )
        for i in range(1, guests + 1):
            result = d.run_snp_launch(stack, art, f"snp-{i}", art.firmware)
            outcome.launches.append(result)
            _show_guest(console, result)
        console.rule("[bold]a guest on firmware with one bit flipped")
        outcome.tampered = d.run_snp_launch(stack, art, "snp-tampered", art.tampered)
        _show_refusal(console, outcome.tampered)
        console.rule(f"[bold]a guest of workload {d.NEWER_TCB_WORKLOAD} (minimum SNP SVN 255)")
        outcome.old_tcb = d.run_snp_launch(
            stack, art, "snp-old-tcb", art.firmware, d.NEWER_TCB_WORKLOAD
        )
        _show_refusal(console, outcome.old_tcb)
    except SevlaunchError as exc:
        console.print(f"[bold red]demo failed:[/] {exc}")
        _finish(stack, root, keep=False, cleanup=cleanup)
        raise SystemExit(1) from exc
    _summary(console, outcome, time.monotonic() - began)
    if keep:
        _dashboards(console, stack)
    _finish(stack, root, keep=keep, cleanup=cleanup, console=console)
    raise SystemExit(0 if outcome.ok else 1)


def _show_guest(console: Console, result: SnpLaunchResult) -> None:
    if not result.ok:
        console.print(f"[bold red]✗ {result.message}[/]")
    else:
        console.print(
            f"[green]✓[/] {result.domain}: report verified by the broker (attestation "
            f"{result.attestation}); secret released to the guest's key; disk unlocked"
        )
    console.print(
        Panel(result.console.rstrip() or "(empty)", title=f"{result.domain} serial console",
              expand=False)
    )  # fmt: skip


def _show_refusal(console: Console, result: SnpLaunchResult) -> None:
    if result.ok:
        console.print(f"[bold red]✗ {result.domain} was NOT refused[/]")
        return
    console.print(
        f"[green]✓[/] refused at SNP step {int(result.failed_step or 0)}: [yellow]{result.error}[/]"
    )
    console.print("[green]✓[/] no secret was released; the guest halted and was destroyed")


def _summary(console: Console, outcome: SnpDemoOutcome, seconds: float) -> None:
    booted = sum(r.ok for r in outcome.launches)
    style = "green" if outcome.ok else "red"
    words = "every expected outcome happened" if outcome.ok else "an expected outcome did not"
    console.rule(f"[bold {style}]{words}")
    tampered = outcome.tampered is not None and outcome.tampered.reason
    old = outcome.old_tcb is not None and outcome.old_tcb.reason
    console.print(
        f"{booted}/{len(outcome.launches)} SNP guests attested and unlocked their disk; "
        f"tampered firmware refused: {tampered or 'no'}; newer-TCB workload refused: "
        f"{old or 'no'}; {seconds:.1f} s"
    )
