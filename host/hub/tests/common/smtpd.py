#!/usr/bin/python3
"""A real SMTP server for the hub's mail tests: Debian's aiosmtpd on loopback, delivering
into a Maildir. Modes: required STARTTLS (`--mode starttls`) or implicit TLS (`--mode tls`),
AUTH PLAIN/LOGIN with `--auth user:password` (required; over TLS only). Faults: `--drop N`
closes the connection in the middle of the first N DATA commands (after the message, before an
answer); `--defer N` then answers the next N DATA commands `451` (temporary), and recipients whose local part starts
with `nosuch` get `550` at RCPT (no such mailbox). Prints `READY <port>` once it accepts
connections, and runs until killed."""

import argparse
import asyncio
import signal
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword


class Handler(Mailbox):
    def __init__(self, maildir, drop, defer):
        super().__init__(maildir)
        self.drop = drop
        self.defer = defer

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.split("@")[0].startswith("nosuch"):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.drop > 0:
            self.drop -= 1
            server.transport.abort()
            return "421 4.4.2 Connection dropped"
        if self.defer > 0:
            self.defer -= 1
            return "451 4.3.0 Try again later"
        return await super().handle_DATA(server, session, envelope)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--maildir", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--mode", choices=["starttls", "tls"], default="starttls")
    p.add_argument("--auth")
    p.add_argument("--drop", type=int, default=0)
    p.add_argument("--defer", type=int, default=0)
    a = p.parse_args()

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(a.cert, a.key)
    kwargs = {}
    if a.auth:
        user, password = a.auth.encode().split(b":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (user, password)
            return AuthResult(success=ok)

        # Under implicit TLS aiosmtpd does not count the connection as TLS for AUTH.
        kwargs.update(authenticator=authenticator, auth_required=True,
                      auth_require_tls=(a.mode == "starttls"))
    if a.mode == "starttls":
        kwargs.update(tls_context=ctx, require_starttls=True)
    else:
        kwargs.update(ssl_context=ctx)
    controller = Controller(Handler(a.maildir, a.drop, a.defer), hostname="127.0.0.1", port=a.port,
                            server_hostname="localhost", **kwargs)
    controller.start()
    print(f"READY {a.port}", flush=True)
    signal.sigwait([signal.SIGTERM, signal.SIGINT])
    controller.stop()


if __name__ == "__main__":
    sys.exit(main())
