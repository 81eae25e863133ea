"""RSA public keys from PEM text: the keys that may sign sipgate's webhook requests.

A file may hold several keys (any one verifies). Each block is a SubjectPublicKeyInfo
(``BEGIN PUBLIC KEY``), a PKCS#1 key (``BEGIN RSA PUBLIC KEY``) or an X.509 certificate;
sipgate's own verifier ships its key labelled ``BEGIN CERTIFICATE`` although the block
holds a bare SubjectPublicKeyInfo, so a certificate block that does not parse as one is
read as that."""

from __future__ import annotations

import base64
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
MIN_BITS = 2048


def rsa_public_keys(pem: bytes) -> tuple[RSAPublicKey, ...]:
    """Every key in the text; ValueError when there is none or a block is not one."""
    keys = tuple(_key(block[1].decode(), block[0]) for block in _BLOCK.finditer(pem))
    if not keys:
        raise ValueError("holds no PEM public key (BEGIN PUBLIC KEY)")
    return keys


def _key(label: str, block: bytes) -> RSAPublicKey:
    try:
        key = _parsed(label, block)
    except (ValueError, TypeError):  # TypeError: cryptography's for some malformed DER
        raise ValueError(f"the {label} block holds no public key") from None
    if not isinstance(key, RSAPublicKey):
        raise ValueError(f"the {label} block is not an RSA public key")
    if key.key_size < MIN_BITS:
        raise ValueError(f"an RSA key of {key.key_size} bits is too short (at least {MIN_BITS})")
    return key


def _parsed(label: str, block: bytes) -> object:
    if label != "CERTIFICATE":
        return serialization.load_pem_public_key(block)
    try:
        return x509.load_pem_x509_certificate(block).public_key()
    except ValueError:  # sipgate's mislabelled key: a SubjectPublicKeyInfo after all
        body = block.split(b"-----")[2]
        return serialization.load_der_public_key(base64.b64decode(b"".join(body.split())))
