"""examples/: each domain XML is libvirt's (its schema), says what its README row says, and is
accepted by the host manager's parser; the README's walk-through launches all three
(tests/test_readme.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sevlaunch.host.domxml import Domain, validate_against_schema

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
XMLS = ("sev-direct-boot.xml", "sev-ovmf.xml", "sev-es.xml")
IMAGES = "/var/lib/sevlaunch/images/"


def domain(name: str) -> Domain:
    return Domain.from_xml((EXAMPLES / name).read_text())


@pytest.mark.parametrize("name", XMLS)
def test_each_example_validates_against_libvirts_schema(name: str, schemas: Path) -> None:
    validate_against_schema((EXAMPLES / name).read_text(), schemas)


@pytest.mark.parametrize("name", XMLS)
def test_each_example_names_the_readmes_images_and_no_launch_blobs(name: str) -> None:
    text = (EXAMPLES / name).read_text()
    named = set(re.findall(re.escape(IMAGES) + r"([\w.]+)", text))
    assert named <= {"OVMF.amdsev.fd", "vmlinuz", "initrd.img", "root.img"}
    assert {"OVMF.amdsev.fd", "root.img"} <= named
    parsed = domain(name)
    assert parsed.name == name.removesuffix(".xml")
    sev = parsed.launch_security
    assert sev is not None
    assert sev.type == "sev"
    assert sev.dh_cert is None
    assert sev.session is None
    assert name in (EXAMPLES / "README.md").read_text()


def test_the_three_examples_are_what_the_readme_says() -> None:
    direct, ovmf, es = (domain(n) for n in XMLS)
    assert direct.launch_security is not None
    assert direct.launch_security.kernel_hashes
    assert direct.os.kernel is not None
    assert direct.launch_security.policy == 0x1
    assert ovmf.os.kernel is None
    assert ovmf.launch_security is not None
    assert not ovmf.launch_security.kernel_hashes
    assert es.launch_security is not None
    assert es.launch_security.policy == 0x5
    assert es.vcpus == 2
    assert es.cpu is not None
    assert es.cpu.model == "EPYC-Rome"
