"""The local Attentive sandbox, run as a real server in a subprocess and spoken to over HTTP."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from attentive_router import (
    AddToCartRequest,
    CustomAttributesRequest,
    CustomEventsRequest,
    EventUser,
    ExternalIdentifiers,
    IdentifyRequest,
    Price,
    Product,
    ProductViewRequest,
    PurchaseRequest,
    SalesChannel,
    to_json,
)
from attentive_router._sandbox.process import SandboxError, SandboxProcess
from attentive_router._sandbox.server import DEFAULT_RATE_LIMITS, ENDPOINTS
from attentive_router._transform.models import Body

CUSTOM = "/v1/events/custom"
IDENTITY = "/v1/identity-resolution/user-identifiers"
STARTUP_FAULTS = {"seed": 42}

USER = EventUser(email="jane@example.com", external_identifiers=ExternalIdentifiers("u-1"))
ITEMS = (Product("p-1", "p-1-blue", (Price(19.99, "USD"),), name="Mug", quantity=2),)
WHEN = "2026-01-08T13:52:50.212Z"
BODIES: dict[str, Body] = {
    "/v1/events/ecommerce/product-view": ProductViewRequest(ITEMS, USER, WHEN),
    "/v1/events/ecommerce/add-to-cart": AddToCartRequest(ITEMS, USER, WHEN),
    "/v1/events/ecommerce/purchase": PurchaseRequest(ITEMS, USER, "o-1", SalesChannel("WEB"), WHEN),
    CUSTOM: CustomEventsRequest("Signed Up", USER, {"plan": "pro"}, "evt-0", WHEN),
    IDENTITY: IdentifyRequest(email="jane@example.com", client_user_id="u-1"),
    "/v1/attributes/custom": CustomAttributesRequest({"plan": "pro", "seats": 3}, USER),
}


def custom_event(event_id: str) -> dict[str, Any]:
    body = CustomEventsRequest("Signed Up", USER, {"plan": "pro"}, event_id, WHEN)
    return to_json(body)


@pytest.fixture(scope="module")
def running() -> Iterator[SandboxProcess]:
    with SandboxProcess(faults=STARTUP_FAULTS) as process:
        yield process


@pytest.fixture
def sandbox(running: SandboxProcess) -> SandboxProcess:
    running.reset()
    return running


@pytest.fixture
def client(sandbox: SandboxProcess) -> Iterator[httpx.Client]:
    headers = sandbox.auth_headers
    with httpx.Client(base_url=sandbox.url, headers=headers, timeout=5, trust_env=False) as c:
        yield c


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    record = tmp_path_factory.mktemp("sandbox") / "record.ndjson"
    with SandboxProcess(rate_limits={CUSTOM: 5}, record=record, args=["--access-log"]) as process:
        yield process


# Authentication and /v1/me


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "sandbox-token"}],
    ids=["missing", "wrong", "no-scheme"],
)
def test_post_without_the_token_is_401_and_not_recorded(
    sandbox: SandboxProcess, headers: dict[str, str]
) -> None:
    response = httpx.post(
        f"{sandbox.url}{CUSTOM}", json=custom_event("e"), headers=headers, trust_env=False
    )
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert sandbox.requests() == []
    assert sandbox.stats()["received"] == {CUSTOM: {"401": 1}}


def test_me_answers_for_a_valid_token_only(sandbox: SandboxProcess, client: httpx.Client) -> None:
    response = client.get("/v1/me")
    assert response.status_code == 200
    assert response.json()["applicationName"] == "Attentive Sandbox"
    anonymous = httpx.get(f"{sandbox.url}/v1/me", trust_env=False)
    assert anonymous.status_code == 401
    lowercase = {"Authorization": f"bearer {sandbox.token}"}
    assert client.get("/v1/me", headers=lowercase).status_code == 200


# Accepted bodies and validation


def test_the_six_endpoints_are_served() -> None:
    assert set(BODIES) == set(ENDPOINTS)


@pytest.mark.parametrize("path", list(BODIES))
def test_valid_body_is_accepted_and_recorded(
    sandbox: SandboxProcess, client: httpx.Client, path: str
) -> None:
    body = to_json(BODIES[path])
    response = client.post(path, json=body)
    assert response.status_code == (202 if path == IDENTITY else 200), response.text
    assert response.json() == {"status": "accepted", "seq": 1}
    limit = DEFAULT_RATE_LIMITS[path]
    assert response.headers["x-ratelimit-limit"] == str(limit)
    assert response.headers["x-ratelimit-remaining"] == str(limit - 1)
    assert "retry-after" not in response.headers
    [record] = sandbox.requests()
    assert record["seq"] == 1
    assert record["path"] == path
    assert record["body"] == body
    assert record["fault"] is None
    assert record["token"] == sandbox.token
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["received_at"])


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"user": {"email": "not-an-email"}}, "$.user.email"),
        ({"type": "Signed (Up)"}, "$.type"),
        ({"user": None}, "$.user"),
        ({"surprise": 1}, "'surprise' was unexpected"),
    ],
)
def test_invalid_body_is_400_naming_the_field(
    sandbox: SandboxProcess, client: httpx.Client, change: dict[str, Any], expected: str
) -> None:
    body = {**custom_event("e"), **change}
    response = client.post(CUSTOM, json=body)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_body"
    assert expected in response.json()["message"]
    assert "CustomEventsRequest" in response.json()["message"]
    assert sandbox.requests() == []


def test_missing_required_field_is_named(client: httpx.Client) -> None:
    body = to_json(BODIES["/v1/events/ecommerce/purchase"])
    del body["items"]
    response = client.post("/v1/events/ecommerce/purchase", json=body)
    assert response.status_code == 400
    assert "$: 'items' is a required property" in response.json()["errors"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b'{"type": "x",', "not valid JSON"), (b"[1, 2]", "JSON object, got list"), (b"", "JSON")],
)
def test_body_that_is_not_a_json_object_is_400(
    client: httpx.Client, content: bytes, expected: str
) -> None:
    response = client.post(CUSTOM, content=content)
    assert response.status_code == 400
    assert expected in response.json()["message"]


# Rate limits


def fire(client: httpx.Client, path: str, count: int) -> tuple[list[httpx.Response], float]:
    body = to_json(BODIES[path])
    started = time.monotonic()
    responses = [client.post(path, json=body) for _ in range(count)]
    return responses, time.monotonic() - started


def test_identity_is_limited_to_10_per_second_by_default(client: httpx.Client) -> None:
    responses, elapsed = fire(client, IDENTITY, 40)
    accepted = sum(r.status_code == 202 for r in responses)
    assert 10 <= accepted <= 10 + 10 * elapsed
    limited = [r for r in responses if r.status_code == 429]
    assert len(limited) == 40 - accepted
    assert limited[0].headers["x-ratelimit-limit"] == "10"
    assert limited[0].headers["x-ratelimit-remaining"] == "0"
    assert "retry-after" not in limited[0].headers


def test_rate_limit_option_gives_429_with_headers(limited: SandboxProcess) -> None:
    limited.reset()
    with httpx.Client(base_url=limited.url, headers=limited.auth_headers, trust_env=False) as c:
        responses, elapsed = fire(c, CUSTOM, 40)
        accepted = sum(r.status_code == 200 for r in responses)
        assert 5 <= accepted <= 5 + 5 * elapsed
        assert {r.status_code for r in responses} == {200, 429}
        rejected = next(r for r in responses if r.status_code == 429)
        assert rejected.headers["x-ratelimit-limit"] == "5"
        assert rejected.headers["x-ratelimit-remaining"] == "0"
        assert rejected.json()["error"] == "rate_limited"
        # Other endpoints keep Attentive's default limit.
        other = c.post("/v1/attributes/custom", json=to_json(BODIES["/v1/attributes/custom"]))
        assert other.headers["x-ratelimit-limit"] == "150"
        limited.set_faults(retry_after="2")
        later = []
        for _ in range(50):
            later.append(c.post(CUSTOM, json=custom_event("e")))
            if later[-1].status_code == 429:
                break
        assert later[-1].status_code == 429
        assert later[-1].headers["retry-after"] == "2"
    accepted_later = sum(r.status_code == 200 for r in later)
    assert len(limited.requests(CUSTOM)) == accepted + accepted_later


def test_record_file_holds_every_accepted_request(
    limited: SandboxProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    record = Path(limited.command[limited.command.index("--record") + 1])
    before = record.read_bytes().count(b"\n")
    limited.reset()
    with httpx.Client(base_url=limited.url, headers=limited.auth_headers, trust_env=False) as c:
        assert c.post(CUSTOM, json=custom_event("r-1")).status_code == 200
        assert c.post(CUSTOM, json={"type": "broken"}).status_code == 400
        assert c.post(CUSTOM, json=custom_event("r-2")).status_code == 200
    lines = record.read_bytes().splitlines()[before:]
    assert [orjson.loads(line) for line in lines] == limited.requests()
    assert [orjson.loads(line)["body"]["externalEventId"] for line in lines] == ["r-1", "r-2"]
    assert tmp_path_factory.getbasetemp() in record.parents


# Faults


def test_script_answers_each_request_of_an_event_in_turn(
    sandbox: SandboxProcess, client: httpx.Client
) -> None:
    sandbox.set_faults(scripts={"evt-1": [500, 503, 200]})
    statuses = [client.post(CUSTOM, json=custom_event("evt-1")).status_code for _ in range(4)]
    assert statuses == [500, 503, 200, 200]
    assert client.post(CUSTOM, json=custom_event("evt-2")).status_code == 200
    assert [r["body"]["externalEventId"] for r in sandbox.requests()] == ["evt-1"] * 2 + ["evt-2"]
    assert sandbox.stats()["received"][CUSTOM] == {"500": 1, "503": 1, "200": 3}


def test_scripted_429_carries_rate_limit_headers_and_retry_after(
    sandbox: SandboxProcess, client: httpx.Client
) -> None:
    sandbox.set_faults(scripts={"evt-429": [429]}, retry_after="Wed, 21 Oct 2026 07:28:00 GMT")
    response = client.post(CUSTOM, json=custom_event("evt-429"))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "Wed, 21 Oct 2026 07:28:00 GMT"
    assert response.headers["x-ratelimit-limit"] == "150"
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert sandbox.requests() == []


def test_timeout_hangs_then_processes_the_request(
    sandbox: SandboxProcess, client: httpx.Client
) -> None:
    sandbox.set_faults(scripts={"evt-t": ["timeout"]}, hang_seconds=0.6)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        client.post(CUSTOM, json=custom_event("evt-t"), timeout=0.2)
    assert sandbox.requests() == []
    [record] = sandbox.wait_for_requests(1, CUSTOM, timeout=5)
    assert time.monotonic() - started >= 0.6
    assert record["fault"] == "timeout"
    assert client.post(CUSTOM, json=custom_event("evt-t"), timeout=0.5).status_code == 200
    assert sandbox.stats()["injected"] == {"timeout": 1}


def test_reset_drops_the_connection_mid_response(
    sandbox: SandboxProcess, client: httpx.Client
) -> None:
    sandbox.set_faults(scripts={"evt-r": ["reset"]})
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(CUSTOM, json=custom_event("evt-r"))
    assert client.post(CUSTOM, json=custom_event("evt-r")).status_code == 200
    assert [r["fault"] for r in sandbox.requests()] == ["reset", None]
    assert sandbox.stats()["received"][CUSTOM] == {"reset": 1, "200": 1}


def test_reset_rate_1_fails_every_request_in_transport(
    sandbox: SandboxProcess, client: httpx.Client
) -> None:
    sandbox.set_faults(reset_rate=1.0)
    for _ in range(3):
        with pytest.raises(httpx.TransportError):
            client.post(CUSTOM, json=custom_event("e"))
    assert sandbox.stats()["injected"] == {"reset": 3}


def test_error_rate_1_answers_every_request_with_an_injected_error(
    sandbox: SandboxProcess, client: httpx.Client
) -> None:
    sandbox.set_faults(error_rate=1.0, error_statuses=[502])
    responses = [client.post(CUSTOM, json=custom_event("e")) for _ in range(5)]
    assert [r.status_code for r in responses] == [502] * 5
    assert responses[0].json()["error"] == "injected"
    assert sandbox.requests() == []
    assert sandbox.stats()["injected"] == {"error": 5}


def test_random_faults_repeat_for_the_same_seed(
    sandbox: SandboxProcess, client: httpx.Client
) -> None:
    faults = {"error_rate": 0.5, "error_statuses": [500, 503], "seed": 7}

    def run() -> list[int]:
        sandbox.set_faults(faults)
        return [client.post(CUSTOM, json=custom_event("e")).status_code for _ in range(30)]

    first = run()
    assert first == run()
    assert {200, 500, 503} == set(first)


@pytest.mark.parametrize("status", [401, 503])
def test_status_for_all_answers_every_request(
    sandbox: SandboxProcess, client: httpx.Client, status: int
) -> None:
    sandbox.set_faults(status_for_all=status)
    for path, body in BODIES.items():
        assert client.post(path, json=to_json(body)).status_code == status
    assert client.get("/v1/me").status_code == status
    assert sandbox.requests() == []
    assert sandbox.stats()["total"] == len(BODIES)


def test_latency_delays_the_answer(sandbox: SandboxProcess, client: httpx.Client) -> None:
    sandbox.set_faults(latency_ms=300)
    started = time.monotonic()
    assert client.post(CUSTOM, json=custom_event("e")).status_code == 200
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        ({"latency": 5}, "unknown fault key(s): 'latency'"),
        ({"error_rate": 2}, "error_rate: expected a number between 0 and 1"),
        ({"error_statuses": []}, "error_statuses: expected a non-empty list"),
        ({"scripts": {"e": ["boom"]}}, "scripts['e'][0]"),
        ({"status_for_all": 99}, "status_for_all: expected an HTTP status"),
    ],
)
def test_bad_faults_are_refused_and_change_nothing(
    sandbox: SandboxProcess, faults: dict[str, Any], expected: str
) -> None:
    before = sandbox.faults()
    with pytest.raises(SandboxError) as caught:
        sandbox.set_faults(faults)
    assert "400" in str(caught.value)
    assert expected in str(caught.value)
    assert sandbox.faults() == before


def test_faults_read_back_as_set(sandbox: SandboxProcess) -> None:
    answer = sandbox.set_faults(latency_ms=5, scripts={"e": [503, "timeout", "reset", 200]})
    assert answer == sandbox.faults()
    assert answer["scripts"] == {"e": [503, "timeout", "reset", 200]}
    assert answer["latency_ms"] == 5
    assert answer["seed"] is None


# Admin API


def test_stats_count_every_answer(sandbox: SandboxProcess, client: httpx.Client) -> None:
    assert client.post(CUSTOM, json=custom_event("e")).status_code == 200
    assert client.post(CUSTOM, json={"type": "x"}).status_code == 400
    assert (
        client.post(CUSTOM, json=custom_event("e"), headers={"Authorization": ""}).status_code
        == 401
    )
    assert client.post("/v1/nowhere", json={}).status_code == 404
    assert client.get(CUSTOM).status_code == 405
    assert sandbox.stats() == {
        "received": {CUSTOM: {"200": 1, "400": 1, "401": 1}, "/v1/nowhere": {"404": 1}},
        "keys": {sandbox.token: {"200": 1, "400": 1}},
        "accepted": 1,
        "total": 4,
        "injected": {},
    }


def test_reset_clears_records_and_restores_startup_faults(
    sandbox: SandboxProcess, client: httpx.Client
) -> None:
    assert client.post(CUSTOM, json=custom_event("e")).status_code == 200
    sandbox.set_faults(error_rate=1.0)
    assert client.post(CUSTOM, json=custom_event("e")).status_code >= 500
    sandbox.reset()
    assert sandbox.requests() == []
    assert sandbox.stats() == {
        "received": {},
        "keys": {},
        "accepted": 0,
        "total": 0,
        "injected": {},
    }
    faults = sandbox.faults()
    assert (faults["seed"], faults["error_rate"]) == (42, 0)
    response = client.post(CUSTOM, json=custom_event("e"))
    assert response.json() == {"status": "accepted", "seq": 1}


def test_requests_filtered_by_path_and_as_ndjson(
    sandbox: SandboxProcess, client: httpx.Client
) -> None:
    for path in (CUSTOM, IDENTITY, CUSTOM):
        assert client.post(path, json=to_json(BODIES[path])).is_success
    assert [r["seq"] for r in sandbox.requests(CUSTOM)] == [1, 3]
    assert [r["path"] for r in sandbox.requests(IDENTITY)] == [IDENTITY]
    ndjson = client.get("/_sandbox/requests.ndjson")
    assert ndjson.headers["content-type"] == "application/x-ndjson"
    assert [orjson.loads(line) for line in ndjson.content.splitlines()] == sandbox.requests()


# Several keys: one account each


@pytest.fixture(scope="module")
def two_keys() -> Iterator[SandboxProcess]:
    with SandboxProcess(token="key-a", more_tokens=["key-b"], rate_limits={CUSTOM: 5}) as process:
        yield process


def test_each_key_is_accepted_and_recorded_with_its_requests(two_keys: SandboxProcess) -> None:
    two_keys.reset()
    assert two_keys.tokens == ["key-a", "key-b"]
    for token, event_id in (("key-a", "a-1"), ("key-b", "b-1"), ("key-a", "a-2")):
        headers = {"Authorization": f"Bearer {token}"}
        url = f"{two_keys.url}{CUSTOM}"
        response = httpx.post(url, json=custom_event(event_id), headers=headers, trust_env=False)
        assert response.status_code == 200, response.text
        me = httpx.get(f"{two_keys.url}/v1/me", headers=headers, trust_env=False)
        assert me.status_code == 200
    wrong = {"Authorization": "Bearer key-c"}
    refused = httpx.post(f"{two_keys.url}{CUSTOM}", json={}, headers=wrong, trust_env=False)
    assert refused.status_code == 401
    records = two_keys.requests()
    assert [(r["token"], r["body"]["externalEventId"]) for r in records] == [
        ("key-a", "a-1"),
        ("key-b", "b-1"),
        ("key-a", "a-2"),
    ]
    assert [r["seq"] for r in two_keys.requests(CUSTOM, token="key-a")] == [1, 3]
    assert [r["seq"] for r in two_keys.requests(token="key-b")] == [2]
    assert two_keys.stats()["keys"] == {"key-a": {"200": 2}, "key-b": {"200": 1}}
    assert two_keys.stats()["received"] == {CUSTOM: {"200": 3, "401": 1}}


def test_each_key_has_its_own_rate_limit(two_keys: SandboxProcess) -> None:
    two_keys.reset()
    answers: dict[str, list[int]] = {}
    for token in ("key-a", "key-b"):
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=two_keys.url, headers=headers, trust_env=False) as c:
            responses, elapsed = fire(c, CUSTOM, 20)
        answers[token] = [r.status_code for r in responses]
        # key B's bucket is full although key A has just emptied its own
        assert 5 <= answers[token].count(200) <= 5 + 5 * elapsed, answers
        assert set(answers[token]) == {200, 429}
    keys = two_keys.stats()["keys"]
    for token, statuses in answers.items():
        assert keys[token] == {"200": statuses.count(200), "429": statuses.count(429)}
        assert len(two_keys.requests(CUSTOM, token=token)) == statuses.count(200)


def test_several_tokens_are_announced_and_the_first_is_the_token() -> None:
    with SandboxProcess(args=["--token", "one", "--token", "two"]) as process:
        assert process.tokens == ["one", "two"]
        assert process.token == "one"  # parsed from "(tokens: one, two)"


# The process itself


def test_token_from_the_environment_and_clean_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    token = "env-token"
    monkeypatch.setenv("ATTENTIVE_SANDBOX_TOKEN", token)
    with SandboxProcess() as process:
        url = process.url
        assert process.token == token
        response = httpx.get(f"{url}/v1/me", headers=process.auth_headers, trust_env=False)
        assert response.status_code == 200
    assert process.returncode == 0
    assert process.stderr() == ""
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/v1/me", trust_env=False)


def test_failed_start_reports_the_sandbox_stderr() -> None:
    process = SandboxProcess(args=["--faults", '{"latency": 1}'])
    with pytest.raises(SandboxError, match=r"(?s)exited with status 2.*unknown fault key"):
        process.start()
    assert process.returncode == 2


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--host", "0.0.0.0"], "binds to the loopback interface only"),  # noqa: S104
        (["--host", "192.168.1.10"], "refusing to listen on '192.168.1.10'"),
        (["--faults", "{not json"], "--faults: not valid JSON"),
        (["--faults", "@/nonexistent/faults.json"], "cannot read /nonexistent/faults.json"),
        (["--rate-limit", "/v1/nowhere=5"], "PATH must be one of"),
        (["--rate-limit", f"{CUSTOM}=0"], "N must be a whole number, 1 or more"),
        (["--rate-limit", f"{CUSTOM}=5", "--no-rate-limits"], "not allowed with argument"),
    ],
)
def test_bad_options_exit_2_without_listening(args: list[str], expected: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "attentive_router", "sandbox", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert expected in result.stderr
    assert result.stdout == ""
