"""``sevlaunch owner session``: verify a platform, then make a launch session for it.

Writes sevctl's file set: ``NAME_godh.b64`` and ``NAME_session.b64`` (base64, for QEMU
``dh-cert-file``/``session-file`` or libvirt ``<dhCert>``/``<session>``) and the raw 16-byte
``NAME_tek.bin`` and ``NAME_tik.bin``, which are created with mode 0600 and never exist with
a wider mode, not even briefly.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from sevlaunch._files import write_atomic
from sevlaunch.cli._util import EXIT_USAGE, errors_to_exit, fail, read_file
from sevlaunch.cli.owner._chain import chain_options
from sevlaunch.errors import ChainError, FormatError, SevlaunchError
from sevlaunch.formats.policy import Policy
from sevlaunch.owner.session import make_session
from sevlaunch.owner.verify import trust_store, verify_chain_file


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600, never readable by others meanwhile."""
    write_atomic(path, data)


def _write_outputs(out: Path, name: str, files: dict[str, tuple[bytes, bool]]) -> list[Path]:
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for suffix, (data, private) in files.items():
            path = out / f"{name}_{suffix}"
            if private:
                write_private(path, data)
            else:
                path.write_bytes(data)
            written.append(path)
    except OSError as exc:
        raise click.UsageError(f"cannot write the session files in {out}: {exc}") from exc
    return written


@click.command()
@chain_options(chain_required=True)
@click.option("--policy", required=True, help="Guest policy: a number (0x3) or flags (nodbg,noks).")
@click.option("--name", default="vm", show_default=True, help="Prefix of the files written.")
@click.option(
    "--out",
    "out_dir",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Directory for the files.",
)
def session(
    chain_path: str,
    ca_path: str | None,
    trust_roots: tuple[str, ...],
    cek_path: str | None,
    policy: str,
    name: str,
    out_dir: str,
) -> None:
    """Verify the platform chain up to a trusted AMD root, then make a fresh launch session.

    Refuses (exit 1) when a link of the chain fails, naming it. Use a session for one launch
    attempt only. Exit 0 on success, 1 on a failed chain, 2 on bad input.
    """
    if not name or "/" in name:
        raise click.UsageError(f"--name {name!r}: expected a plain file-name prefix such as vm")
    with errors_to_exit(code=EXIT_USAGE):
        parsed_policy = Policy.parse(policy)
        trust = trust_store([read_file(p, "trust root") for p in trust_roots])
        chain = read_file(chain_path, "chain file")
        ca = read_file(ca_path, "CA file") if ca_path else None
        cek = read_file(cek_path, "CEK file") if cek_path else None
    try:
        platform = verify_chain_file(chain, trust, ca=ca, cek=cek)
    except ChainError as exc:
        fail(f"refusing to make a session: the platform chain does not verify: link {exc}")
    except FormatError as exc:
        fail(f"refusing to make a session: {exc}", code=EXIT_USAGE)
    except SevlaunchError as exc:
        fail(f"refusing to make a session: {exc}")
    with errors_to_exit():
        launch = make_session(platform, parsed_policy, rng=os.urandom)
    written = _write_outputs(
        Path(out_dir),
        name,
        {
            "godh.b64": (launch.godh_b64.encode(), False),
            "session.b64": (launch.session_b64.encode(), False),
            "tek.bin": (launch.keys.tek, True),
            "tik.bin": (launch.keys.tik, True),
        },
    )
    root = platform.ca.root
    click.echo(
        f"platform verified to {'AMD ' if root.amd else 'user-trusted root '}{root.name}; "
        f"policy {launch.policy.describe()}"
    )
    for path in written:
        click.echo(f"wrote {path}")
