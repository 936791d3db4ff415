"""`dunning codec-server`: the Temporal UI's calls (preflight, CORS), the bearer token, and
payloads round-tripping through /encode and /decode in the remote codec JSON format."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket

import httpx
import pytest
from google.protobuf import json_format
from starlette.testclient import TestClient
from temporalio.api.common.v1 import Payload, Payloads

from config.settings import Settings
from intake.codec import ENCODING
from webhooks.codec_server import (
    CodecServerProblem,
    checked_codec_app,
    serve_codec,
    serve_demo_codec,
)

TOKEN = "codec-test-token-6be1c0d9a4"
UI = "http://localhost:8233"
KEYS = f"k1:{base64.b64encode(os.urandom(32)).decode()}"


def settings(**values: object) -> Settings:
    given = {"payload_keys": KEYS, "codec_server_token": TOKEN, "temporal_address": "x"}
    return Settings(**{**given, **values}, _env_file=None)


@pytest.fixture
def http() -> TestClient:
    return TestClient(checked_codec_app(settings()))


def body(*texts: str) -> str:
    payloads = [Payload(metadata={"encoding": b"json/plain"}, data=t.encode()) for t in texts]
    return json_format.MessageToJson(Payloads(payloads=payloads))


def read(response) -> list[Payload]:
    return list(json_format.Parse(response.text, Payloads()).payloads)


def test_payloads_round_trip_through_encode_and_decode(http: TestClient) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}", "X-Namespace": "default"}
    encoded = http.post("/encode", content=body('"call back Friday"'), headers=auth)
    assert encoded.status_code == 200
    [sealed] = read(encoded)
    assert sealed.metadata["encoding"] == ENCODING and b"Friday" not in sealed.data

    decoded = http.post("/decode", content=encoded.text, headers=auth)
    assert decoded.status_code == 200
    assert [p.data for p in read(decoded)] == [b'"call back Friday"']
    # What was never encrypted comes back as it was.
    unchanged = http.post("/decode", content=body('"plain"'), headers=auth)
    assert [p.data for p in read(unchanged)] == [b'"plain"']


@pytest.mark.parametrize("header", [None, "Bearer wrong-token-0000000000", TOKEN, f"Basic {TOKEN}"])
def test_calls_without_the_bearer_token_are_refused(http: TestClient, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    for path in ("/decode", "/encode"):
        response = http.post(path, content=body('"x"'), headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert "x" not in response.text


def test_the_ui_origin_gets_cors_headers_and_its_preflight_an_answer(http: TestClient) -> None:
    preflight = http.options(
        "/decode",
        headers={
            "Origin": UI,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
        },
    )
    assert preflight.status_code == 200  # no token: browsers send none with a preflight
    assert preflight.headers["access-control-allow-origin"] == UI
    assert "POST" in preflight.headers["access-control-allow-methods"]
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert {"authorization", "content-type", "x-namespace"} <= set(allowed.split(", "))

    answer = http.post(
        "/decode",
        content=body('"x"'),
        headers={"Origin": UI, "Authorization": f"Bearer {TOKEN}"},
    )
    assert answer.headers["access-control-allow-origin"] == UI
    refused = http.post("/decode", content=body('"x"'), headers={"Origin": UI})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == UI  # the UI can show why


def test_other_origins_get_no_cors_headers(http: TestClient) -> None:
    preflight = http.options(
        "/decode",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers


def test_a_body_that_is_not_payloads_json_is_a_bad_request(http: TestClient) -> None:
    response = http.post(
        "/decode", content=b"{not json", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 400


def test_the_no_token_mode_serves_only_on_loopback_and_decodes_without_a_header() -> None:
    http = TestClient(checked_codec_app(settings(codec_server_token=None), without_token=True))
    assert http.post("/encode", content=body('"x"')).status_code == 200
    with pytest.raises(CodecServerProblem, match="loopback"):
        checked_codec_app(settings(codec_server_host="0.0.0.0"), without_token=True)


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"codec_server_token": None}, "CODEC_SERVER_TOKEN is not set"),
        ({"codec_server_token": "changeme"}, "CODEC_SERVER_TOKEN is a known default"),
        ({"payload_keys": None}, "no PAYLOAD_KEYS"),
    ],
)
def test_the_server_refuses_to_start_unsafe_or_useless(values: dict, words: str) -> None:
    with pytest.raises(CodecServerProblem, match=words):
        checked_codec_app(settings(**values))


async def test_the_demo_goes_on_without_a_codec_server_when_its_port_is_taken(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        demo = Settings(payload_keys=KEYS, codec_server_port=port, _env_file=None)
        await asyncio.wait_for(serve_demo_codec(demo), timeout=30)
    assert f"cannot serve the codec server on 127.0.0.1:{port}" in caplog.text


async def test_the_served_codec_server_answers_over_http(unused_tcp_port: int) -> None:
    serving = asyncio.create_task(serve_codec(settings(codec_server_port=unused_tcp_port)))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{unused_tcp_port}") as http:
            for _ in range(100):
                with contextlib.suppress(httpx.ConnectError):
                    response = await http.post("/decode", content=body('"x"'))
                    break
                await asyncio.sleep(0.1)
        assert response.status_code == 401
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
