"""Look for every launch secret where it must not be: after ``sevlaunch demo --guests N --keep``,
recover each guest's TEK and TIK (from the platform's PDH, the domain's dhCert and session, as
LAUNCH_START does) and the disk passphrase, then search every log, database and state file of the
demo and a core dump (gcore) of each service for them, raw, hex and base64.

The emulated platform is the PSP and holds guest keys, as the real one does: its core is the
positive control that shows the search finds keys where they are. The broker is the guest
owner, which chose the TEK/TIK and was given the secret: its hits are printed, not counted (the
secret's base64 can linger there from the request that registered it).

    python scripts/secret_scan.py --guests 5
"""

from __future__ import annotations

import argparse
import base64
import binascii
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sevlaunch.crypto import ecc, kdf, launch
from sevlaunch.firmware import persist
from sevlaunch.formats import sevcert
from sevlaunch.formats.session import Session
from sevlaunch.platform.state import StoredState

ROLES = {
    "host manager": "host serve",
    "broker (the guest owner: holds the secret by design)": "broker serve",
    "key server": "platform kds",
    "VMM demo-1": "guest=demo-1,",
    "platform (positive control)": "platform serve",
}


def transport_keys(work: Path) -> dict[str, bytes]:
    """Every running guest's TEK and TIK, unwrapped from what the host was given."""
    state = StoredState.from_bytes((work / "platform/platform.state").read_bytes(), path=work)
    pdh = persist.decode(state.firmware).pdh_private
    keys: dict[str, bytes] = {}
    for run in sorted((work / "host/run").iterdir()):
        if not (run / "session.base64").exists():
            continue
        godh = base64.b64decode((run / "dh_cert.base64").read_text())
        session = Session.from_bytes(base64.b64decode((run / "session.base64").read_text()))
        raw = godh[sevcert.PUBKEY_OFFSET : sevcert.PUBKEY_OFFSET + sevcert.PUBKEY_SIZE]
        master = kdf.master_secret(
            ecc.ecdh(pdh, sevcert.EccPublicKey.from_bytes(raw)), session.nonce
        )
        tk = launch.unwrap_keys(master, session)
        keys[f"{run.name[:8]} TEK"], keys[f"{run.name[:8]} TIK"] = tk.tek, tk.tik
    return keys


def spellings(values: dict[str, bytes]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for name, value in values.items():
        out[f"{name} (raw)"] = value
        out[f"{name} (hex)"] = binascii.hexlify(value)
        out[f"{name} (HEX)"] = binascii.hexlify(value).upper()
        out[f"{name} (base64)"] = base64.b64encode(value).rstrip(b"=")
    return out


def hits(data: bytes, needles: dict[str, bytes]) -> list[str]:
    return [name for name, value in needles.items() if value in data]


def processes(work: Path) -> dict[int, str]:
    """Every process whose command line names the demo's directory."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(work) in cmd:
            found[int(entry.name)] = cmd
    return found


def pids(work: Path) -> dict[str, int]:
    found: dict[str, int] = {}
    for pid, cmd in sorted(processes(work).items()):
        for role, mark in ROLES.items():
            if mark in cmd:
                found.setdefault(role, pid)
    return found


def core_of(pid: int, into: Path) -> Path | None:
    prefix = into / "core"
    gcore = shutil.which("gcore") or "gcore"
    done = subprocess.run([gcore, "-o", str(prefix), str(pid)], check=False, capture_output=True)
    path = Path(f"{prefix}.{pid}")
    return path if done.returncode == 0 and path.exists() else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guests", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sevlaunch-secrets-"))
    demo = [sys.executable, "-m", "sevlaunch.cli", "demo", "--guests", str(args.guests)]
    ran = subprocess.run(
        [*demo, "--keep", "--dir", str(work)], check=False, capture_output=True, text=True
    )
    try:
        if ran.returncode != 0:
            print(f"the demo failed ({ran.returncode}):\n{ran.stdout[-3000:]}{ran.stderr[-3000:]}")
            return 2
        return scan(work)
    finally:
        for pid in processes(work):
            os.kill(pid, signal.SIGTERM)
        time.sleep(1)
        shutil.rmtree(work, ignore_errors=True)


def scan(work: Path) -> int:
    values = transport_keys(work)
    values["disk passphrase"] = (work / "images/disk.passphrase").read_bytes().strip()
    needles = spellings(values)
    print(f"{len(values)} secret values recovered ({args_summary(values)})")
    leaks = 0
    files = [p for p in work.rglob("*") if p.is_file() and "images" not in p.parts]
    found = [(p, hits(p.read_bytes(), needles)) for p in files]
    size = sum(p.stat().st_size for p in files) / 1e6
    bad = [(p, h) for p, h in found if h]
    print(f"logs, databases, state files: {len(files)} files, {size:.1f} MB, {len(bad)} with a hit")
    for path, names in bad:
        leaks += 1
        print(f"  LEAK {path.relative_to(work)}: {', '.join(names)}")
    if shutil.which("gcore") is None:
        print("gcore not installed (Debian: gdb): core dumps not searched")
        return 1 if leaks else 0
    with tempfile.TemporaryDirectory() as cores:
        for role, pid in sorted(pids(work).items()):
            core = core_of(pid, Path(cores))
            if core is None:
                print(f"{role}: no core dump (gcore failed)")
                continue
            names = hits(core.read_bytes(), needles)
            mb = core.stat().st_size / 1e6
            print(f"{role} core ({mb:.0f} MB): {len(names)} hits {', '.join(names[:4])}")
            if names and not ("positive control" in role or "by design" in role):
                leaks += 1
            core.unlink()
    print("no secret outside the platform" if not leaks else f"{leaks} leaks")
    return 1 if leaks else 0


def args_summary(values: dict[str, bytes]) -> str:
    teks = sum(1 for name in values if name.endswith("TEK"))
    return f"{teks} TEKs, {teks} TIKs, the disk passphrase"


if __name__ == "__main__":
    raise SystemExit(main())
