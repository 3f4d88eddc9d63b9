#!/usr/bin/env python3
"""An independent DSSE + Ed25519 implementation, for interoperability tests.

It shares no code with palisade-shared: it computes the DSSE
pre-authentication encoding itself and signs and verifies with Python's
`cryptography` package. The Rust test `shared/tests/interop.rs` drives it:

  dsse_interop.py verify ENVELOPE_JSON PUBLIC_KEY_HEX PAYLOAD_TYPE
      exit 0 and print the payload if the envelope verifies, exit 1 if not
  dsse_interop.py sign SEED_HEX PAYLOAD_TYPE PAYLOAD_FILE
      print an envelope (JSON) signed with the key made from the 32-byte seed
  dsse_interop.py vector SEED_HEX PAYLOAD_TYPE PAYLOAD_FILE
      print a test vector: key, payload, PAE and expected signature
"""
import base64
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def pae(payload_type: bytes, payload: bytes) -> bytes:
    # DSSE v1: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
    return b"DSSEv1 %d %b %d %b" % (len(payload_type), payload_type, len(payload), payload)


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def keyid(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()


def verify(envelope_path: str, public_hex: str, payload_type: str) -> int:
    with open(envelope_path, "rb") as f:
        envelope = json.load(f)
    if envelope["payloadType"] != payload_type:
        print("wrong payload type", file=sys.stderr)
        return 1
    public_raw = bytes.fromhex(public_hex)
    key = Ed25519PublicKey.from_public_bytes(public_raw)
    payload = base64.b64decode(envelope["payload"], validate=True)
    message = pae(envelope["payloadType"].encode(), payload)
    for sig in envelope["signatures"]:
        if sig["keyid"] != keyid(public_raw):
            continue
        try:
            key.verify(base64.b64decode(sig["sig"], validate=True), message)
        except InvalidSignature:
            print("bad signature", file=sys.stderr)
            return 1
        sys.stdout.buffer.write(payload)
        return 0
    print("no signature by the given key", file=sys.stderr)
    return 1


def sign(seed_hex: str, payload_type: str, payload_path: str) -> dict:
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex))
    with open(payload_path, "rb") as f:
        payload = f.read()
    signature = key.sign(pae(payload_type.encode(), payload))
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [
            {"keyid": keyid(raw_public(key.public_key())), "sig": base64.b64encode(signature).decode()}
        ],
    }


def main(argv: list) -> int:
    if len(argv) == 5 and argv[1] == "verify":
        return verify(argv[2], argv[3], argv[4])
    if len(argv) == 5 and argv[1] == "sign":
        json.dump(sign(argv[2], argv[3], argv[4]), sys.stdout)
        return 0
    if len(argv) == 5 and argv[1] == "vector":
        envelope = sign(argv[2], argv[3], argv[4])
        key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(argv[2]))
        with open(argv[4], "rb") as f:
            payload = f.read()
        json.dump(
            {
                "seed_hex": argv[2],
                "public_key_hex": raw_public(key.public_key()).hex(),
                "keyid": envelope["signatures"][0]["keyid"],
                "payload_type": argv[3],
                "payload_base64": envelope["payload"],
                "pae_hex": pae(argv[3].encode(), payload).hex(),
                "signature_base64": envelope["signatures"][0]["sig"],
                "made_by": "shared/tests/interop/dsse_interop.py (Python cryptography)",
            },
            sys.stdout,
            indent=2,
        )
        print()
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
