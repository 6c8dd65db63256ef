"""Hypothesis strategies for the SNP formats: each builds only values a parser can return, so
``from_bytes(x.to_bytes()) == x`` is a property of the code, not of the generator."""

from __future__ import annotations

import uuid

from hypothesis import strategies as st

from sevlaunch.formats.snp import (
    AttestationReport,
    CertTable,
    CertTableEntry,
    EcdsaPublicKey,
    EcdsaSignature,
    IdAuth,
    IdBlock,
    KeyRequest,
    KeyResponse,
    MessageHeader,
    MetadataSection,
    PageInfo,
    PageType,
    ReportRequest,
    ReportResponse,
    SecretsPage,
    SevMetadata,
    TcbLayout,
    TcbVersion,
)
from sevlaunch.formats.snp.report import EXTENSION_SIZE, REPORT_SIZE
from tests.strategies import fixed, uint


@st.composite
def tcb_versions(draw: st.DrawFn, layout: TcbLayout | None = None) -> TcbVersion:
    chosen = layout or draw(st.sampled_from(TcbLayout))
    return TcbVersion.from_int(draw(uint(64)), chosen)


@st.composite
def reports(draw: st.DrawFn) -> AttestationReport:
    version = draw(st.sampled_from((2, 3, 4, 5, 6, 7, 0xFFFF_FFFF)))
    ints = {
        n: draw(uint(b))
        for n, b in (
            ("guest_svn", 32),
            ("policy", 64),
            ("vmpl", 32),
            ("signature_algo", 32),
            ("current_tcb", 64),
            ("platform_info", 64),
            ("key_info", 32),
            ("reported_tcb", 64),
            ("committed_tcb", 64),
            ("current_build", 8),
            ("current_minor", 8),
            ("current_major", 8),
            ("committed_build", 8),
            ("committed_minor", 8),
            ("committed_major", 8),
            ("launch_tcb", 64),
        )
    }
    blobs = {
        n: draw(fixed(s))
        for n, s in (
            ("family_id", 16),
            ("image_id", 16),
            ("report_data", 64),
            ("measurement", 48),
            ("host_data", 32),
            ("id_key_digest", 48),
            ("author_key_digest", 48),
            ("report_id", 32),
            ("report_id_ma", 32),
            ("chip_id", 64),
            ("signature", 512),
        )
    }
    extra: dict[str, object] = {}
    if version >= 3:
        extra |= {n: draw(uint(8)) for n in ("cpuid_fam_id", "cpuid_mod_id", "cpuid_step")}
    if version >= 4:
        extra |= {n: draw(uint(64)) for n in ("launch_mit_vector", "current_mit_vector")}
    if version > 5:
        extra["extension"] = draw(fixed(EXTENSION_SIZE))
    return AttestationReport(version=version, **ints, **blobs, **extra)  # type: ignore[arg-type]


signatures = st.builds(EcdsaSignature, uint(576), uint(576))
public_keys = st.builds(EcdsaPublicKey, uint(32), uint(576), uint(576))
id_blocks = st.builds(IdBlock, fixed(48), fixed(16), fixed(16), uint(32), uint(32), uint(64))
id_auths = st.builds(IdAuth, signatures, public_keys, signatures, public_keys, uint(32), uint(32))
headers = st.builds(
    MessageHeader,
    msg_seqno=uint(64),
    msg_type=uint(8),
    msg_size=st.integers(0, 4096 - 0x60),
    msg_vmpck=uint(8),
    msg_version=uint(8),
    authtag=fixed(32),
    algo=uint(8),
    hdr_version=uint(8),
)
report_requests = st.builds(ReportRequest, fixed(64), st.integers(0, 3))
report_responses = st.one_of(
    st.builds(ReportResponse, st.just(0), fixed(REPORT_SIZE)),
    st.builds(ReportResponse, st.integers(1, 2**32 - 1), st.just(b"")),
)
key_requests = st.builds(
    KeyRequest, uint(32), uint(64), uint(32), uint(32), uint(64), st.none() | uint(64)
)
key_responses = st.builds(KeyResponse, uint(32), fixed(32))
secrets_pages = st.builds(
    SecretsPage,
    uint(32),
    fixed(32),
    fixed(32),
    fixed(32),
    fixed(32),
    uint(32),
    uint(32),
    fixed(16),
    fixed(96),
    fixed(64),
    uint(64),
    uint(64),
    uint(64),
    uint(32),
    uint(8),
    uint(32),
    uint(64),
)
cert_tables = st.builds(
    CertTable,
    st.lists(
        st.builds(
            CertTableEntry,
            st.builds(uuid.UUID, bytes=fixed(16)).filter(lambda u: u.int != 0),
            st.binary(max_size=64),
        ),
        max_size=5,
    ).map(tuple),
)
page_infos = st.builds(
    PageInfo,
    fixed(48),
    fixed(48),
    st.sampled_from(PageType),
    uint(64),
    uint(8),
    uint(8),
    uint(8),
    uint(8),
)
metadata = st.builds(
    SevMetadata,
    st.lists(st.builds(MetadataSection, uint(32), uint(32), uint(32)), max_size=8).map(tuple),
)
