"""DESIGN.md's dependency rules hold (the contracts in pyproject.toml), and breaking one is
caught: a planted forbidden import makes ``lint-imports`` fail; the host and the hypervisor
load no module of the firmware emulator."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")


def _lint(tree: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with the project's contracts over the package copy under ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [LINT_IMPORTS, "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("layers")
    shutil.copytree(ROOT / "src" / "sevlaunch", root / "src" / "sevlaunch",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "static", "templates"))  # fmt: skip
    return root / "src"


def test_the_tree_keeps_every_contract(tree: Path) -> None:
    done = _lint(tree, tree.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "planted", "contract"),
    [
        ("host/startplan.py", "import sevlaunch.firmware.identity", "never load firmware"),
        ("vmm/memory.py", "from sevlaunch.firmware import dispatch", "never load firmware"),
        (
            "host/probe.py",
            "from sevlaunch.platform import client",
            "only via host.platform_port",
        ),
        ("owner/secret.py", "import sevlaunch.firmware.guest", "are independent"),
        ("formats/policy.py", "import httpx", "pure layers do no IO"),
        ("broker/catalog.py", "import sevlaunch.cli", "nothing imports the CLI"),
        ("formats/policy.py", "import sevlaunch.protocol.values", "layers"),
    ],
)
def test_a_planted_forbidden_import_breaks_its_contract(
    tree: Path, tmp_path: Path, module: str, planted: str, contract: str
) -> None:
    copy = tmp_path / "src"
    shutil.copytree(tree, copy)
    target = copy / "sevlaunch" / module
    text = target.read_text()
    head, sep, rest = text.partition("from __future__ import annotations\n")
    target.write_text(head + sep + f"\n{planted}  # planted\n" + rest)
    done = _lint(copy, tmp_path)
    assert done.returncode != 0, done.stdout
    broken = [line for line in done.stdout.splitlines() if " BROKEN" in line]
    assert any(contract in line for line in broken), done.stdout


def _loaded_in_fresh_interpreter(imports: str, prefixes: tuple[str, ...]) -> list[str]:
    """The modules under ``prefixes`` that importing ``imports`` loads in a new interpreter."""
    code = (
        f"import sys, {imports}; "
        f"print('\\n'.join(m for m in sys.modules if m.startswith({prefixes!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_host_and_hypervisor_load_no_firmware_module() -> None:
    """The issue's proof, in a fresh interpreter; the platform client is loaded too."""
    imports = (
        "sevlaunch.host.manager, sevlaunch.host.platform_port, sevlaunch.vmm.main, "
        "sevlaunch.vmm.platform_port, sevlaunch.platform.client"
    )
    assert not _loaded_in_fresh_interpreter(imports, ("sevlaunch.firmware",))


def test_an_sev_guest_s_hypervisor_loads_no_snp_or_chain_module() -> None:
    """Every module a VMM process imports costs each launch its CPU (a frozen dataclass alone
    costs about 4 M instructions to create on Python 3.11): an SEV guest's VMM, up to its
    guest model, loads neither SNP's modules, the launch protocol, chain verification nor
    pyca's X.509 (bench/vmm_launch.py)."""
    unwanted = (
        "sevlaunch.vmm.snp", "sevlaunch.protocol", "sevlaunch.formats.snp",
        "sevlaunch.crypto.chain", "sevlaunch.crypto.truststore", "cryptography.x509",
    )  # fmt: skip
    imports = "sevlaunch.vmm.main, sevlaunch.vmm.platform_port, sevlaunch.vmm.guest"
    assert not _loaded_in_fresh_interpreter(imports, unwanted)


def test_the_readme_test_command_is_ci_s_and_runs_the_contracts() -> None:
    readme = [x for x in (ROOT / "README.md").read_text().splitlines() if "pip install -q -e" in x]
    ci = [x for x in (ROOT / ".ci" / "run").read_text().splitlines() if "pip install -q -e" in x]
    assert readme == ci, "README quick start command 2 and .ci/run must run the same line"
    assert "&& lint-imports &&" in ci[0]
