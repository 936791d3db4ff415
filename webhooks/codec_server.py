"""`dunning codec-server`: decrypts payloads for the Temporal UI and CLI, for operators only.

Temporal's remote codec protocol: POST /decode and POST /encode take and return
`temporal.api.common.v1.Payloads` as protobuf JSON. The UI calls from the browser, so the
UI's origin is allowed by CORS (preflights answered), and every call must carry
`Authorization: Bearer <CODEC_SERVER_TOKEN>`. The dev UI cannot send a token: the demo may
serve without one, on a loopback address only.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence

import uvicorn
from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from temporalio.api.common.v1 import Payload, Payloads

from config.settings import Settings, weakness
from intake.codec import EncryptionCodec, PayloadKeyError, codec
from webhooks.app import serve_until_stopped

log = logging.getLogger("dunning.codec_server")

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class CodecServerProblem(ValueError):
    """The codec server would run unsafely or uselessly; one line says why."""


def create_codec_app(
    payload_codec: EncryptionCodec, token: str | None, origins: Sequence[str]
) -> Starlette:
    """The codec server's app; `token` None serves without authentication (demo only)."""

    def endpoint(
        convert: Callable[[Sequence[Payload]], Awaitable[list[Payload]]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            if token is not None and not _bearer_matches(request, token):
                return PlainTextResponse(
                    "unauthorized", status_code=401, headers={"WWW-Authenticate": "Bearer"}
                )
            try:
                payloads = json_format.Parse(await request.body(), Payloads())
                converted = await convert(payloads.payloads)
            except (json_format.ParseError, UnicodeDecodeError):
                return PlainTextResponse("body is not Payloads JSON", status_code=400)
            except PayloadKeyError as err:
                return PlainTextResponse(str(err), status_code=400)
            body = json_format.MessageToJson(Payloads(payloads=converted))
            return Response(body, media_type="application/json")

        return handle

    return Starlette(
        routes=[
            Route("/decode", endpoint(payload_codec.decode), methods=["POST"]),
            Route("/encode", endpoint(payload_codec.encode), methods=["POST"]),
        ],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=list(origins),
                allow_methods=["POST"],
                # What the UI sends: its namespace, and with "pass access token" a bearer.
                allow_headers=["Authorization", "Content-Type", "X-Namespace"],
                allow_credentials=True,
            )
        ],
    )


def _bearer_matches(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


def checked_codec_app(settings: Settings, without_token: bool = False) -> Starlette:
    """The app for these settings, or `CodecServerProblem`: no keys to decode with, or no
    (or a guessable) token unless `without_token` on a loopback address."""
    payload_codec = codec(settings)
    if payload_codec is None:
        raise CodecServerProblem("no PAYLOAD_KEYS: there is nothing to decode with")
    if without_token:
        if settings.codec_server_host not in LOOPBACK:
            raise CodecServerProblem(
                f"a codec server without a token serves only on a loopback address, "
                f"not CODEC_SERVER_HOST={settings.codec_server_host}"
            )
        token = None
    else:
        secret = settings.codec_server_token
        if secret is None or not secret.get_secret_value().strip():
            raise CodecServerProblem(
                "CODEC_SERVER_TOKEN is not set (or, on this machine only: --no-token)"
            )
        if why := weakness(secret.get_secret_value()):
            raise CodecServerProblem(f"CODEC_SERVER_TOKEN {why}")
        token = secret.get_secret_value().strip()
    return create_codec_app(payload_codec, token, settings.codec_origins)


async def serve_codec(settings: Settings, without_token: bool = False) -> None:
    """Serve the codec server on CODEC_SERVER_HOST:CODEC_SERVER_PORT until cancelled."""
    app = checked_codec_app(settings, without_token)
    where = f"{settings.codec_server_host}:{settings.codec_server_port}"
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.codec_server_host,
            port=settings.codec_server_port,
            lifespan="off",
            log_level="warning",
        )
    )

    auth = "no token (this machine only)" if without_token else "bearer token"
    origins = ", ".join(settings.codec_origins)
    await serve_until_stopped(
        server,
        f"the codec server on {where}",
        "CODEC_SERVER_PORT",
        f"Codec server on http://{where} ({auth}; UI origins: {origins})",
    )


async def serve_demo_codec(settings: Settings) -> None:
    """The demo's codec server for the dev UI (no token, loopback only), when the dev server
    runs; a port in use costs only the UI's decoding, so it is said and the demo goes on."""
    if not settings.uses_dev_server:
        return
    try:
        await serve_codec(settings, without_token=True)
    except (OSError, CodecServerProblem) as err:
        log.warning("no codec server, the UI shows payloads encrypted: %s", err)
