"""`cdn-origin serve --tls-cert --tls-key`: the origin over https (certificates made here with trustme)."""

from __future__ import annotations

import re
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from tests.origin.test_serve_http import SERVE_SCRIPT

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def pem(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The CA, a certificate for 127.0.0.1/localhost and its key, and another key, as PEM files."""
    where = tmp_path_factory.mktemp("pem")
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    files = {"ca": where / "ca.pem", "cert": where / "cert.pem", "key": where / "key.pem",
             "other-key": where / "other-key.pem"}  # fmt: skip
    ca.cert_pem.write_to_path(str(files["ca"]))
    leaf.cert_chain_pems[0].write_to_path(str(files["cert"]))
    leaf.private_key_pem.write_to_path(str(files["key"]))
    ca.issue_cert("elsewhere.test").private_key_pem.write_to_path(str(files["other-key"]))
    return files


def _serve(store: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", SERVE_SCRIPT, "--store", str(store), "--listen", "127.0.0.1:0",
                             *extra], stderr=subprocess.PIPE, text=True)  # fmt: skip


@pytest.fixture
def https_origin(packaged_store: Path, pem: dict[str, Path]) -> Iterator[str]:
    proc = _serve(packaged_store, "--tls-cert", str(pem["cert"]), "--tls-key", str(pem["key"]))
    assert proc.stderr is not None
    try:
        first = proc.stderr.readline()
        found = re.search(r"https://127\.0\.0\.1:(\d+)/videos", first)
        assert found, first
        yield f"https://127.0.0.1:{found.group(1)}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)


def test_serves_https_with_caching_headers_and_conditional_get(
    https_origin: str, pem: dict[str, Path], packaged_store: Path
) -> None:
    trust = ssl.create_default_context(cafile=str(pem["ca"]))
    with httpx.Client(verify=trust, timeout=10) as client:
        url = f"{https_origin}/videos/demo/manifest.mpd"
        got = client.get(url)
        assert got.status_code == 200
        assert got.content == (packaged_store / "demo" / "manifest.mpd").read_bytes()
        assert "max-age" in got.headers["cache-control"]
        again = client.get(url, headers={"If-None-Match": got.headers["etag"]})
        assert again.status_code == 304
        assert client.get(f"{https_origin}/healthz").status_code == 200


def test_a_client_without_the_ca_and_a_plain_http_client_get_nothing(https_origin: str) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        httpx.get(f"{https_origin}/healthz", timeout=10)
    with pytest.raises(httpx.HTTPError):
        httpx.get(https_origin.replace("https://", "http://") + "/healthz", timeout=10)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tls-cert", "{cert}"], "go together"),
        (["--tls-cert", "{cert}", "--tls-key", "{missing}"], "cannot read it"),
        (["--tls-cert", "{cert}", "--tls-key", "{other-key}"], "is not the private key of the certificate"),
        (["--tls-cert", "{ca-garbage}", "--tls-key", "{key}"], "no PEM certificate in it"),
        (["--tls-cert", "{cert}", "--tls-key", "{encrypted}"], "the key is encrypted"),
    ],
)
def test_bad_certificate_settings_exit_2_before_serving(
    flags: list[str], message: str, pem: dict[str, Path], tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(_encrypted_key(pem["key"]))
    names = {"cert": pem["cert"], "key": pem["key"], "other-key": pem["other-key"],
             "missing": tmp_path / "missing.pem", "ca-garbage": garbage, "encrypted": encrypted}  # fmt: skip
    argv = [f.format(**{k: str(v) for k, v in names.items()}) for f in flags]
    proc = _serve(tmp_path / "store", *argv)
    _, err = proc.communicate(timeout=30)  # an encrypted key must not wait for a passphrase
    assert proc.returncode == 2, err
    assert message in err
    assert "Traceback" not in err
    assert "PRIVATE KEY" not in err


def _encrypted_key(key_file: Path) -> bytes:
    """The key of `key_file`, encrypted with a passphrase (PEM)."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
