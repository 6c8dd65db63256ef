"""The house's shape, checked rather than hoped for (issue 15, item 6): test modules mirror
source modules (``src/sevlaunch/x/y.py`` -> ``tests/x/test_y.py``) and no module is over 500
lines. A module tested only through another one is named below with the test module that
covers it, so a newcomer finds its tests and a stale entry fails."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "sevlaunch"
TESTS = ROOT / "tests"
MAX_LINES = 500

#: Modules whose tests live in another test module: the module -> that test module. Each
#: group says why; writing the mirror test module is the way to take an entry out.
COVERED_ELSEWHERE: dict[str, str] = {
    # HTTP routes, models, auth and the server: exercised through the real API by these.
    "broker/auth.py": "broker/test_launcher_attacks.py",
    "broker/client.py": "broker/test_processes.py",
    "broker/launch_api.py": "broker/test_launches.py",
    "broker/launcher_store.py": "broker/test_launchers.py",
    "broker/models.py": "broker/test_api.py",
    "broker/schema.py": "broker/test_db.py",
    "broker/server.py": "broker/test_processes.py",
    "broker/service.py": "broker/test_launches.py",
    "broker/snp_api.py": "broker/test_snp_attest.py",
    "broker/snp_client.py": "cli/test_broker_snp.py",
    "broker/snp_models.py": "broker/test_snp_admin.py",
    "broker/snp_store.py": "broker/test_snp_service.py",
    "broker/store.py": "broker/test_db.py",
    "host/dashboard.py": "web/test_host_dashboard.py",
    # The CLI's plumbing: every command's test goes through it.
    "cli/__main__.py": "cli/test_fast.py",
    "cli/_commands.py": "cli/test_fast.py",
    "cli/_conn.py": "cli/test_launch.py",
    "cli/_measure.py": "cli/test_fast.py",
    "cli/_root.py": "cli/test_fast.py",
    "cli/host.py": "host/test_cli.py",
    "cli/owner/_chain.py": "cli/test_owner_verify.py",
    # The firmware's command modules: tested as the PSP is used, through Firmware.execute.
    "firmware/_core.py": "firmware/test_execute.py",
    "firmware/dispatch.py": "firmware/test_states.py",
    "firmware/encryption.py": "firmware/test_memory.py",
    "firmware/firmware.py": "firmware/test_execute.py",
    "firmware/guest.py": "firmware/test_launch.py",
    "firmware/guest_commands.py": "firmware/test_launch.py",
    "firmware/launch_commands.py": "firmware/test_launch.py",
    "firmware/persist.py": "firmware/test_identity.py",
    "firmware/platform_commands.py": "firmware/test_states.py",
    "firmware/profiles.py": "firmware/test_identity.py",
    "firmware/snp/api.py": "firmware/snp/test_platform_commands.py",
    "firmware/snp/dispatch.py": "firmware/snp/test_states.py",
    "firmware/snp/guest.py": "firmware/snp/test_states.py",
    "firmware/snp/host_ops.py": "firmware/snp/test_rmp.py",
    "firmware/snp/persist.py": "firmware/snp/test_identity.py",
    "firmware/snp/profiles.py": "firmware/snp/test_platform_commands.py",
    "firmware/snp/report.py": "firmware/snp/test_messages.py",
    # Formats' helpers and the small tables: tested through the formats that use them.
    "formats/disk.py": "crypto/test_disk.py",
    "formats/snp/ecdsa.py": "firmware/snp/test_launch_commands.py",
    "kds/_io.py": "kds/test_snp.py",
    # The orchestration's ports and the demo: run end to end.
    "orchestrate/demo.py": "cli/test_demo.py",
    "orchestrate/host_port.py": "orchestrate/test_libvirt_host.py",
    "owner/snp/checks.py": "owner/snp/test_verifier.py",
    "owner/snp/verdicts.py": "owner/snp/test_verifier.py",
    # The platform's wire and calls: tested against a real platform service.
    "platform/_wire.py": "platform/test_protocol.py",
    "platform/background.py": "platform/test_service.py",
    "platform/calls.py": "platform/test_client.py",
    "platform/snp_host.py": "platform/test_snp_calls.py",
    # The hypervisor's ports and SNP pieces: tested through the machine they make.
    "vmm/guest_images.py": "cli/test_image.py",
    "vmm/platform_port.py": "vmm/test_machine.py",
    "vmm/port.py": "vmm/test_sev.py",
    "vmm/qapi_objects.py": "vmm/test_qmp_runtime.py",
    "vmm/qmp_commands.py": "vmm/test_qmp_probe.py",
    "vmm/snp_guest.py": "vmm/test_snp.py",
    "vmm/snp_machine.py": "vmm/test_snp.py",
    "vmm/snp_platform_port.py": "vmm/test_snp.py",
    "vmm/snp_port.py": "vmm/test_snp.py",
}


def _modules() -> list[Path]:
    """Every source module but packages' ``__init__`` and alembic's migration scripts (the
    migrations are tested by upgrading real databases: tests/*/test_migrat*.py)."""
    return sorted(
        path.relative_to(SRC)
        for path in SRC.rglob("*.py")
        if path.name != "__init__.py" and "migrations" not in path.parts
    )


def mirrors(module: Path) -> list[Path]:
    """The test modules that mirror ``module``: ``tests/x/test_y.py``, or, for a module of a
    sub-package, a flattened name higher up (``cli/owner/digest.py`` ->
    ``tests/cli/test_owner_digest.py``) or the sub-package's own (``tests/cli/test_owner_snp.py``
    for ``cli/owner/snp/*``)."""
    name = module.stem.lstrip("_")
    parts = module.parent.parts
    found = [Path(*parts, f"test_{name}.py")]
    for cut in range(1, len(parts)):
        found.append(Path(*parts[:cut], "test_" + "_".join((*parts[cut:], name)) + ".py"))
        found.append(Path(*parts[:cut], "test_" + "_".join(parts[cut:]) + ".py"))
    return found


def missing_tests(tests: Path, modules: list[Path]) -> list[str]:
    """The modules with neither a mirror test module nor an entry in the allowlist."""
    return [
        str(module)
        for module in modules
        if not any((tests / m).is_file() for m in mirrors(module))
        and str(module) not in COVERED_ELSEWHERE
    ]


def test_every_module_has_a_test_module() -> None:
    missing = missing_tests(TESTS, _modules())
    assert not missing, f"write tests/<path>/test_<name>.py for: {missing}"


def test_every_allowlisted_module_exists_is_unmirrored_and_names_a_real_test_module() -> None:
    modules = set(map(str, _modules()))
    for module, covering in COVERED_ELSEWHERE.items():
        assert module in modules, f"{module} is gone: drop its entry"
        mirrored = [m for m in mirrors(Path(module)) if (TESTS / m).is_file()]
        assert not mirrored, f"{module} has {mirrored}: drop its entry"
        assert (TESTS / covering).is_file(), f"{module}'s covering test {covering} is gone"


def test_a_module_without_a_test_module_is_found(tmp_path: Path) -> None:
    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "test_probe.py").touch()
    (tmp_path / "cli").mkdir()
    (tmp_path / "cli" / "test_owner_digest.py").touch()
    modules = [Path("host/probe.py"), Path("host/_fresh.py"), Path("cli/owner/digest.py")]
    assert missing_tests(tmp_path, modules) == ["host/_fresh.py"]


def test_no_module_is_over_500_lines() -> None:
    sizes = {str(m): len((SRC / m).read_text().splitlines()) for m in _modules()}
    assert len(sizes) > 100  # the walk found the package
    over = {module: lines for module, lines in sizes.items() if lines > MAX_LINES}
    assert not over, f"split these modules: {over}"
