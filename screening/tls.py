"""TLS credentials for the server's port and for clients, from PEM files, checked before use.

grpc reports a certificate that does not match its key, or an expired one, only when a client
connects (as a failed handshake, on the client's side); so the files are read and checked here
first, and a problem stops start-up with one line naming the setting or flag and the file.
"""

from __future__ import annotations

import datetime as dt
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from screening.config import TlsSettings
from screening.errors import ConfigError

__all__ = ["ClientTls", "Revoked", "ServerCertificates", "ServerTls", "read_server_certificates",
           "revoked_certificates"]

# (issuer as RFC 4514 text, serial number): a certificate, as a CRL names it
Revoked = frozenset[tuple[str, int]]


@dataclass(frozen=True)
class ServerCertificates:
    """What ``[tls]``'s files hold, checked: grpc's configuration and what the log says."""

    config: grpc.ServerCertificateConfiguration
    subject: str
    not_after: dt.datetime
    # problems that do not stop the server (a private key others may read)
    warnings: tuple[str, ...] = ()


def read_server_certificates(settings: TlsSettings, now: dt.datetime | None = None
                             ) -> ServerCertificates:
    """Read and check ``[tls]``'s files: certificates that parse and have not expired, a key
    that is the certificate's; raises ConfigError naming the key and file."""
    now = now or dt.datetime.now(dt.UTC)
    chain_pem = _read(settings.cert_file, "[tls] cert_file")
    key_pem = _read(settings.key_file, "[tls] key_file")
    chain = _certificates(chain_pem, settings.cert_file, "[tls] cert_file", now)
    key = _private_key(key_pem, settings.key_file, "[tls] key_file")
    _check_pair(chain[0], key, f"[tls] key_file {settings.key_file}",
                f"cert_file {settings.cert_file}")
    client_ca = None
    if settings.client_ca_file:
        client_ca = _read(settings.client_ca_file, "[tls] client_ca_file")
        _certificates(client_ca, settings.client_ca_file, "[tls] client_ca_file", now)
    warnings = []
    if Path(settings.key_file).stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.append(f"[tls] key_file {settings.key_file}: readable by others than its owner "
                        "(chmod 600 it)")
    config = grpc.ssl_server_certificate_configuration([(key_pem, chain_pem)],
                                                       root_certificates=client_ca)
    return ServerCertificates(config, chain[0].subject.rfc4514_string(),
                              chain[0].not_valid_after_utc, tuple(warnings))


class ServerTls:
    """The port's TLS credentials (mutual with ``[tls] client_ca_file``). ``reload`` re-reads
    the files for the connections that follow (grpc asks ``_next`` before each handshake);
    connections already open keep what they started with."""

    def __init__(self, settings: TlsSettings) -> None:
        self.settings = settings
        self.mutual = settings.mutual
        self.current = read_server_certificates(settings)
        self._next: grpc.ServerCertificateConfiguration | None = None
        self._lock = threading.Lock()
        self.credentials = grpc.dynamic_ssl_server_credentials(
            self.current.config, self._take_next,  # type: ignore[arg-type]  # None: no change
            require_client_authentication=self.mutual)

    def reload(self) -> ServerCertificates:
        """Read the files again; new connections use them. Raises ConfigError (naming the
        setting and file) and changes nothing when they do not load."""
        certs = read_server_certificates(self.settings)
        with self._lock:
            self._next, self.current = certs.config, certs
        return certs

    def _take_next(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            config, self._next = self._next, None
        return config


@dataclass(frozen=True)
class ClientTls:
    """A client's TLS: the CA certificates that sign the server's certificate (empty: the
    system's roots) and, for mutual TLS, the client's certificate and key."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    def credentials(self) -> grpc.ChannelCredentials:
        """Channel credentials from the files; raises ConfigError naming the flag and file."""
        if bool(self.cert_file) != bool(self.key_file):
            raise ConfigError("--tls-cert and --tls-key: give both (the client's certificate and "
                              "its private key) or neither")
        now = dt.datetime.now(dt.UTC)
        ca = None
        if self.ca_file:
            ca = _read(self.ca_file, "--tls-ca")
            _certificates(ca, self.ca_file, "--tls-ca", now)
        cert = key = None
        if self.cert_file:
            cert = _read(self.cert_file, "--tls-cert")
            key = _read(self.key_file, "--tls-key")
            chain = _certificates(cert, self.cert_file, "--tls-cert", now)
            _check_pair(chain[0], _private_key(key, self.key_file, "--tls-key"),
                        f"--tls-key {self.key_file}", f"--tls-cert {self.cert_file}")
        return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                            certificate_chain=cert)


def revoked_certificates(crl_file: str, client_ca_file: str) -> Revoked:
    """The client certificates the CRL in ``crl_file`` revokes; raises ConfigError naming
    ``[tls] crl_file`` when it cannot be read or no CA of ``client_ca_file`` signed it (a
    list anyone could write would let anyone refuse callers, or seem to)."""
    pem = _read(crl_file, "[tls] crl_file")
    try:
        crl = x509.load_pem_x509_crl(pem)
    except ValueError:
        raise ConfigError(f"[tls] crl_file {crl_file}: no PEM certificate revocation list in it") from None
    cas = x509.load_pem_x509_certificates(_read(client_ca_file, "[tls] client_ca_file"))
    if not any(ca.subject == crl.issuer and crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
               for ca in cas):
        raise ConfigError(f"[tls] crl_file {crl_file}: not signed by a CA of client_ca_file "
                          f"{client_ca_file}")
    issuer = crl.issuer.rfc4514_string()
    return frozenset((issuer, r.serial_number) for r in crl)


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path}: not found") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot be read ({exc.strerror or exc})") from None


def _certificates(pem: bytes, path: str, what: str, now: dt.datetime) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise ConfigError(f"{what} {path}: no PEM certificate in it") from None
    for cert in certs:
        if cert.not_valid_after_utc <= now:
            raise ConfigError(f"{what} {path}: certificate {cert.subject.rfc4514_string()} "
                              f"expired on {cert.not_valid_after_utc.isoformat()}")
    return certs


def _private_key(pem: bytes, path: str, what: str) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):  # TypeError: it is encrypted
        raise ConfigError(f"{what} {path}: not an unencrypted PEM private key") from None


def _check_pair(cert: x509.Certificate, key: PrivateKeyTypes, key_what: str, cert_what: str) -> None:
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise ConfigError(f"{key_what}: not the private key of {cert_what}")
