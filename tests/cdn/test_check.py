"""`cdn check URL [--ca FILE]`, the containers' health check, against real servers on loopback.

The origin app under uvicorn, once over TLS with a certificate from the session's trustme CA (names
`video.cdn.test` and 127.0.0.1, not `localhost`) and once over plain HTTP. Exit codes: 0 for HTTP 200,
1 with the reason on stderr (a status, a refused certificate, no answer), 2 for a --ca that cannot be used.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from cdn.asgiserver import serve_in_thread
from cdn.cli import main
from origin.app import create_app
from origin.config import ServeConfig
from tests.conftest import free_port

pytestmark = pytest.mark.network

ROOT = Path(__file__).resolve().parents[2]
UNKNOWN_ISSUER = "certificate verify failed: unable to get local issuer certificate"


@pytest.fixture(scope="module")
def pki(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's cert+key, another CA's certificate, and files that are no CA at all."""
    d = tmp_path_factory.mktemp("check-pki")
    leaf = ca.issue_cert("video.cdn.test", "127.0.0.1")
    leaf.private_key_and_cert_chain_pem.write_to_path(str(d / "server.pem"))
    leaf.cert_chain_pems[0].write_to_path(str(d / "leaf.pem"))
    trustme.CA().cert_pem.write_to_path(str(d / "other-ca.pem"))
    (d / "garbage.pem").write_bytes(b"not a certificate\n")
    return d


@pytest.fixture(scope="module")
def https_url(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The origin app over TLS; yields https://127.0.0.1:PORT."""
    app = create_app(ServeConfig(store=tmp_path_factory.mktemp("store")))
    pem = str(pki / "server.pem")
    with serve_in_thread(app, ssl_certfile=pem, ssl_keyfile=pem) as url:
        yield url.replace("http://", "https://", 1)


@pytest.fixture(scope="module")
def http_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The origin app over plain HTTP; yields http://127.0.0.1:PORT."""
    with serve_in_thread(create_app(ServeConfig(store=tmp_path_factory.mktemp("store")))) as url:
        yield url


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Run `cdn check ARGV` in this process: its exit code and stderr (stdout must stay empty)."""
    code = main(["check", *argv])
    out, err = capsys.readouterr()
    assert out == ""
    return code, err


def test_trusted_ca_is_healthy(https_url: str, ca_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check(capsys, f"{https_url}/healthz", "--ca", str(ca_file)) == (0, "")


@pytest.mark.parametrize("ca_name", ["other-ca.pem", None])
def test_an_unknown_issuer_is_refused_with_the_reason(
    https_url: str, pki: Path, ca_name: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = ["--ca", str(pki / ca_name)] if ca_name else []  # another CA, or only the system's
    code, err = check(capsys, f"{https_url}/healthz", *ca)
    assert code == 1
    assert err == (
        f"cdn check: {https_url}/healthz: TLS for 127.0.0.1: {UNKNOWN_ISSUER}; "
        "pass the CA that signed it with --ca\n"
    )


def test_a_name_the_certificate_lacks_is_refused(
    https_url: str, ca_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = https_url.replace("127.0.0.1", "localhost") + "/healthz"
    code, err = check(capsys, url, "--ca", str(ca_file))
    assert code == 1
    assert "TLS for localhost: certificate verify failed: Hostname mismatch" in err
    assert "--ca" not in err.split("Hostname mismatch", 1)[1]  # the CA is known: no hint to pass one


def test_a_status_other_than_200_is_unhealthy(
    https_url: str, ca_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"{https_url}/videos/nope/manifest.mpd"
    assert check(capsys, url, "--ca", str(ca_file)) == (1, f"cdn check: {url}: HTTP 404\n")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing.pem", "cannot read it: No such file or directory"),
        ("garbage.pem", "no PEM certificate in it"),
        ("leaf.pem", "no CA certificate in it (no CA:TRUE)"),
    ],
)
def test_a_bad_ca_file_is_a_usage_error(
    https_url: str, pki: Path, name: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = check(capsys, f"{https_url}/healthz", "--ca", str(pki / name))
    assert code == 2
    assert err.startswith(f"cdn check: --ca {pki / name}: {message}")
    assert err.count("\n") == 1


def test_ca_with_an_http_url_is_a_usage_error(
    http_url: str, ca_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = check(capsys, f"{http_url}/healthz", "--ca", str(ca_file))
    assert code == 2
    assert "goes with an https:// URL" in err


def test_plain_http_still_works(http_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert check(capsys, f"{http_url}/healthz") == (0, "")
    assert check(capsys, f"{http_url}/nope")[0] == 1


def test_nothing_listening_or_no_tls_is_unhealthy(http_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}/healthz"
    assert check(capsys, url, "--timeout", "0.5") == (
        1,
        f"cdn check: {url}: cannot connect: Connection refused\n",
    )
    code, err = check(capsys, http_url.replace("http://", "https://") + "/healthz")  # TLS to a plain port
    assert code == 1
    assert "TLS: handshake failed" in err


def test_the_command_line_says_why_in_one_line(https_url: str, pki: Path, ca_file: Path) -> None:
    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cdn.cli", "check", *argv], capture_output=True,
                              text=True, timeout=60, check=False, cwd=ROOT)  # fmt: skip

    assert run(f"{https_url}/healthz", "--ca", str(ca_file)).returncode == 0
    for ca, code in ((pki / "other-ca.pem", 1), (pki / "garbage.pem", 2)):
        out = run(f"{https_url}/healthz", "--ca", str(ca))
        assert out.returncode == code
        assert (out.stdout, out.stderr.count("\n")) == ("", 1)
        assert "Traceback" not in out.stderr
