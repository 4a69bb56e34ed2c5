#!/usr/bin/python3
"""Verifies the DKIM signature of a mail file offline (python3-dkim): the public key is
given as the base64 of its DER SubjectPublicKeyInfo instead of being looked up in DNS.
Exits 0 and prints `VALID` if it verifies, 1 and `INVALID` otherwise."""

import sys

import dkim

path, public_b64 = sys.argv[1], sys.argv[2]
record = b"v=DKIM1; k=rsa; p=" + public_b64.encode()
message = open(path, "rb").read()
ok = dkim.verify(message, dnsfunc=lambda name, timeout=5: record)
print("VALID" if ok else "INVALID")
sys.exit(0 if ok else 1)
