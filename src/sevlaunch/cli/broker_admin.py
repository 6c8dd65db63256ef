"""``sevlaunch broker launcher`` and ``sevlaunch broker launch``: the owner's view of who may
launch and of every launch (expired ones included)."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from sevlaunch.cli._conn import OWNER_TOKEN_ENV, Conn, broker_connection, token_file
from sevlaunch.cli._util import emit_json, errors_to_exit, fail, json_option

if TYPE_CHECKING:
    from sevlaunch.broker.client import BrokerClient
    from sevlaunch.protocol.admin import Launcher

client_options = broker_connection("owner")
STATES = ("awaiting-measurement", "released", "refused", "expired")


def owner_client(conn: Conn) -> BrokerClient:
    from sevlaunch.broker.client import BrokerClient, read_token
    from sevlaunch.errors import UsageError

    path = token_file(conn.token_file, "--owner-token-file", OWNER_TOKEN_ENV)
    try:
        return BrokerClient(
            conn.address,
            read_token(path),
            ca_file=conn.ca_file,
            insecure_plain_http=conn.insecure_plain_http,
        )
    except UsageError as exc:  # the address or token file as given: exit 2, as click's own
        raise click.UsageError(str(exc)) from exc


def when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


# -- launchers ---------------------------------------------------------------------------------


@click.command()
@click.option(
    "--after",
    type=int,
    default=None,
    help="Only entries after this id, oldest first (to read on from an id); without it, "
    "the newest --limit entries.",
)
@click.option("--launcher", "launcher_name", default=None, help="Only this launcher's entries.")
@click.option("--limit", default=100, show_default=True, help="At most this many entries.")
@click.option("--workload", "workload_name", default=None, help="Only this workload's entries.")
@click.option("--launch", default=None, help="Only this launch's entries (its id).")
@client_options
@json_option
def audit(
    after: int | None,
    launcher_name: str | None,
    limit: int,
    workload_name: str | None,
    launch: str | None,
    broker: Conn,
    as_json: bool,
) -> None:
    """Show the audit log: every decision the broker made (expiries are 'launch.expire'),
    in id order; the newest entries unless --after is given."""
    with errors_to_exit(as_json=as_json), owner_client(broker) as client:
        rows = client.audit(
            after=after or 0,
            limit=limit,
            workload=workload_name,
            launch=launch,
            launcher=launcher_name,
            newest="true" if after is None else None,
        )
    if as_json:
        emit_json([r.to_wire() for r in rows])
        return
    for r in rows:
        parts = [str(r.id), when(r.at), r.instance, r.actor, r.action, r.outcome]
        named = {"reason": r.reason, "workload": r.workload, "launch": r.launch}
        parts += [f"{k}={v}" for k, v in (named | {"launcher": r.launcher}).items() if v]
        click.echo("  ".join(parts))


@click.group()
def launcher() -> None:
    """Named launchers: each has its own token, sees only its own launches, and has limits.

    The launcher named 'default' is the one of 'broker serve --launcher-token-file'.
    """


def _write_token(path: str, token: str) -> None:
    """A new file of mode 0600 holding the token (an existing file is not overwritten)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        fail(f"cannot create token file {path}: {exc.strerror}")
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")


@launcher.command("add")
@click.argument("name")
@click.option("--max-open", type=click.IntRange(min=1), default=None, help="Open launches at most.")
@click.option(
    "--rate", type=click.FloatRange(min=0, min_open=True), default=None, help="Launches a minute."
)
@click.option(
    "--burst", type=click.IntRange(min=1), default=None, help="Launches at once within the rate."
)
@click.option(
    "--token-out",
    "out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the token to this new file (mode 0600) instead of printing it.",
)
@client_options
@json_option
def launcher_add(
    name: str,
    max_open: int | None,
    rate: float | None,
    burst: int | None,
    out: str | None,
    broker: Conn,
    as_json: bool,
) -> None:
    """Add launcher NAME and print its token, once: the broker keeps only its hash.

    Limits left out are the broker's defaults (serve --launcher-max-open, --launcher-rate,
    --launcher-burst).
    """
    with errors_to_exit(as_json=as_json), owner_client(broker) as client:
        made = client.add_launcher(name, max_open=max_open, rate=rate, burst=burst)
    token = made.token or ""  # the client refuses an answer without one
    if out is not None:
        _write_token(out, token)
    if as_json:
        emit_json(replace(made, token=None).to_wire() if out else made.to_wire())
        return
    click.echo(f"added launcher {made.name} ({_limits(made)})")
    if out is not None:
        click.echo(f"its token is in {out}; it is not shown again")
    else:
        click.echo("its token (shown this once, keep it in a file of mode 0600):")
        click.echo(token)


def _limits(row: Launcher) -> str:
    defaults = set(row.defaults)
    parts = [
        f"max-open {row.max_open}",
        f"rate {row.rate:g}/min",
        f"burst {row.burst}",
    ]
    keys = ("max_open", "rate", "burst")
    return ", ".join(
        p + (" (default)" if k in defaults else "") for p, k in zip(parts, keys, strict=True)
    )


@launcher.command("list")
@client_options
@json_option
def launcher_list(broker: Conn, as_json: bool) -> None:
    """List launchers: limits, open launches, revoked or not."""
    with errors_to_exit(as_json=as_json), owner_client(broker) as client:
        rows = client.launchers()
    if as_json:
        emit_json([r.to_wire() for r in rows])
        return
    for r in rows:
        status = f"revoked {when(r.revoked_at)}" if r.revoked_at else "active"
        click.echo(f"{r.name}\t{status}\topen={r.open}\t{_limits(r)}")


@launcher.command("revoke")
@click.argument("name")
@client_options
def launcher_revoke(name: str, broker: Conn) -> None:
    """Refuse NAME's token from now on; its launches awaiting a measurement are refused."""
    with errors_to_exit(), owner_client(broker) as client:
        client.revoke_launcher(name)
    click.echo(f"revoked launcher {name}")


# -- launches ----------------------------------------------------------------------------------


@click.group()
def launch() -> None:
    """Launches as the broker records them: awaiting a measurement, released, refused or
    expired (an expired launch's keys are erased)."""


@launch.command("list")
@click.option("--launcher", "launcher_name", default=None, help="Only this launcher's.")
@click.option("--workload", default=None, help="Only this workload's.")
@click.option("--state", type=click.Choice(STATES), default=None, help="Only in this state.")
@click.option("--limit", default=100, show_default=True, help="At most this many, newest first.")
@client_options
@json_option
def launch_list(
    launcher_name: str | None,
    workload: str | None,
    state: str | None,
    limit: int,
    broker: Conn,
    as_json: bool,
) -> None:
    """List launches, newest first."""
    with errors_to_exit(as_json=as_json), owner_client(broker) as client:
        rows = client.launches(launcher=launcher_name, workload=workload, state=state, limit=limit)
    if as_json:
        emit_json([r.to_wire() for r in rows])
        return
    for r in rows:
        reason = f" ({r.reason})" if r.reason else ""
        click.echo(f"{r.id}  {when(r.created_at)}  {r.launcher}  {r.workload}  {r.state}{reason}")


@launch.command("show")
@click.argument("launch_id", metavar="ID")
@client_options
@json_option
def launch_show(launch_id: str, broker: Conn, as_json: bool) -> None:
    """Show one launch: state, launcher, when it was made, expires or expired, ended."""
    with errors_to_exit(as_json=as_json), owner_client(broker) as client:
        r = client.launch(launch_id)
    if as_json:
        emit_json(r.to_wire())
        return
    click.echo(f"launch {r.id}")
    click.echo(f"  workload: {r.workload}  launcher: {r.launcher}  policy: {r.policy:#06x}")
    click.echo(f"  state:    {r.state}" + (f" ({r.reason})" if r.reason else ""))
    click.echo(f"  created:  {when(r.created_at)}  expires: {when(r.expires_at)}")
    click.echo(f"  ended:    {when(r.finished_at)}")
