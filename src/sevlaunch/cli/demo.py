"""``sevlaunch demo``: a full attested launch on an embedded emulated host, in one command."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.panel import Panel

if TYPE_CHECKING:
    from sevlaunch.orchestrate.demo import DemoOutcome
    from sevlaunch.orchestrate.launch import LaunchResult
    from sevlaunch.orchestrate.services import Stack


@click.command()
@click.option(
    "--guests",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Guests to launch at once.",
)
@click.option(
    "--keep", is_flag=True, help="Leave the services running and print how to reach them."
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    default=None,
    help="Work directory (default: a new temporary one).",
)
@click.option(
    "--latency",
    type=click.Choice(["none", "real"]),
    default="none",
    show_default=True,
    help="Emulate real PSP command latencies.",
)
@click.option(
    "--es",
    is_flag=True,
    help="SEV-ES guests: policy 0x5, 2 vCPUs of EPYC-Rome, their VMSAs measured.",
)
@click.option(
    "--snp",
    is_flag=True,
    help="SEV-SNP guests on a Milan platform, attested after boot; then tampered firmware "
    "and a workload demanding a newer TCB, both refused.",
)
def demo(guests: int, keep: bool, directory: str | None, latency: str, es: bool, snp: bool) -> None:
    """Start an emulated SEV platform, a host manager and an attestation broker; register a
    workload whose secret is a disk passphrase; launch guests that unlock their disk with
    it; then launch once more with tampered firmware and show the refusal. Exit 0 only if
    every expected outcome happened."""
    from sevlaunch.errors import SevlaunchError
    from sevlaunch.orchestrate import demo as d
    from sevlaunch.orchestrate.progress import Progress
    from sevlaunch.orchestrate.services import Stack

    console = Console()
    root = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="sevlaunch-demo-"))
    if snp:
        if es:
            raise click.UsageError("--snp and --es are two kinds of guest: give one")
        from sevlaunch.cli.demo_snp import demo_snp

        demo_snp(console, root, guests=guests, keep=keep, latency=latency, cleanup=not directory)
        return
    stack = Stack(root, latency=latency, es=es, web=keep)  # kept: dashboards on loopback TCP
    shape = d.GuestShape.es() if es else d.GuestShape()
    kind = f"SEV-ES, {shape.vcpus} vCPUs {shape.cpu_model}" if es else "nodbg"
    outcome = d.DemoOutcome()
    began = time.monotonic()
    try:
        console.rule("[bold]sevlaunch demo: attested SEV launches on an emulated host")
        console.print(f"work directory: {root}")
        with console.status(
            "starting the emulated platform (Rome profile), host manager and broker…"
        ):
            stack.start(detach=keep)
        console.print(
            f"[green]✓[/] platform service [dim]{stack.platform_socket}[/], key server [dim]{stack.kds_url}[/]"
        )
        console.print(
            f"[green]✓[/] host manager [dim]{stack.host_uri}[/], broker [dim]{stack.broker_url}[/]"
        )
        art = d.make_artifacts(root / "images")
        digest = d.register_workload(stack, art, shape)
        console.print(
            f"[green]✓[/] guest owner registered workload [bold]{d.WORKLOAD}[/]: policy {shape.policy:#06x} ({kind}), "
            f"expected launch digest [cyan]{digest}[/], secret: the disk passphrase (luks-key)"
        )
        names = [f"demo-{i}" for i in range(1, guests + 1)]
        progress = Progress(names, console)
        with progress.live():
            outcome.launches = d.run_launches(stack, art, names, art.firmware, progress, shape)
        for result in outcome.launches:
            _show_guest(console, result)
        console.rule("[bold]the same launch with one bit of the firmware flipped")
        progress = Progress(["tampered"], console)
        with progress.live():
            outcome.tampered = d.run_launches(
                stack, art, ["tampered"], art.tampered, progress, shape
            )[0]
        _show_refusal(console, outcome.tampered)
    except SevlaunchError as exc:
        console.print(f"[bold red]demo failed:[/] {exc}")
        _finish(stack, root, keep=False, cleanup=directory is None)
        raise SystemExit(1) from exc
    _summary(console, outcome, time.monotonic() - began)
    if keep:
        _dashboards(console, stack)
    _finish(stack, root, keep=keep, cleanup=directory is None, console=console)
    raise SystemExit(0 if outcome.ok else 1)


def _show_guest(console: Console, result: LaunchResult) -> None:
    if not result.ok:
        console.print(f"[bold red]✗ {result.domain}: {result.error}[/]")
        return
    console.print(
        f"[green]✓[/] {result.domain}: measurement [cyan]{result.measurement}[/] matched; "
        "secret injected; guest running"
    )
    console.print(
        Panel(
            result.console.rstrip() or "(empty)",
            title=f"{result.domain} serial console",
            expand=False,
        )
    )


def _show_refusal(console: Console, result: LaunchResult) -> None:
    if result.ok:
        console.print("[bold red]✗ the tampered launch was NOT refused[/]")
        return
    console.print(
        f"[green]✓[/] refused at step {int(result.failed_step or 0)}: [yellow]{result.error}[/]"
    )
    console.print("[green]✓[/] no secret was released and the domain was destroyed")


def _summary(console: Console, outcome: DemoOutcome, seconds: float) -> None:
    booted = sum(r.ok for r in outcome.launches)
    style = "green" if outcome.ok else "red"
    console.rule(
        f"[bold {style}]{'every expected outcome happened' if outcome.ok else 'an expected outcome did not happen'}"
    )
    refused = outcome.tampered is not None and not outcome.tampered.ok
    tampered = (
        "the tampered launch was refused" if refused else "the tampered launch was NOT refused"
    )
    console.print(
        f"{booted}/{len(outcome.launches)} attested guests booted and unlocked their disk; "
        f"{tampered}; {seconds:.1f} s"
    )


def _finish(
    stack: Stack, root: Path, *, keep: bool, cleanup: bool, console: Console | None = None
) -> None:
    from sevlaunch.orchestrate.demo import destroy_all

    if keep and console is not None:
        _kept(console, stack)
        return
    with contextlib.suppress(Exception):  # best effort: the services are going away anyway
        destroy_all(stack)
    stack.stop()
    if cleanup:
        shutil.rmtree(root, ignore_errors=True)


def _dashboards(console: Console, stack: Stack) -> None:
    """Each dashboard's address and where its token is, as plain lines to copy."""
    from sevlaunch.orchestrate.demo import dashboards

    console.rule("[bold]the dashboards")
    for line in dashboards(stack):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def _kept(console: Console, stack: Stack) -> None:
    """How to reach the services left running, and how to stop them: plain lines, so that
    they can be pasted into a shell."""
    pids = " ".join(str(service.process.pid) for service in stack.services)
    console.rule("[bold]the services are still running")
    for line in (
        f"export SEVLAUNCH_HOST={stack.host_uri}",
        f"export SEVLAUNCH_PLATFORM=unix:{stack.platform_socket}",
        f"export SEVLAUNCH_BROKER_URL={stack.broker_url}",
        f"export SEVLAUNCH_OWNER_TOKEN_FILE={stack.owner_token}",
        f"export SEVLAUNCH_LAUNCHER_TOKEN_FILE={stack.launcher_token}",
        f"export SEVLAUNCH_KDS_URL={stack.kds_url}",
        "sevlaunch host list --all; sevlaunch host console demo-1; sevlaunch host timeline demo-1",
        "sevlaunch broker audit; sevlaunch platform status",
        "# stop them: the guests, then the services (their pids)",
        'for vm in $(sevlaunch host list --name); do sevlaunch host destroy "$vm"; done; '
        f"kill {pids}",
    ):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
