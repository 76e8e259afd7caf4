"""`screening certs dev`: a local certificate authority, a server certificate and one client
certificate per role, for tests, the demo and a development server (not for production: the
CA's key sits beside the certificates it signed).

A client certificate says who calls the way the server reads it under mutual TLS
(``screening.auth.caller_from_certificate``): the subject's OU is the role, its CN the caller's
name, and for a bank or payment institution its O the institution code it reports for.

Keys are ECDSA P-256, written 0600 (a directory this creates is 0700). ``crl.pem`` is the CA's
certificate revocation list (empty at first; ``revoke_certificates`` adds to it), for
``serve --tls-crl``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from screening.auth import INSTITUTION_ROLES, ROLES
from screening.errors import ConfigError

__all__ = ["DEV_INSTITUTIONS", "Issued", "issue_certificate", "make_dev_certificates",
           "new_authority", "revoke_certificates"]

# the institution codes the dev bank and payment certificates report for
DEV_INSTITUTIONS = {"bank": "BANK01", "payment": "PAY01"}


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())


def new_authority(name: str, *, days: int, now: dt.datetime) -> Issued:
    """A self-signed CA certificate that may sign end-entity certificates only."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(subject, subject, key.public_key(), days, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def issue_certificate(ca: Issued, common_name: str, *, days: int, now: dt.datetime,
                      role: str = "", institution: str = "", hosts: Sequence[str] = ()
                      ) -> Issued:
    """A certificate signed by ``ca``: a server's when ``hosts`` (DNS names or IP addresses, its
    subject alternative names) are given, else a client's, whose subject names ``role`` (OU) and
    ``institution`` (O)."""
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if role:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role))
    if institution:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, institution))
    usage = ExtendedKeyUsageOID.SERVER_AUTH if hosts else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(x509.Name(attrs), ca.cert.subject, key.public_key(), days, now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                       critical=False)
    )
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]),
                                        critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def make_dev_certificates(out: Path, *, hosts: Sequence[str] = ("localhost", "127.0.0.1"),
                          days: int = 30, now: dt.datetime | None = None) -> list[Path]:
    """Write ``ca.pem``/``ca.key``, ``server.pem``/``server.key`` (for ``hosts``) and
    ``client-ROLE.pem``/``client-ROLE.key`` for every role, and an empty ``crl.pem``, into
    ``out``; returns the paths.

    The bank and payment certificates report for DEV_INSTITUTIONS; each client's CN is
    ``dev-ROLE``. Existing files are replaced.
    """
    if not 1 <= days <= 3650:
        raise ConfigError(f"--days: must be in 1..3650, got {days}")
    if not hosts:
        raise ConfigError("--host: the server certificate needs at least one name or address")
    now = now or dt.datetime.now(dt.UTC)
    if not out.exists():
        out.mkdir(parents=True, mode=0o700)
    elif not out.is_dir():
        raise ConfigError(f"--out {out}: not a directory")
    ca = new_authority("screening dev CA", days=days, now=now)
    written = _write(out, "ca", ca)
    written += _write(out, "server", issue_certificate(ca, hosts[0], days=days, now=now,
                                                       hosts=hosts))
    for role in ROLES:
        institution = DEV_INSTITUTIONS.get(role, "") if role in INSTITUTION_ROLES else ""
        written += _write(out, f"client-{role}",
                          issue_certificate(ca, f"dev-{role}", days=days, now=now, role=role,
                                            institution=institution))
    written.append(_write_crl(out / "crl.pem", ca, [], now))
    return written


def revoke_certificates(directory: Path, certificates: Sequence[Path],
                        now: dt.datetime | None = None) -> list[int]:
    """Add ``certificates`` (PEM files the CA in ``directory`` signed) to its ``crl.pem``, kept
    with those revoked before; returns the serial numbers now revoked."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--dir {directory}: no dev CA (ca.pem, ca.key) there ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"--dir {directory}: ca.key is not the EC key `certs dev` writes")
    ca = Issued(ca_cert, key)
    serials: dict[int, dt.datetime] = {}
    crl_path = directory / "crl.pem"
    if crl_path.exists():
        for entry in x509.load_pem_x509_crl(crl_path.read_bytes()):
            serials[entry.serial_number] = entry.revocation_date_utc
    for path in certificates:
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError):
            raise ConfigError(f"{path}: not a PEM certificate") from None
        if cert.issuer != ca_cert.subject:
            raise ConfigError(f"{path}: not issued by the CA in {directory}")
        serials.setdefault(cert.serial_number, now)
    _write_crl(crl_path, ca, sorted(serials.items()), now)
    return sorted(serials)


def _write_crl(path: Path, ca: Issued, revoked: Sequence[tuple[int, dt.datetime]],
               now: dt.datetime) -> Path:
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca.cert.subject)
               .last_update(now - dt.timedelta(minutes=5))
               .next_update(now + dt.timedelta(days=30)))
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build())
    crl = builder.sign(ca.key, hashes.SHA256())
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    tmp.replace(path)  # a server polling it never reads half a list
    return path


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
             days: int, now: dt.datetime) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            # an hour back: a client whose clock is a little behind still accepts it
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=days)))


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _write(out: Path, stem: str, issued: Issued) -> list[Path]:
    cert, key = out / f"{stem}.pem", out / f"{stem}.key"
    _write_private(key, issued.key_pem())
    cert.write_bytes(issued.cert_pem())
    return [cert, key]


def _write_private(path: Path, data: bytes) -> None:
    """``data`` into ``path``, readable by its owner only (also when the file existed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
