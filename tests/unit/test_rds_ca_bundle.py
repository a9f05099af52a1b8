"""infra.certs: only a bundle of Amazon RDS CA certificates is accepted into the layer, from AWS's
address only (the bundle itself is fetched with network access; see warden/certs/SOURCE.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from infra.certs import BundleError, check_bundle, fetch_bundle

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _cert(cn: str, *, ca: bool = True, days: int = 365, constraints: bool = True) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Amazon Web Services, Inc."),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(NOW - timedelta(days=400)).not_valid_after(NOW + timedelta(days=days)))
    if constraints:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_a_bundle_of_rds_ca_certificates_is_accepted() -> None:
    pem = _cert("Amazon RDS eu-west-1 Root CA RSA2048 G1") + _cert("Amazon RDS eu-west-1 Root CA ECC384 G1")
    assert len(check_bundle(pem, now=NOW)) == 2


@pytest.mark.parametrize("pem, message", [
    (b"<html>not found</html>", "not a PEM certificate bundle"),
    (_cert("Amazon RDS eu-west-1 Root CA RSA2048 G1") + _cert("Some Other Root CA"), "is not an Amazon RDS CA"),
    (_cert("Amazon RDS eu-west-1 Root CA RSA2048 G1", ca=False), "is not a CA certificate"),
    (_cert("Amazon RDS eu-west-1 Root CA RSA2048 G1", constraints=False), "no basic constraints"),
    (_cert("Amazon RDS eu-west-1 Root CA RSA2048 G1", days=-1), "every certificate of the bundle has expired"),
], ids=["not pem", "another ca", "not a ca", "no constraints", "expired"])
def test_anything_else_is_refused_with_the_reason(pem: bytes, message: str) -> None:
    with pytest.raises(BundleError, match=message):
        check_bundle(pem, now=NOW)


def test_a_bundle_from_anywhere_but_aws_is_refused_before_downloading() -> None:
    with pytest.raises(BundleError, match=r"truststore\.pki\.rds\.amazonaws\.com only"):
        fetch_bundle("https://example.com/global-bundle.pem")
