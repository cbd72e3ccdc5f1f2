"""A real SMTP server for the notification tests: aiosmtpd's Controller on 127.0.0.1, on a free
port, keeping what it receives; optionally with STARTTLS (a throwaway certificate made by the
openssl command) and with a login (a user name and password it accepts)."""

from __future__ import annotations

import contextlib
import email
import email.policy
import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Iterator

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    login: str | None  # the user name the client logged in as, if any
    tls: bool


@dataclass
class Mailbox:
    host: str
    port: int
    received: list[Received] = field(default_factory=list)
    logins_refused: int = 0

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's handler hook
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        # STARTTLS leaves session.ssl set; implicit TLS shows on the transport
        tls = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message, login, tls))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1 and localhost, from the openssl command."""
    if shutil.which("openssl") is None:
        import pytest

        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


@contextlib.contextmanager
def smtp_server(
    credentials: tuple[str, str] | None = None,
    certificate: tuple[Path, Path] | None = None,
    implicit_tls: bool = False,
) -> Iterator[Mailbox]:
    """With ``credentials`` it offers AUTH (over plain text too, which a real server should not)
    and accepts only that user and password; with ``certificate`` it offers STARTTLS, or with
    ``implicit_tls`` speaks TLS from the first byte (what port 465 does)."""
    mailbox = Mailbox("127.0.0.1", free_port())
    options: dict = {}
    if credentials is not None:
        user, password = credentials

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
                user.encode(), password.encode())
            if not ok:
                mailbox.logins_refused += 1
            return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

        options.update(authenticator=authenticator, auth_require_tls=certificate is not None)
    if certificate is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*certificate)
        options.update(ssl_context=context) if implicit_tls else options.update(tls_context=context, require_starttls=True)
    controller = Controller(mailbox, hostname=mailbox.host, port=mailbox.port, **options)
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()
