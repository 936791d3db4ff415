"""Twilio and SendGrid deliveries signed as those services sign them: keys, tokens, signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import sys
import warnings
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its TestClient; the test extra pins httpx, which works.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")

DUNNING = str(Path(sys.executable).parent / "dunning")
PUBLIC_URL = "https://dunning.example.com"
TWILIO_TOKEN = "twilio-auth-token-3e9f"
ACCOUNT_SID = "AC" + "1" * 32
OUR_NUMBER = "+15005550006"
PHONE = "+14155550123"
EMAIL = "jenny.rosen@example.com"
CUSTOMER = "cus_jenny"
IN_APP_SECRET = "in-app-secret-51c7"

# SendGrid's signing key, as a fresh P-256 pair; the receiver knows the public half.
SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())


def public_key_of(key: ec.EllipticCurvePrivateKey) -> str:
    """The verification key as SendGrid shows it: base64 of the DER SubjectPublicKeyInfo."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


# Signing, as Twilio and SendGrid do it ----------------------------------------------------


def twilio_signature(url: str, form: dict[str, str], token: str = TWILIO_TOKEN) -> str:
    """base64(HMAC-SHA1(auth token, URL + every parameter name and value, sorted by name))."""
    signed = url + "".join(name + form[name] for name in sorted(form))
    return base64.b64encode(
        hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest()
    ).decode()


def sendgrid_signature(body: str, timestamp: str, key=SENDGRID_KEY) -> str:
    """base64(DER ECDSA-SHA256 signature of timestamp + body)."""
    return base64.b64encode(
        key.sign(f"{timestamp}{body}".encode(), ec.ECDSA(hashes.SHA256()))
    ).decode()
