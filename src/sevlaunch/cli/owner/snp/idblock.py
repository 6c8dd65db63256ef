"""``sevlaunch owner snp id-block``: build and sign an ID block and ID auth structure, as
sev-snp-measure's ``snp-create-id-block`` does, for QEMU's ``id-block``/``id-auth``."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

import click

from sevlaunch.cli._util import emit_json, errors_to_exit, read_file


def decode_bytes(text: str, size: int, what: str) -> bytes:
    """Hex or base64 of exactly ``size`` bytes."""
    for decode in (bytes.fromhex, lambda t: base64.b64decode(t, validate=True)):
        try:
            raw = decode(text.strip())
        except (ValueError, binascii.Error):
            continue
        if len(raw) == size:
            return raw
    raise click.UsageError(f"{what} must be {size} bytes as hex or base64")


def _load_key(path: str, what: str):  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = serialization.load_pem_private_key(read_file(path, what), None)
    except (ValueError, TypeError) as exc:
        raise click.UsageError(
            f"{what} {path} is not an unencrypted PEM private key: {exc}"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp384r1":
        raise click.UsageError(f"{what} {path} must be an ECDSA P-384 key")
    return key


@click.command("id-block")
@click.option("--measurement", required=True, help="Expected launch digest (hex or base64).")
@click.option(
    "--idkey",
    "--id-key",
    "id_key",
    required=True,
    type=click.Path(dir_okay=False),
    help="ECDSA P-384 private key (PEM) that signs the ID block.",
)
@click.option(
    "--authorkey",
    "--author-key",
    "author_key",
    type=click.Path(dir_okay=False),
    help="ECDSA P-384 author key (PEM) that signs the ID key.",
)
@click.option("--family-id", default="0" * 32, help="FAMILY_ID, 16 bytes as hex or base64.")
@click.option("--image-id", default="0" * 32, help="IMAGE_ID, 16 bytes as hex or base64.")
@click.option(
    "--svn", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True, help="GUEST_SVN."
)
@click.option("--policy", default="0x30000", show_default=True, help="Guest policy (u64).")
@click.option("--id-file", type=click.Path(dir_okay=False), help="Write the ID block (base64).")
@click.option("--auth-file", type=click.Path(dir_okay=False), help="Write the ID auth (base64).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def id_block(
    measurement: str,
    id_key: str,
    author_key: str | None,
    family_id: str,
    image_id: str,
    svn: int,
    policy: str,
    id_file: str | None,
    auth_file: str | None,
    as_json: bool,
) -> None:
    """Print the base64 ID block and ID auth, and the digests the report will carry."""
    from sevlaunch.formats.snp.idblock import IdBlock
    from sevlaunch.formats.snp.policy import SnpPolicy
    from sevlaunch.owner.snp.idblock import sign_id_block

    with errors_to_exit(as_json=as_json, code=2):
        block = IdBlock(
            decode_bytes(measurement, 48, "--measurement"),
            decode_bytes(family_id, 16, "--family-id"),
            decode_bytes(image_id, 16, "--image-id"),
            guest_svn=svn,
            policy=SnpPolicy.parse(policy).to_int(),
        )
    signed = sign_id_block(
        block,
        _load_key(id_key, "--idkey"),
        _load_key(author_key, "--authorkey") if author_key else None,
    )
    blob = base64.b64encode(block.to_bytes()).decode()
    auth = base64.b64encode(signed.id_auth.to_bytes()).decode()
    for path, text in ((id_file, blob), (auth_file, auth)):
        if path:
            Path(path).write_text(text + "\n")
    if as_json:
        emit_json(
            {
                "id_block": blob,
                "id_auth": auth,
                "id_key_digest": signed.id_key_digest.hex(),
                "author_key_digest": signed.author_key_digest.hex(),
                "author_key_enabled": author_key is not None,
            }
        )
        return
    click.echo(f"ID-BLOCK: {blob}")
    click.echo(f"ID-AUTH: {auth}")
    click.echo(f"ID_KEY_DIGEST: {signed.id_key_digest.hex()}")
    click.echo(f"AUTHOR_KEY_DIGEST: {signed.author_key_digest.hex()}")
