"""``sevlaunch broker snp``: the owner's SNP roots, workloads and secrets, and the SNP options
of ``broker serve`` (where the key server is, how long a nonce lives)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from sevlaunch.cli._util import EXIT_USAGE, emit_json, errors_to_exit, fail, json_option, read_file
from sevlaunch.cli.broker_admin import client_options, owner_client
from sevlaunch.protocol.snp_admin import SnpWorkload


def _hex(text: str, what: str, size: int) -> None:
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        fail(f"{what} must be hex, got {text[:100]!r}", code=EXIT_USAGE)
    if len(raw) != size:
        fail(f"{what} is {size} bytes ({2 * size} hex digits), got {len(raw)}", code=EXIT_USAGE)


def snp_serve_options(command: Callable[..., None]) -> Callable[..., None]:
    """``serve``'s SNP options, handed to it as one ``snp`` (a SnpSettings)."""

    @click.option(
        "--kds-url",
        envvar="SEVLAUNCH_KDS_URL",
        show_envvar=True,
        default=None,
        help="SNP key server laid out as kdsintf.amd.com (default AMD's); e.g. the emulated "
        "one of 'sevlaunch platform kds'.",
    )
    @click.option(
        "--kds-cache-dir",
        type=click.Path(file_okay=False),
        default=None,
        help="Where fetched SNP certificates are kept (default: the user's cache, "
        "$SEVLAUNCH_CACHE_DIR).",
    )
    @click.option(
        "--snp-nonce-ttl",
        default=300.0,
        show_default=True,
        help="Seconds an SNP guest's nonce may wait for its report; then it is erased.",
    )
    @click.option(
        "--snp-crl-ttl",
        default=3600.0,
        show_default=True,
        help="Seconds a fetched SNP CRL is used before it is fetched again.",
    )
    @click.option(
        "--snp-max-nonces",
        default=1000,
        show_default=True,
        type=click.IntRange(min=1),
        help="Unspent nonces an SNP workload may have at once (429 past it).",
    )
    @click.option(
        "--snp-client-rate",
        default=3000.0,
        show_default=True,
        type=click.FloatRange(min=0, min_open=True),
        help="SNP challenges and attestations a minute per client address (429 past it).",
    )
    @click.option(
        "--snp-client-burst",
        default=1000,
        show_default=True,
        type=click.IntRange(min=1),
        help="SNP calls a client address may make at once within its rate.",
    )
    @functools.wraps(command)
    def wrapper(
        kds_url: str | None,
        kds_cache_dir: str | None,
        snp_nonce_ttl: float,
        snp_crl_ttl: float,
        snp_max_nonces: int,
        snp_client_rate: float,
        snp_client_burst: int,
        **kw: Any,
    ) -> None:
        from pathlib import Path

        from sevlaunch.broker.snp_admin import SnpSettings

        kw["snp"] = SnpSettings(
            kds_url=kds_url,
            cache_dir=Path(kds_cache_dir) if kds_cache_dir else None,
            nonce_ttl=snp_nonce_ttl,
            crl_ttl=snp_crl_ttl,
            max_open_nonces=snp_max_nonces,
            peer_rate=snp_client_rate,
            peer_burst=snp_client_burst,
        )
        command(**kw)

    return wrapper


@click.group()
def snp() -> None:
    """SEV-SNP post-attestation: guests present a report after boot and get their secrets.

    Pin a non-AMD ARK with 'snp trust add', register what the reports must show with
    'snp workload add', and give the guests the broker's address and the workload's name.
    """


# -- roots -------------------------------------------------------------------------------------


@snp.group()
def trust() -> None:
    """ARKs trusted for SNP besides AMD's pinned ones (an emulated platform's)."""


@trust.command("add")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--name", default=None, help="Name of the root (default: product and fingerprint).")
@client_options
@json_option
def trust_add(file: str, name: str | None, broker: Any, as_json: bool) -> None:
    """Pin the ARK in FILE (an ARK alone, or KDS's cert_chain ASK ‖ ARK; PEM or DER)."""
    data = read_file(file, "ARK")
    with errors_to_exit(as_json=as_json), owner_client(broker) as client:
        out = client.add_snp_root(data, name)
    if as_json:
        emit_json(out.to_wire())
    else:
        click.echo(f"pinned {out.product} ARK {out.name} (SHA-256 {out.fingerprint})")


@trust.command("list")
@client_options
@json_option
def trust_list(broker: Any, as_json: bool) -> None:
    """List pinned SNP roots (AMD's are always trusted and not listed)."""
    with errors_to_exit(as_json=as_json), owner_client(broker) as client:
        rows = client.snp_roots()
    if as_json:
        emit_json([r.to_wire() for r in rows])
        return
    for r in rows:
        click.echo(f"{r.name}\t{r.product}\t{r.fingerprint}")


@trust.command("remove")
@click.argument("name")
@client_options
def trust_remove(name: str, broker: Any) -> None:
    """Stop trusting a pinned SNP root."""
    with errors_to_exit(), owner_client(broker) as client:
        client.remove_snp_root(name)
    click.echo(f"removed SNP root {name}")


# -- workloads ---------------------------------------------------------------------------------


@snp.group()
def workload() -> None:
    """SNP workloads: expected launch digests, policies, TCB, firmware, ID keys, secrets."""


def _numbers(text: str, option: str, count: int) -> list[int]:
    try:
        parts = [int(p, 0) for p in text.split(".")]
    except ValueError:
        parts = []
    if len(parts) != count:
        fail(f"{option} takes {count} numbers separated by '.', got {text!r}", code=EXIT_USAGE)
    return parts


def _tcb(text: str | None) -> dict[str, int]:
    if text is None:
        return {}
    from sevlaunch.owner.snp.expectations import TcbMinimum

    with errors_to_exit(code=EXIT_USAGE):
        return TcbMinimum.parse(text).__dict__.copy()


def _secret(text: str) -> tuple[str, bytes]:
    guid, sep, path = text.partition(":")
    if not sep or not path:
        fail(
            f"--secret takes GUID_OR_ALIAS:FILE (e.g. luks-key:key.txt), got {text!r}",
            code=EXIT_USAGE,
        )
    return guid, read_file(path, f"secret {guid}")


@workload.command("add")
@click.argument("name")
@click.option(
    "--digest",
    "digests",
    multiple=True,
    metavar="HEX",
    help="Expected launch digest (SHA-384, as 'owner snp digest' prints it); repeatable.",
)
@click.option(
    "--policy",
    "policies",
    multiple=True,
    metavar="N",
    help="An exact guest policy allowed (e.g. 0x30000); repeatable; none: any the checks accept.",
)
@click.option("--min-abi", default="0.0", show_default=True, help="Minimum policy ABI MAJOR.MINOR.")
@click.option("--min-tcb", metavar="SPEC", help="Minimum REPORTED_TCB, e.g. bl=3,snp=8,ucode=115.")
@click.option(
    "--min-firmware",
    default="0.0.0",
    show_default=True,
    help="Minimum SNP firmware MAJOR.MINOR.BUILD.",
)
@click.option(
    "--id-key-digest",
    "id_keys",
    multiple=True,
    metavar="HEX",
    help="A trusted ID key digest (SHA-384, from 'owner snp id-block'); repeatable.",
)
@click.option(
    "--author-key-digest",
    "author_keys",
    multiple=True,
    metavar="HEX",
    help="A trusted author key digest; repeatable.",
)
@click.option("--require-id-block", is_flag=True, help="Refuse guests launched without one.")
@click.option("--host-data", metavar="BASE64", help="Expected HOST_DATA (as libvirt's hostData).")
@click.option(
    "--vmpl",
    type=click.Choice(["0", "1", "2", "3", "any"]),
    default="0",
    show_default=True,
    help="Expected VMPL of the report.",
)
@click.option("--allow-debug", is_flag=True, help="Accept a policy that allows debugging.")
@click.option("--allow-provisional", is_flag=True, help="Accept uncommitted firmware.")
@click.option("--no-crl", is_flag=True, help="Release without a CRL check.")
@click.option("--vlek-csp", multiple=True, metavar="ID", help="A trusted VLEK cloud (cspId).")
@click.option("--secret", "secrets", multiple=True, help="GUID_OR_ALIAS:FILE; repeatable.")
@client_options
@json_option
def workload_add(name: str, broker: Any, as_json: bool, **o: Any) -> None:
    """Register SNP workload NAME: what its guests' reports must show, and its secrets."""
    major, minor = _numbers(o["min_abi"], "--min-abi", 2)
    fw = _numbers(o["min_firmware"], "--min-firmware", 3)
    try:
        policies = [int(p, 0) for p in o["policies"]]
    except ValueError:
        fail("--policy takes a number (e.g. 0x30000)", code=EXIT_USAGE)
    for digest in (*o["digests"], *o["id_keys"], *o["author_keys"]):
        _hex(digest, "a digest", 48)
    body: dict[str, Any] = {
        "name": name,
        "digests": list(o["digests"]),
        "policies": policies,
        "minAbiMajor": major,
        "minAbiMinor": minor,
        "minTcb": _tcb(o["min_tcb"]),
        "minFirmware": dict(zip(("major", "minor", "build"), fw, strict=True)),
        "idKeyDigests": list(o["id_keys"]),
        "authorKeyDigests": list(o["author_keys"]),
        "requireIdBlock": o["require_id_block"],
        "hostData": o["host_data"],
        "vmpl": None if o["vmpl"] == "any" else int(o["vmpl"]),
        "allowDebug": o["allow_debug"],
        "allowProvisionalFirmware": o["allow_provisional"],
        "requireCrl": not o["no_crl"],
        "vlekCspIds": list(o["vlek_csp"]),
    }
    values = dict(_secret(s) for s in o["secrets"])
    with errors_to_exit(as_json=as_json), owner_client(broker) as client:
        out = client.add_snp_workload(body, values)
    _print(out, as_json)


def _print(w: SnpWorkload, as_json: bool) -> None:
    if as_json:
        emit_json(w.to_wire())
        return
    from sevlaunch.owner.snp.expectations import SnpExpectations

    with errors_to_exit():
        exp = SnpExpectations.from_dict(w.expectations)
    click.echo(f"SNP workload {w.name}")
    for d in exp.measurements:
        click.echo(f"  digest:   {d.hex()}")
    policies = exp.allowed_policies
    click.echo("  policies: " + (", ".join(f"{p:#x}" for p in policies) or "any accepted"))
    tcb = ",".join(f"{k}={v}" for k, v in exp.min_reported_tcb.__dict__.items())
    fw = ".".join(str(n) for n in exp.min_firmware)
    click.echo(f"  minimum:  ABI {exp.min_abi[0]}.{exp.min_abi[1]}, TCB {tcb}, firmware {fw}")
    for key in exp.trusted_id_keys:
        click.echo(f"  id key:   {key.hex()}")
    if exp.host_data is not None:
        click.echo(f"  host data: {exp.host_data.hex()}")
    click.echo(f"  CRL:      {'required' if exp.require_crl else 'not checked'}")
    click.echo("  secrets:  " + (", ".join(w.secrets) or "none"))


@workload.command("list")
@client_options
@json_option
def workload_list(broker: Any, as_json: bool) -> None:
    """List SNP workloads."""
    with errors_to_exit(as_json=as_json), owner_client(broker) as client:
        rows = client.snp_workloads()
    if as_json:
        emit_json([w.to_wire() for w in rows])
        return
    for w in rows:
        digests, keys = (w.expectations.get(k) for k in ("measurements", "trusted_id_keys"))
        click.echo(
            f"{w.name}\tdigests={len(digests) if isinstance(digests, list) else 0}"
            f"\tid-keys={len(keys) if isinstance(keys, list) else 0}\tsecrets={len(w.secrets)}"
        )


@workload.command("show")
@click.argument("name")
@client_options
@json_option
def workload_show(name: str, broker: Any, as_json: bool) -> None:
    """Show one SNP workload (secret GUIDs, never their values)."""
    with errors_to_exit(as_json=as_json), owner_client(broker) as client:
        out = client.snp_workload(name)
    _print(out, as_json)


@workload.command("remove")
@click.argument("name")
@client_options
def workload_remove(name: str, broker: Any) -> None:
    """Remove an SNP workload, its secrets and its outstanding nonces."""
    with errors_to_exit(), owner_client(broker) as client:
        client.remove_snp_workload(name)
    click.echo(f"removed SNP workload {name}")


@snp.command("secret")
@click.argument("workload_name", metavar="WORKLOAD")
@click.argument("guid")
@click.argument("file", type=click.Path(dir_okay=False))
@client_options
def secret_set(workload_name: str, guid: str, file: str, broker: Any) -> None:
    """Set secret GUID (or alias such as luks-key) of SNP WORKLOAD to the bytes of FILE."""
    value = read_file(file, "secret")
    with errors_to_exit(), owner_client(broker) as client:
        client.set_snp_secret(workload_name, guid, value)
    click.echo(f"secret {guid} of SNP workload {workload_name} set ({len(value)} bytes, sealed)")
