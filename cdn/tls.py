"""TLS settings shared by every part: the server side (`--tls-cert FILE --tls-key FILE` of the edge's
viewer port and the origin) and the client side (a private CA: the edge's `--upstream-ca`, the
player's and the load tester's `--ca`, the router's `--health-ca`).

`client_tls_context` trusts the system CAs plus a PEM CA bundle, with certificate and host-name checks
always on; a file that is missing, unreadable or holds no CA certificate is a TlsFileError naming the
option and the file.

`server_tls_context` loads the certificate chain and key once, at start-up, and turns every way they
can be wrong (missing, unreadable, not PEM, an encrypted key, a key that is not the certificate's)
into a TlsFileError naming the file, never its contents; each server wraps it in its own config error.
"""

from __future__ import annotations

import ssl
from pathlib import Path

__all__ = ["TlsFileError", "client_tls_context", "server_tls_context", "verify_failure"]

# OpenSSL X509_V_ERR_* codes meaning "no trusted CA signed this": self-signed, or an issuer we do not know
_UNKNOWN_ISSUER = frozenset({2, 18, 19, 20, 21})
_PEM_LIMIT = 1024 * 1024  # a certificate chain or a key is a few KiB; read no more than this


class TlsFileError(ValueError):
    """A --tls-cert / --tls-key file cannot be used (the message names the file, never its contents)."""


def server_tls_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """The viewer port's TLS context: the PEM chain `cert_file` (leaf first) and its key `key_file`.

    TLS 1.2 at least (OpenSSL's defaults above that), ALPN `http/1.1`. Raise TlsFileError naming the
    file that is missing, unreadable or not PEM, an encrypted key, or a key that is not the
    certificate's. The messages name the paths only: the key's contents never appear anywhere.
    """
    _check_pem(cert_file, "--tls-cert", b"CERTIFICATE-----", "PEM certificate")
    _check_pem(key_file, "--tls-key", b"PRIVATE KEY-----", "PEM private key")
    _check_certificates(cert_file)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])

    def no_passphrase() -> str:
        # without a callback OpenSSL would prompt on the terminal and hang a server started in the background
        raise TlsFileError(
            f"--tls-key {key_file}: the key is encrypted; give it unencrypted (PEM, no passphrase)"
        )

    try:
        context.load_cert_chain(cert_file, key_file, password=no_passphrase)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TlsFileError(
                f"--tls-key {key_file} is not the private key of the certificate in --tls-cert {cert_file} "
                "(key values mismatch); give the key the certificate was issued for, leaf certificate first"
            ) from None
        raise TlsFileError(
            f"--tls-key {key_file}: cannot load the private key (not a valid PEM key); "
            "give an unencrypted PEM key (-----BEGIN PRIVATE KEY-----)"
        ) from None
    return context


def _check_pem(path: Path, option: str, marker: bytes, what: str) -> None:
    """Raise TlsFileError unless `path` is a readable file holding `marker` (its text is never echoed)."""
    try:
        with path.open("rb") as f:
            head = f.read(_PEM_LIMIT)
    except OSError as exc:
        raise TlsFileError(f"{option} {path}: cannot read it: {exc.strerror or exc}") from None
    if marker not in head:
        raise TlsFileError(f"{option} {path}: no {what} in it (a '-----BEGIN ...{marker.decode()}' block)")


def _check_certificates(cert_file: Path) -> None:
    """Parse the certificates of `cert_file` (a scratch store) so that a broken one is named as such."""
    scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        scratch.load_verify_locations(cafile=cert_file)
    except ssl.SSLError:
        raise TlsFileError(
            f"--tls-cert {cert_file}: cannot parse its certificates (not valid PEM); "
            "give the PEM certificate chain, leaf first"
        ) from None


def client_tls_context(ca_file: Path | None = None, *, option: str = "--ca") -> ssl.SSLContext:
    """A TLS client context: the system CAs plus the PEM CA bundle `ca_file` given as `option`.

    Certificate and host-name verification are always on (there is no way to turn them off). Raise
    TlsFileError when `ca_file` is missing, unreadable, or holds no PEM CA certificate (CA:TRUE): a
    server's own certificate is refused, since it cannot sign anything.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_file is not None:
        _check_ca_file(ca_file, option)
        context.load_verify_locations(cafile=ca_file)
    return context


def _check_ca_file(ca_file: Path, option: str) -> None:
    """Load `ca_file` into a scratch store to prove it holds at least one PEM CA certificate."""
    scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        scratch.load_verify_locations(cafile=ca_file)
    except ssl.SSLError as exc:
        raise TlsFileError(
            f"{option} {ca_file}: no PEM certificate in it ({exc.reason or 'unreadable'}); "
            "give the CA certificate(s) as PEM (-----BEGIN CERTIFICATE-----)"
        ) from None
    except OSError as exc:
        raise TlsFileError(f"{option} {ca_file}: cannot read it: {exc.strerror or exc}") from None
    if scratch.cert_store_stats()["x509_ca"] == 0:
        raise TlsFileError(
            f"{option} {ca_file}: no CA certificate in it (no CA:TRUE); give the CA that signed the "
            "server's certificate, not that certificate itself"
        )


def verify_failure(exc: ssl.SSLCertVerificationError, *, ca_option: str) -> str:
    """A refused certificate in words: `certificate verify failed: <OpenSSL's reason>`, and when no
    trusted CA signed it, the hint to pass that CA with `ca_option` (e.g. --ca, --upstream-ca)."""
    hint = f"; pass the CA that signed it with {ca_option}" if exc.verify_code in _UNKNOWN_ISSUER else ""
    return f"certificate verify failed: {exc.verify_message}{hint}"
