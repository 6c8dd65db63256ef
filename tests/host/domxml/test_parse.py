"""Domain XML read as libvirt reads it: the accepted documents and their fields, libvirt's
normalisation, the errors libvirt would give, and generated documents round-tripping."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sevlaunch.errors import DomainXMLError, HostError
from sevlaunch.formats import PolicyFlags
from sevlaunch.host.domxml import (
    CpuConfig,
    DiskConfig,
    Domain,
    LaunchSecurity,
    Loader,
    OsConfig,
    SerialConfig,
    validate_against_schema,
)

# libvirt tests/qemuxmlconfdata/launch-security-sev-direct.x86_64-latest.xml (as libvirt
from tests.host.domxml.samples import (
    PLAIN,
    SAMPLES,
    SEV_DIRECT,
    SEV_ES,
    SEV_LOADER,
    SEV_SNP,
    canonical,
    domains,
    replace_root_child,
)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_is_valid_libvirt_xml(name: str, schemas: Path) -> None:
    validate_against_schema(SAMPLES[name], schemas)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_round_trip_is_equivalent_and_valid(name: str, schemas: Path) -> None:
    domain = Domain.from_xml(SAMPLES[name])
    written = domain.to_xml()
    validate_against_schema(written, schemas)
    assert canonical(written) == canonical(SAMPLES[name])
    assert Domain.from_xml(written) == domain
    assert Domain.from_xml(written).to_xml() == written


def test_sev_direct_fields() -> None:
    domain = Domain.from_xml(SEV_DIRECT)
    assert domain.name == "QEMUGuest1"
    assert domain.uuid == uuid.UUID("c7a5fdbd-edaf-9455-926a-d65c16db1809")
    assert (domain.memory_kib, domain.current_memory_kib, domain.vcpus) == (219100, 219100, 1)
    assert domain.os == OsConfig(
        arch="x86_64",
        machine="pc-q35-8.2",
        kernel="/vmlinuz",
        initrd="/initrd",
        cmdline="runme",
        boot_devs=("hd",),
    )
    assert (domain.acpi, domain.clock_offset) == (False, "utc")
    assert domain.cpu == CpuConfig(mode="custom", model="qemu64")
    assert domain.launch_security == LaunchSecurity(
        policy=1,
        kernel_hashes=True,
        cbitpos=47,
        reduced_phys_bits=1,
        dh_cert="AQAAAAAOAAAAQAAAAAOAAAAQAAAAAOAAAAQAAAAAOAAAAQAAAAAOAAA",
        session="IHAVENOIDEABUTJUSTPROVIDINGASTRING",
    )
    assert domain.is_sev
    assert domain.emulator == "/usr/bin/qemu-system-x86_64"


def test_sev_loader_fields() -> None:
    domain = Domain.from_xml(SEV_LOADER)
    assert domain.os.firmware == "efi"
    assert domain.os.loader == Loader(
        path="/usr/share/edk2/ovmf/OVMF.amdsev.fd", readonly=True, type="pflash", stateless=True
    )
    assert domain.cpu == CpuConfig(mode="host-passthrough")
    lsec = domain.launch_security
    assert lsec is not None
    assert lsec.dh_cert is None
    assert lsec.dh_cert_secret == uuid.UUID("0a3e0a8c-2f54-4b5c-9d1e-6a7a2c1f0b11")
    assert lsec.session_secret == uuid.UUID("5b7f3c11-8d2e-4c19-a0d4-f1e2d3c4b5a6")
    assert lsec.guest_policy.flags == (
        PolicyFlags.NODBG | PolicyFlags.NOKS | PolicyFlags.DOMAIN | PolicyFlags.SEV
    )
    assert domain.disks == (
        DiskConfig(
            source="/var/lib/sevlaunch/images/data.img",
            target_dev="vda",
            target_bus="virtio",
            driver_type="raw",
        ),
    )
    assert domain.serials == (
        SerialConfig(type="file", path="/var/log/sevlaunch/sev-guest.log", port=0),
    )


def test_sev_es_policy_and_plain_domain() -> None:
    es = Domain.from_xml(SEV_ES).launch_security
    assert es is not None
    assert es.guest_policy.requires_es
    assert es.kernel_hashes is False
    plain = Domain.from_xml(PLAIN)
    assert plain.launch_security is None
    assert not plain.is_sev
    assert plain.type == "qemu"


def test_sev_snp_is_accepted_with_its_policy_width() -> None:
    lsec = Domain.from_xml(SEV_SNP).launch_security
    assert lsec is not None
    assert (lsec.type, lsec.policy, lsec.policy_text) == ("sev-snp", 0x30000, "0x00030000")
    with pytest.raises(DomainXMLError, match="no SEV guest policy"):
        _ = lsec.guest_policy


@pytest.mark.parametrize(
    ("value", "unit", "kib"),
    [
        ("2", "GiB", 2 * 1024 * 1024),
        ("2", "G", 2 * 1024 * 1024),
        ("2", "g", 2 * 1024 * 1024),
        ("512", "MiB", 512 * 1024),
        ("1", "MB", 977),  # 10**6 bytes, rounded up to whole KiB
        ("1000", "KB", 977),
        ("1048576", "b", 1024),
        ("1", "bytes", 1),
        ("1", "TiB", 1024**3),
        ("4096", None, 4096),
        ("4096", "k", 4096),
    ],
)
def test_memory_units_convert_to_kib(value: str, unit: str | None, kib: int) -> None:
    unit_attr = f" unit='{unit}'" if unit else ""
    xml = replace_root_child(PLAIN, "memory", f"<memory{unit_attr}>{value}</memory>")
    domain = Domain.from_xml(xml)
    assert domain.memory_kib == kib
    assert f'<memory unit="KiB">{kib}</memory>' in domain.to_xml()


def test_policy_spellings_normalise_to_libvirt_hex() -> None:
    for text in ("0x33", "33", "0X0033", " 0x0033 "):
        xml = SEV_DIRECT.replace("<policy>0x0001</policy>", f"<policy>{text}</policy>")
        domain = Domain.from_xml(xml)
        assert domain.launch_security is not None
        assert domain.launch_security.policy == 0x33
        assert "<policy>0x0033</policy>" in domain.to_xml()


def test_uuid_without_dashes_is_written_canonically() -> None:
    xml = PLAIN.replace("00000000-0000-4000-8000-000000000001", "0000000000004000800000000000000A")
    assert "<uuid>00000000-0000-4000-8000-00000000000a</uuid>" in Domain.from_xml(xml).to_xml()


def test_current_memory_above_memory_is_dropped_as_libvirt_clamps_it() -> None:
    xml = SEV_DIRECT.replace("<currentMemory unit='KiB'>219100", "<currentMemory unit='KiB'>999999")
    assert Domain.from_xml(xml).current_memory_kib is None


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        pytest.param(
            replace_root_child(PLAIN, "name", None),
            "XML error: missing name information",
            id="no-name",
        ),
        pytest.param(
            replace_root_child(PLAIN, "name", "<name></name>"),
            "XML error: missing name information",
            id="empty-name",
        ),
        pytest.param(
            replace_root_child(PLAIN, "name", "<name>a/b</name>"),
            "cannot contain '/'",
            id="slash-in-name",
        ),
        pytest.param(
            replace_root_child(PLAIN, "uuid", "<uuid>not-a-uuid</uuid>"),
            "internal error: malformed uuid element",
            id="bad-uuid",
        ),
        pytest.param(
            SEV_DIRECT.replace("0x0001", "0xzz"),
            "XML error: failed to get launch security policy",
            id="bad-policy",
        ),
        pytest.param(
            SEV_DIRECT.replace("0x0001", "0x100000000"),
            "XML error: failed to get launch security policy",
            id="policy-over-32-bits",
        ),
        pytest.param(
            SEV_DIRECT.replace("<policy>0x0001</policy>", ""),
            "XML error: failed to get launch security policy",
            id="no-policy",
        ),
        pytest.param(
            SEV_DIRECT.replace("<launchSecurity type='sev' ", "<launchSecurity "),
            "XML error: Missing required attribute 'type' in element 'launchSecurity'",
            id="launch-security-without-type",
        ),
        pytest.param(
            SEV_DIRECT.replace("type='sev'", "type='tdx-ish'"),
            "XML error: Invalid value for attribute 'type' in element 'launchSecurity': 'tdx-ish'",
            id="unknown-launch-security-type",
        ),
        pytest.param(
            SEV_DIRECT.replace("kernelHashes='yes'", "kernelHashes='maybe'"),
            "Invalid value for attribute 'kernelHashes'",
            id="bad-kernel-hashes",
        ),
        pytest.param(
            SEV_DIRECT.replace("<cbitpos>47", "<cbitpos>-1"),
            "Invalid value for launch security cbitpos",
            id="bad-cbitpos",
        ),
        pytest.param(
            replace_root_child(PLAIN, "memory", None),
            "Memory size must be specified",
            id="no-memory",
        ),
        pytest.param(
            replace_root_child(PLAIN, "memory", "<memory unit='furlong'>1</memory>"),
            "invalid argument: unknown suffix 'furlong'",
            id="bad-unit",
        ),
        pytest.param(
            replace_root_child(PLAIN, "memory", "<memory>lots</memory>"),
            "could not parse element",
            id="bad-memory",
        ),
        pytest.param(
            replace_root_child(PLAIN, "memory", "<memory unit='EiB'>16</memory>"),
            "numerical overflow",
            id="memory-overflow",
        ),
        pytest.param(
            replace_root_child(PLAIN, "vcpu", "<vcpu>0</vcpu>"),
            "maximum vcpus count must be an integer",
            id="zero-vcpus",
        ),
        pytest.param(
            replace_root_child(PLAIN, "os", "<os><boot dev='hd'/></os>"),
            "an os <type> must be specified",
            id="no-os-type",
        ),
        pytest.param(
            replace_root_child(PLAIN, "os", "<os><type>dos</type></os>"),
            "unknown OS type",
            id="unknown-os-type",
        ),
        pytest.param(
            PLAIN.replace("<domain type='qemu'>", "<domain>"),
            "Missing required attribute 'type' in element 'domain'",
            id="domain-without-type",
        ),
        pytest.param(
            "<domain type='kvm'><name>x", "XML error: (domain_definition):1:", id="not-xml"
        ),
        pytest.param(
            "<network><name>x</name></network>",
            "unexpected root element <network>, expecting <domain>",
            id="wrong-root",
        ),
        pytest.param(
            PLAIN.replace("</devices>", "<disk type='file'><source file='/a'/></disk></devices>"),
            "missing target information for device /a",
            id="disk-without-target",
        ),
        pytest.param(
            SEV_LOADER.replace("<policy>0x0033</policy>", "<policy>0x3</policy><dhCert>x</dhCert>"),
            "unsupported configuration: launch security dhCert is given both inline and as secret",
            id="dhcert-inline-and-secret",
        ),
        pytest.param(
            replace_root_child(SEV_LOADER, "launchSecurity", None),
            "unsupported configuration: the sevlaunch dhCertSecret/sessionSecret metadata needs",
            id="secret-refs-without-sev",
        ),
        pytest.param(
            SEV_LOADER.replace('uuid="0a3e0a8c-2f54-4b5c-9d1e-6a7a2c1f0b11"', 'uuid="nope"'),
            "malformed uuid element",
            id="bad-secret-ref",
        ),
    ],
)
def test_bad_documents_get_libvirt_errors(xml: str, message: str) -> None:
    with pytest.raises(DomainXMLError) as caught:
        Domain.from_xml(xml)
    assert message in str(caught.value)
    assert isinstance(caught.value, HostError)


def test_errors_name_the_field() -> None:
    with pytest.raises(DomainXMLError) as caught:
        Domain.from_xml(SEV_DIRECT.replace("0x0001", "0xzz"))
    assert caught.value.kind == "XML error"
    assert caught.value.field == "launchSecurity/policy"
    assert caught.value.value == "0xzz"


def test_entities_are_neither_expanded_nor_fetched(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    xxe = (
        f'<!DOCTYPE domain [<!ENTITY x SYSTEM "file://{secret}">]>'
        "<domain type='kvm'><name>&x;</name><memory>1</memory><os><type>hvm</type></os></domain>"
    )
    with pytest.raises(DomainXMLError) as caught:
        Domain.from_xml(xxe)
    assert "TOP-SECRET" not in str(caught.value)


def test_oversized_documents_are_refused() -> None:
    huge = PLAIN.replace("<title>", "<title>" + "x" * (11 * 1024 * 1024))
    with pytest.raises(DomainXMLError, match="byte limit"):
        Domain.from_xml(huge)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(domain=domains)
def test_generated_domains_round_trip_and_validate(domain: Domain, schemas: Path) -> None:
    written = domain.to_xml()
    validate_against_schema(written, schemas)
    parsed = Domain.from_xml(written)
    assert parsed == domain
    assert parsed.to_xml() == written


@settings(max_examples=100, deadline=None)
@given(base=st.sampled_from(sorted(SAMPLES)), domain=domains)
def test_generated_edits_of_samples_stay_valid(base: str, domain: Domain, schemas: Path) -> None:
    template = Domain.from_xml(SAMPLES[base]).template
    edited = dataclasses.replace(domain, template=template)
    written = edited.to_xml()
    validate_against_schema(written, schemas)
    assert Domain.from_xml(written) == edited
