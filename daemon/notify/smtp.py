"""One message through an SMTP server with smtplib: STARTTLS, implicit TLS or plain, and a
login when a user name is set, with the password read from its file at each send (so it can
be changed without a restart), never from the TOML."""

from __future__ import annotations

import smtplib
import socket
import ssl
from email.message import EmailMessage
from typing import Sequence

from daemon.notify.channel import DeliveryError
from daemon.notify.email_message import build_message
from daemon.notify.events import Event

TIMEOUT_SECONDS = 10.0


def read_password(path: str) -> str:
    """The file's first line (a trailing newline is not part of the password)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise DeliveryError(f"the password file {path} cannot be read: {reason}", False) from None


def send_message(
    message: EmailMessage,
    host: str,
    port: int,
    security: str = "starttls",
    username: str = "",
    password_file: str = "",
    timeout: float = TIMEOUT_SECONDS,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Send once; raises DeliveryError saying whether trying again can help."""
    password = read_password(password_file) if username else ""
    context = ssl_context or ssl.create_default_context()
    try:
        if security == "ssl":
            connection: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
        else:
            connection = smtplib.SMTP(host, port, timeout=timeout)
        with connection:
            connection.ehlo()
            if security == "starttls":
                connection.starttls(context=context)
                connection.ehlo()
            if username:
                connection.login(username, password)
            connection.send_message(message)
    except smtplib.SMTPNotSupportedError as error:
        raise DeliveryError(f"the server does not offer it ({error}); check smtp_security and smtp_port", False) from None
    except smtplib.SMTPAuthenticationError as error:
        raise DeliveryError(f"login refused: {error.smtp_code} {_text(error.smtp_error)}", False) from None
    except smtplib.SMTPRecipientsRefused as error:
        refused = ", ".join(f"{who} ({code} {_text(text)})" for who, (code, text) in error.recipients.items())
        raise DeliveryError(f"recipients refused: {refused}", False) from None
    except smtplib.SMTPResponseException as error:  # 4xx: the server asks to try later; 5xx: no
        raise DeliveryError(f"{error.smtp_code} {_text(error.smtp_error)}", 400 <= error.smtp_code < 500) from None
    except ssl.SSLCertVerificationError as error:
        raise DeliveryError(f"TLS certificate not accepted: {error.verify_message or error}", False) from None
    except (smtplib.SMTPException, OSError) as error:  # disconnected, refused, timed out, DNS
        reason = error.strerror if isinstance(error, OSError) and error.strerror else (str(error) or type(error).__name__)
        raise DeliveryError(f"cannot reach {host}:{port}: {reason}", True) from None


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


class EmailChannel:
    name = "e-mail"

    def __init__(self, recipients: Sequence[str], sender: str, host: str, port: int, security: str,
                 username: str, password_file: str, public_url: str,
                 timeout: float = TIMEOUT_SECONDS, ssl_context: ssl.SSLContext | None = None):
        self._recipients = tuple(recipients)
        self._sender = sender
        self._host, self._port, self._security = host, port, security
        self._username, self._password_file = username, password_file
        self._public_url = public_url
        self._timeout = timeout
        self._ssl_context = ssl_context
        self.target = f"{host}:{port}"

    def deliver(self, event: Event) -> str:
        if not self._sender:
            self._sender = f"instarecon@{socket.getfqdn()}"  # here, in the background: it may ask DNS
        sender = self._sender
        message = build_message(event, sender, self._recipients, self._public_url)
        send_message(message, self._host, self._port, self._security, self._username, self._password_file,
                     self._timeout, self._ssl_context)
        return f"to {', '.join(self._recipients)}"
