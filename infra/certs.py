"""Fetch the RDS CA bundle into the warden layer: `python -m infra.certs`.

PostgreSQL connections verify the server (sslmode=verify-full) against
`layers/warden/python/warden/certs/rds-global-bundle.pem` unless a secret names its own
`sslrootcert` (warden.tls). The bundle is AWS's public one for every region
(https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem). It is fetched from there and
only there, checked (every block a CA certificate issued for Amazon RDS, none expired), written
beside SOURCE.md, and its sha256 and date are recorded there; commit both. Run it again when AWS
rotates its CAs.
"""

from __future__ import annotations

import hashlib
import sys
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from warden.tls import RDS_CA_BUNDLE, RDS_CA_BUNDLE_URL

SOURCE = RDS_CA_BUNDLE.with_name("SOURCE.md")


class BundleError(ValueError):
    """The downloaded bundle is not what AWS publishes as the RDS CA bundle."""


def check_bundle(pem: bytes, *, now: datetime | None = None) -> list[x509.Certificate]:
    """The certificates of an RDS CA bundle, or BundleError saying what is wrong with it."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as err:
        raise BundleError(f"not a PEM certificate bundle: {err}") from None
    now = now or datetime.now(UTC)
    for cert in certs:
        subject = cert.subject.rfc4514_string()
        if "Amazon RDS" not in subject:  # RDS's CAs carry it in CN and OU
            raise BundleError(f"{subject} is not an Amazon RDS CA")
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            raise BundleError(f"{subject} has no basic constraints: not a CA certificate") from None
        if not constraints.ca:
            raise BundleError(f"{subject} is not a CA certificate")
    if not any(cert.not_valid_after_utc > now for cert in certs):
        raise BundleError("every certificate of the bundle has expired")
    return certs


def fetch_bundle(url: str = RDS_CA_BUNDLE_URL, dest: Path = RDS_CA_BUNDLE) -> Path:
    """Download, check and write the bundle, and record where it came from in SOURCE.md."""
    if not url.startswith("https://truststore.pki.rds.amazonaws.com/"):
        raise BundleError(f"{url}: the RDS CA bundle comes from truststore.pki.rds.amazonaws.com only")
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (https, fixed host, checked above)
        pem = response.read()
    certs = check_bundle(pem)
    dest.write_bytes(pem)
    digest = hashlib.sha256(pem).hexdigest()
    SOURCE.write_text(_source_text(url, datetime.now(UTC), digest, len(certs)))
    return dest


def _source_text(url: str, when: datetime, digest: str, count: int) -> str:
    return (f"# RDS CA bundle\n\n`rds-global-bundle.pem`: {url}\n\n- fetched: {when:%Y-%m-%d %H:%M} UTC "
            f"(`python -m infra.certs`)\n- sha256: `{digest}`\n- certificates: {count}\n\n"
            "PostgreSQL connections with sslmode verify-full / verify-ca trust it unless the secret names "
            "its own `sslrootcert` (warden.tls, README \"Networking and TLS\").\n")


def main() -> int:
    try:
        path = fetch_bundle()
    except (OSError, BundleError) as err:
        print(f"could not fetch the RDS CA bundle: {err}", file=sys.stderr)
        return 1
    print(f"wrote {path} and {SOURCE.name}; commit both")
    return 0


if __name__ == "__main__":
    sys.exit(main())
