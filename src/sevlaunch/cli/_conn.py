"""The one convention of every client and server command (README "One CLI convention").

The same thing has the same option and environment variable in every group:

==========================  ==========================  ===================================
option                      environment                 what
==========================  ==========================  ===================================
``-c/--connect ADDRESS``    ``SEVLAUNCH_HOST``          the host manager
``--broker ADDRESS``        ``SEVLAUNCH_BROKER_URL``    the attestation broker
``--platform ADDRESS``      ``SEVLAUNCH_PLATFORM``      the emulated platform (Unix socket)
``--host-token-file``       ``SEVLAUNCH_HOST_TOKEN_FILE``       the host manager's token
``--owner-token-file``      ``SEVLAUNCH_OWNER_TOKEN_FILE``      the broker's owner token
``--launcher-token-file``   ``SEVLAUNCH_LAUNCHER_TOKEN_FILE``   the broker's launcher token
``--ca-file``               ``SEVLAUNCH_CA_FILE``       CAs that sign the servers' TLS certs
``--insecure-plain-http``   ``SEVLAUNCH_INSECURE_PLAIN_HTTP``   allow tokens in clear off-host
==========================  ==========================  ===================================

A server's ``--listen`` reads the same variable as its clients, and its default is the
clients' default, so ``export SEVLAUNCH_HOST=...`` serves both sides. Old spellings
(``--url``, ``--socket``, ``--host``, ``--token-file``, ``SEVLAUNCH_BROKER_TOKEN_FILE``) still
work for this release and print one deprecation line.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

HOST_ENV = "SEVLAUNCH_HOST"
BROKER_ENV = "SEVLAUNCH_BROKER_URL"
PLATFORM_ENV = "SEVLAUNCH_PLATFORM"
HOST_TOKEN_ENV = "SEVLAUNCH_HOST_TOKEN_FILE"  # noqa: S105 (variable names)
OWNER_TOKEN_ENV = "SEVLAUNCH_OWNER_TOKEN_FILE"  # noqa: S105
LAUNCHER_TOKEN_ENV = "SEVLAUNCH_LAUNCHER_TOKEN_FILE"  # noqa: S105
OLD_BROKER_TOKEN_ENV = "SEVLAUNCH_BROKER_TOKEN_FILE"  # noqa: S105
CA_ENV = "SEVLAUNCH_CA_FILE"
INSECURE_ENV = "SEVLAUNCH_INSECURE_PLAIN_HTTP"
BROKER_DEFAULT = "tcp:127.0.0.1:8470"
ADDRESS_FORMS = "unix:PATH (or a bare path), tcp:HOST:PORT, http(s)://HOST:PORT"
ALIASES = "sevlaunch.aliases"


def run_dir() -> Path:
    """RUNDIR (:func:`sevlaunch._files.default_run_dir`)."""
    from sevlaunch._files import default_run_dir

    return default_run_dir()


def default_host() -> str:
    return f"unix:{run_dir() / 'host.sock'}"


def default_platform() -> str:
    return f"unix:{run_dir() / 'platform.sock'}"


def deprecated(old: str, new: str) -> None:
    click.echo(
        f"warning: {old} is deprecated and goes away in the next release; use {new}", err=True
    )


def alias(old: str, dest: str, new: str, **kwargs: Any) -> Callable[..., Any]:
    """A hidden old spelling of ``new``: it still works, with a deprecation line."""

    def remember(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        if value is not None and value is not False:
            deprecated(old, new)
            ctx.meta.setdefault(ALIASES, {})[dest] = value

    return click.option(
        old, f"_alias_{dest}", hidden=True, expose_value=False, callback=remember, **kwargs
    )


def apply_aliases(func: Callable[..., Any]) -> Callable[..., Any]:
    """Let an old spelling given on the command line win over the new option's default or
    environment (not over the new option given on the command line)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        for dest, value in ctx.meta.get(ALIASES, {}).items():
            if ctx.get_parameter_source(dest) is not ParameterSource.COMMANDLINE:
                kwargs[dest] = value
        return func(*args, **kwargs)

    return wrapper


def _stack(*decorators: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def apply(func: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


_FILE = click.Path(dir_okay=False)


def tls_client_options(func: Callable[..., Any]) -> Callable[..., Any]:
    return _stack(
        click.option(
            "--ca-file",
            envvar=CA_ENV,
            show_envvar=True,
            type=_FILE,
            help="PEM file of the CA(s) that sign the servers' TLS certificates (https:// "
            "addresses); default: the system's CAs.",
        ),
        click.option(
            "--insecure-plain-http",
            is_flag=True,
            envvar=INSECURE_ENV,
            show_envvar=True,
            help="Allow plain http:// to a non-loopback address (tokens cross it in clear).",
        ),
    )(func)


@dataclass(frozen=True)
class Conn:
    """One service a client command talks to, as its options gave it."""

    address: str
    token_file: str | None
    ca_file: str | None
    insecure_plain_http: bool


def _host_address(*, libvirt: bool = False) -> list[Callable[..., Any]]:
    forms = ADDRESS_FORMS + (
        "; or a libvirt URI (qemu:///system, qemu+ssh://HOST/system): libvirtd is the host"
        if libvirt
        else ""
    )
    return [
        click.option(
            "--connect",
            "-c",
            "uri",
            envvar=HOST_ENV,
            show_envvar=True,
            default=default_host,
            metavar="ADDRESS",
            show_default="unix:RUNDIR/host.sock, as host serve",
            help=f"The host manager: {forms}.",
        ),
        click.option(
            "--host-token-file",
            envvar=HOST_TOKEN_ENV,
            show_envvar=True,
            type=_FILE,
            help="File holding the host manager's bearer token (needed over TCP).",
        ),
    ]


def _broker_address(role: str) -> list[Callable[..., Any]]:
    dest = f"{role}_token_file"
    env = OWNER_TOKEN_ENV if role == "owner" else LAUNCHER_TOKEN_ENV
    return [
        click.option(
            "--broker",
            "broker_url",
            envvar=BROKER_ENV,
            show_envvar=True,
            default=BROKER_DEFAULT,
            metavar="ADDRESS",
            show_default=True,
            help=f"The attestation broker: {ADDRESS_FORMS}.",
        ),
        alias("--url", "broker_url", "--broker"),
        click.option(
            f"--{role}-token-file",
            dest,
            envvar=env,
            show_envvar=True,
            type=_FILE,
            help=f"File holding the broker's {role} token.",
        ),
        alias("--token-file", dest, f"--{role}-token-file"),
    ]


def _collect(
    func: Callable[..., Any], build: Callable[[dict[str, Any]], dict[str, Conn]]
) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **build(kwargs), **kwargs)

    return wrapper


def _host_conn(kwargs: dict[str, Any], tls: dict[str, Any]) -> Conn:
    return Conn(kwargs.pop("uri"), kwargs.pop("host_token_file"), **tls)


def _broker_conn(kwargs: dict[str, Any], role: str, tls: dict[str, Any]) -> Conn:
    return Conn(kwargs.pop("broker_url"), kwargs.pop(f"{role}_token_file"), **tls)


def _tls(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {
        "ca_file": kwargs.pop("ca_file"),
        "insecure_plain_http": kwargs.pop("insecure_plain_http"),
    }


def host_connection(func: Callable[..., Any]) -> Callable[..., Any]:
    """The host group's options, passed to the command as ``host: Conn``."""
    inner = _collect(func, lambda kw: {"host": _host_conn(kw, _tls(kw))})
    old = alias("--token-file", "host_token_file", "--host-token-file")
    return _stack(*_host_address(), old, tls_client_options, apply_aliases)(inner)


def broker_connection(role: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The broker's options for ``role``, passed to the command as ``broker: Conn``."""

    def apply(func: Callable[..., Any]) -> Callable[..., Any]:
        inner = _collect(func, lambda kw: {"broker": _broker_conn(kw, role, _tls(kw))})
        return _stack(*_broker_address(role), tls_client_options, apply_aliases)(inner)

    return apply


def launch_connections(func: Callable[..., Any]) -> Callable[..., Any]:
    """The VM tool's: the host manager and the broker (launcher token), one TLS setting."""

    def both(kw: dict[str, Any]) -> dict[str, Conn]:
        tls = _tls(kw)
        return {"host": _host_conn(kw, tls), "broker": _broker_conn(kw, "launcher", tls)}

    inner = _collect(func, both)
    old_host = alias("--host", "uri", "-c/--connect")
    return _stack(
        *_host_address(libvirt=True),
        old_host,
        *_broker_address("launcher"),
        tls_client_options,
        apply_aliases,
    )(inner)


def token_file(value: str | None, option: str, env: str) -> str:
    """The token file given, else the old shared variable (with a deprecation line)."""
    if value:
        return value
    old = os.environ.get(OLD_BROKER_TOKEN_ENV)
    if old:
        deprecated(OLD_BROKER_TOKEN_ENV, env)
        return old
    raise click.UsageError(f"no token file: pass {option} FILE or set {env}")


def platform_option(
    *, default: bool = True, help_text: str | None = None, dest: str = "platform"
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--platform`` (``dest``): the platform service's socket; old ``--socket``."""
    return _stack(
        click.option(
            "--platform",
            dest,
            envvar=PLATFORM_ENV,
            show_envvar=True,
            default=default_platform if default else None,
            metavar="ADDRESS",
            show_default="unix:RUNDIR/platform.sock, as platform serve" if default else None,
            help=help_text or "The emulated platform's Unix socket: unix:PATH or a bare path.",
        ),
        alias("--socket", dest, "--platform"),
        apply_aliases,
    )


def server_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """TLS and the limits of :class:`sevlaunch._guard.Limits` for a ``serve`` command."""
    from sevlaunch._guard import Limits

    limits = Limits()
    return _stack(
        click.option(
            "--tls-cert",
            envvar="SEVLAUNCH_TLS_CERT",
            show_envvar=True,
            type=_FILE,
            help="Serve HTTPS with this PEM certificate chain (with --tls-key).",
        ),
        click.option(
            "--tls-key",
            envvar="SEVLAUNCH_TLS_KEY",
            show_envvar=True,
            type=_FILE,
            help="The certificate's PEM private key (mode 0600).",
        ),
        click.option(
            "--insecure-plain-http",
            is_flag=True,
            envvar=INSECURE_ENV,
            show_envvar=True,
            help="Allow plain HTTP on a non-loopback address (tokens cross it in clear).",
        ),
        click.option(
            "--max-body",
            type=click.IntRange(1024),
            default=limits.max_body,
            show_default=True,
            help="Largest request body in bytes (413 past it).",
        ),
        click.option(
            "--header-timeout",
            type=click.FloatRange(0.1),
            default=limits.header_timeout,
            show_default=True,
            help="Seconds a connection may take to send its request head.",
        ),
        click.option(
            "--body-timeout",
            type=click.FloatRange(0.1),
            default=limits.body_timeout,
            show_default=True,
            help="Seconds a request body may take to arrive (408 past it).",
        ),
        click.option(
            "--max-connections",
            type=click.IntRange(1),
            default=limits.max_connections,
            show_default=True,
            help="Open connections served at once; more get a 503 and are closed.",
        ),
    )(func)


def limits_of(kwargs: dict[str, Any]) -> Any:
    """Pop the :func:`server_options` limits out of a command's keyword arguments."""
    from sevlaunch._guard import Limits

    return Limits(
        max_body=kwargs.pop("max_body"),
        header_timeout=kwargs.pop("header_timeout"),
        body_timeout=kwargs.pop("body_timeout"),
        max_connections=kwargs.pop("max_connections"),
    )
