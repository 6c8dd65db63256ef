"""Pinning SNP roots and checking SNP workloads: only a self-signed ARK-<product> is pinned
(mutated certificates are refused with a typed error, never anything else), AMD's need no
pinning, and a workload must say what its guests are and take no report data of its own."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sevlaunch.broker.seal import secret_context
from sevlaunch.broker.snp_admin import check_expectations, parse_ark, snp_secret_context
from sevlaunch.errors import SevlaunchError, UsageError
from sevlaunch.formats.snp.tcb import Generation
from sevlaunch.owner.snp.expectations import SnpExpectations
from tests.snp_pki import pki


def test_an_ark_alone_or_in_a_cert_chain_is_pinned_by_its_fingerprint() -> None:
    chain = pki(Generation.GENOA)
    ark_der = chain.ark.der
    bundle = chain.ask.to_pem() + chain.ark.to_pem()
    fingerprint, product, der = parse_ark(bundle)
    assert (product, der) == (Generation.GENOA, ark_der)
    assert parse_ark(ark_der)[0] == fingerprint


def test_a_certificate_that_is_no_ark_is_refused() -> None:
    chain = pki(Generation.MILAN)
    with pytest.raises(UsageError, match="self-signed ARK"):
        parse_ark(chain.ask.to_pem())
    with pytest.raises(UsageError, match="not an ARK certificate"):
        parse_ark(b"not a certificate")


@given(data=st.data())
@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_a_mutated_ark_is_refused_with_a_typed_error(data: st.DataObject) -> None:
    der = bytearray(pki(Generation.MILAN).ark.der)
    at = data.draw(st.integers(0, len(der) - 1))
    der[at] ^= data.draw(st.integers(1, 255))
    with pytest.raises(SevlaunchError):
        parse_ark(bytes(der))


def test_a_workload_names_its_guests_and_leaves_report_data_to_each_attestation() -> None:
    check_expectations(SnpExpectations(measurements=(bytes(48),)))
    check_expectations(SnpExpectations(trusted_id_keys=(bytes(48),)))
    with pytest.raises(UsageError, match="needs expected launch digests"):
        check_expectations(SnpExpectations())
    with pytest.raises(UsageError, match="no report data"):
        check_expectations(SnpExpectations(measurements=(bytes(48),), report_data=b"x"))
    with pytest.raises(UsageError, match="no report data"):
        check_expectations(SnpExpectations(measurements=(bytes(48),), any_report_data=True))


def test_snp_secrets_are_sealed_under_their_own_context() -> None:
    assert snp_secret_context("web", "g") != secret_context("web", "g")
