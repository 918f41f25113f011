"""HTTPS receivers: a certificate the host trusts is accepted, any other is a `tls_error`.

The receiver is an aiohttp server on 127.0.0.1 with a certificate issued by a CA made here.
The CA is trusted the way an operator trusts a private CA: in the system's store, or in the
file `SSL_CERT_FILE` names (the client reads both, as OpenSSL does).
"""

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hookline.delivery import signing
from hookline.delivery.sender import Outcome, Sender


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_ca_and_server(tmp: Path) -> tuple[Path, Path, Path]:
    """(the CA's certificate, the server's certificate, the server's key), as PEM files."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("hookline test CA"))
        .issuer_name(_name("hookline test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    paths = tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@asynccontextmanager
async def https_receiver(certificate: Path, key: Path) -> AsyncIterator[tuple[str, list[str]]]:
    """An HTTPS receiver on 127.0.0.1; yields its URL and the webhook ids it got."""
    got: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        got.append(request.headers["webhook-id"])
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"https://127.0.0.1:{port}/hook", got
        # The sender was closed: let its connection's TLS shutdown end before the server goes,
        # or the server's half of it is left to the garbage collector, unclosed.
        server = runner.server
        assert server is not None
        for _ in range(500):
            if not server.connections:
                break
            await asyncio.sleep(0.01)
    finally:
        await runner.cleanup()


async def send(url: str) -> Outcome:
    sender = Sender(timeout=5, concurrency=1, allow_private_networks=True)
    await sender.start()
    try:
        return await sender.send(
            url=url, msg_id="msg_tls", body=b"{}", secrets=[signing.generate_secret()]
        )
    finally:
        await sender.close()


async def test_a_receiver_whose_ca_the_host_trusts_gets_the_webhook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, certificate, key = make_ca_and_server(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    async with https_receiver(certificate, key) as (url, got):
        outcome = await send(url)
    assert outcome.ok, outcome
    assert (outcome.status_code, got) == (204, ["msg_tls"])


async def test_a_receiver_whose_certificate_nobody_vouches_for_is_a_tls_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ca, certificate, key = make_ca_and_server(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    other_ca, _, _ = make_ca_and_server(other)  # a CA the host trusts, but not the issuer
    monkeypatch.setenv("SSL_CERT_FILE", str(other_ca))
    async with https_receiver(certificate, key) as (url, got):
        outcome = await send(url)
    assert (outcome.ok, outcome.status_code, outcome.error_kind) == (False, None, "tls_error")
    assert outcome.error is not None and "certificate" in outcome.error.lower(), outcome.error
    assert got == []
