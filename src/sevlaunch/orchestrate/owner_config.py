"""``owner.json``: what the VM tool's local guest owner (``sevlaunch launch --owner-dir DIR``)
trusts, expects and releases; ``examples/owner.json`` and ``examples/README.md`` show it.

Every key is optional but one of ``firmware`` or ``digests`` is needed; file names are
relative to DIR. A key that is not one of :data:`FIELDS`, or a value of the wrong type, is
refused with the key named: a misspelt ``"trust-root"`` must not silently trust nothing, and
a misspelt ``"secret"`` must not silently release nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from sevlaunch.errors import SevlaunchError, UsageError
from sevlaunch.formats.policy import Policy

#: Each key of owner.json and what it holds (the words of a refusal and of the docs).
FIELDS = {
    "policy": "the guest policy to ask for: 0x1, or flags such as nodbg,noks (default 0x1)",
    "trust-roots": "a list of root files to trust besides AMD's: an ARK or a CA file ASK ‖ ARK",
    "ca": "the AMD CA file ASK ‖ ARK, when the host's chain does not carry it",
    "firmware": "the firmware whose launch digest is expected",
    "kernel": "the kernel of a measured direct boot (with firmware)",
    "initrd": "the initrd of a measured direct boot (with kernel)",
    "cmdline": "the kernel command line, exactly as in the domain's <cmdline>",
    "digests": "a list of further expected launch digests, 64 hex digits each",
    "secrets": "an object: secret GUID or alias (luks-key) -> file whose bytes are released",
    "es": 'for an SEV-ES policy: {"vcpus": 2, "vcpu-type": "EPYC-Rome", "legacy-vm-type": "on"}',
    "min-api": "the least firmware API version, MAJOR.MINOR (default 0.0)",
    "min-build": "the least firmware build id (default 0)",
}


@dataclass(frozen=True)
class EsShape:
    """owner.json's ``es``: the SEV-ES guest's vCPUs as QEMU starts them (``-smp``, ``-cpu``,
    ``legacy-vm-type``), which its VMSAs, and so its launch digest, depend on."""

    vcpus: int = 1
    vcpu_type: str = "qemu64"
    legacy_vm_type: str = "auto"

    @classmethod
    def from_json(cls, raw: object) -> EsShape:
        """From owner.json's object; an unknown key or a wrong type is refused, naming it."""
        if not isinstance(raw, dict):
            raise UsageError(f"'es' is an object such as {_ES_EXAMPLE}, got {raw!r}")
        unknown = sorted(set(raw) - {"vcpus", "vcpu-type", "legacy-vm-type"})
        if unknown:
            raise UsageError(f"'es' has unknown keys {unknown}: it takes {_ES_EXAMPLE}")
        vcpus = raw.get("vcpus", 1)
        if isinstance(vcpus, bool) or not isinstance(vcpus, int) or vcpus < 1:
            raise UsageError(f"'es' vcpus is a count of at least 1, got {vcpus!r}")
        texts = {key: raw.get(key, default) for key, default in _ES_TEXTS.items()}
        for key, value in texts.items():
            if not isinstance(value, str):
                raise UsageError(f"'es' {key} is a string, got {value!r}")
        return cls(vcpus, texts["vcpu-type"], texts["legacy-vm-type"])


_ES_TEXTS = {"vcpu-type": "qemu64", "legacy-vm-type": "auto"}
_ES_EXAMPLE = '{"vcpus": 2, "vcpu-type": "EPYC-Rome", "legacy-vm-type": "on"}'


@dataclass(frozen=True)
class OwnerConfig:
    """``owner.json`` in an owner directory, checked; paths resolved against the directory.

    The expected digest is computed from the reference artifacts (with the VMSAs of ``es``
    for an SEV-ES policy) and/or given in ``digests``.
    """

    root: Path
    policy: Policy
    trust_roots: tuple[Path, ...] = ()
    ca: Path | None = None
    firmware: Path | None = None
    kernel: Path | None = None
    initrd: Path | None = None
    cmdline: str | None = None
    digests: tuple[bytes, ...] = ()
    secrets: dict[str, Path] = field(default_factory=dict)
    es: EsShape = EsShape()
    min_api: tuple[int, int] = (0, 0)
    min_build: int = 0

    @classmethod
    def load(cls, directory: Path) -> OwnerConfig:
        path = directory / "owner.json"
        try:
            raw = json.loads(path.read_text())
        except OSError as exc:
            raise UsageError(
                f"cannot read {path}: {exc.strerror}; an owner directory holds owner.json "
                "(see examples/owner.json)"
            ) from exc
        except ValueError as exc:
            raise UsageError(f"{path} is not JSON: {exc}") from exc
        return _Reader(path, directory, raw).config()


class _Reader:
    """Checks one parsed owner.json, naming the file and the key in every refusal."""

    def __init__(self, path: Path, directory: Path, raw: object) -> None:
        if not isinstance(raw, dict):
            raise UsageError(f"{path} holds a JSON object of the keys {', '.join(FIELDS)}")
        unknown = sorted(set(raw) - set(FIELDS))
        if unknown:
            raise UsageError(
                f"{path}: unknown key {unknown[0]!r}; owner.json knows {', '.join(FIELDS)}"
            )
        self.path, self.directory, self.raw = path, directory, raw

    def fail(self, key: str, got: object) -> UsageError:
        return UsageError(f"{self.path}: {key!r} is {FIELDS[key]}; got {got!r}")

    def text(self, key: str) -> str | None:
        value = self.raw.get(key)
        if value is not None and not isinstance(value, str):
            raise self.fail(key, value)
        return value

    def file(self, key: str) -> Path | None:
        value = self.text(key)
        return self.directory / value if value else None

    def texts(self, key: str) -> list[str]:
        value = self.raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, value)
        return value

    def config(self) -> OwnerConfig:
        secrets = self.raw.get("secrets", {})
        if not isinstance(secrets, dict) or not all(isinstance(v, str) for v in secrets.values()):
            raise self.fail("secrets", secrets)
        try:
            es = EsShape.from_json(self.raw.get("es", {}))
        except UsageError as exc:
            raise UsageError(f"{self.path}: {exc}") from exc
        min_build = self.raw.get("min-build", 0)
        if isinstance(min_build, bool) or not isinstance(min_build, int):
            raise self.fail("min-build", min_build)
        policy = self.raw.get("policy", "0x1")
        try:
            parsed = Policy.parse(str(policy))
        except SevlaunchError as exc:
            raise self.fail("policy", policy) from exc
        config = OwnerConfig(
            root=self.directory,
            policy=parsed,
            trust_roots=tuple(self.directory / p for p in self.texts("trust-roots")),
            ca=self.file("ca"),
            firmware=self.file("firmware"),
            kernel=self.file("kernel"),
            initrd=self.file("initrd"),
            cmdline=self.text("cmdline"),
            digests=self.digests(),
            secrets={k: self.directory / v for k, v in secrets.items()},
            es=es,
            min_api=self.api(),
            min_build=min_build,
        )
        self.check_files(config)
        return config

    def digests(self) -> tuple[bytes, ...]:
        texts = self.texts("digests")
        try:
            found = tuple(bytes.fromhex(d) for d in texts)
        except ValueError as exc:
            raise self.fail("digests", texts) from exc
        if any(len(d) != 32 for d in found):
            raise self.fail("digests", texts)
        return found

    def check_files(self, config: OwnerConfig) -> None:
        """Every file named is there now, not first missed at step 4 or 11."""
        named = {
            "trust-roots": config.trust_roots,
            "ca": (config.ca,),
            "firmware": (config.firmware,),
            "kernel": (config.kernel,),
            "initrd": (config.initrd,),
            "secrets": tuple(config.secrets.values()),
        }
        for key, paths in named.items():
            for path in paths:
                if path is not None and not path.is_file():
                    raise UsageError(f"{self.path}: {key!r} names {path}, which is not a file")

    def api(self) -> tuple[int, int]:
        """``"1.49"`` as (1, 49)."""
        text = str(self.raw.get("min-api", "0.0"))
        major, _, minor = text.partition(".")
        try:
            return int(major), int(minor or 0)
        except ValueError as exc:
            raise self.fail("min-api", text) from exc
