"""What ``serve`` answers browsers besides events, over HTTP: settings, analytics.js, /v1/m, 404s.

These run without a browser (the real one is in ``tests/test_browser.py``): a ``serve`` process
on 127.0.0.1 hosting a folder laid out as the npm package's ``dist/umd``, made here.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from attentive_router._cli.serve_process import ServeProcess
from attentive_router._ingest.browser import (
    OncePerMinute,
    PublicBase,
    PublicUrlError,
    parse_public_url,
    request_base,
    settings_document,
)
from attentive_router._ingest.logs import redact

KEY = "wk_site_31f0"
ORIGIN = "https://shop.example"
STANDALONE = b'!function(){try{window.analyticsWriteKey="__WRITE_KEY__"}catch(t){}}();\n'
BUNDLE = "ajs-destination.bundle.0123abcd.js"


@pytest.fixture(scope="module")
def umd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("umd")
    (folder / "standalone.js").write_bytes(STANDALONE)
    (folder / BUNDLE).write_bytes(b"/* a lazily loaded bundle */\n")
    (folder.parent / "secret.js").write_bytes(b"not to be served")
    return folder


@pytest.fixture(scope="module")
def server(umd: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    queue = tmp_path_factory.mktemp("serve-browser") / "queue.db"
    args = ["--cors-origin", ORIGIN, "--analytics-js", str(umd), "--log-level", "info"]
    with ServeProcess(queue=queue, write_keys=(f"site={KEY}",), args=args) as process:
        yield process


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    queue = tmp_path_factory.mktemp("serve-proxied") / "queue.db"
    with ServeProcess(queue=queue, write_keys=(KEY,), args=["--trust-proxy"]) as process:
        yield process


def get(process: ServeProcess, path: str, **headers: str) -> httpx.Response:
    return httpx.get(process.url + path, headers=headers, trust_env=False, timeout=10)


def metric(process: ServeProcess, kind: str) -> float:
    line = f'attentive_router_browser_requests_total{{kind="{kind}"}} '
    for row in process.get("/metrics").text.splitlines():
        if row.startswith(line):
            return float(row[len(line) :])
    return 0.0


# --- settings ----------------------------------------------------------------------------------


def test_settings_point_analytics_js_at_the_host_it_asked(server: ServeProcess) -> None:
    host = server.url.removeprefix("http://")
    before = metric(server, "settings")
    response = get(server, f"/v1/projects/{KEY}/settings", Origin=ORIGIN)
    assert response.status_code == 200
    assert response.json() == {
        "integrations": {
            "Segment.io": {"apiKey": KEY, "apiHost": f"{host}/v1", "protocol": "http"}
        },
        "metrics": {"sampleRate": 0, "host": f"{host}/v1"},
    }
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["cache-control"] == "public, max-age=300"
    assert metric(server, "settings") == before + 1


def test_settings_answer_head_and_options(server: ServeProcess) -> None:
    head = httpx.head(server.url + f"/v1/projects/{KEY}/settings", trust_env=False)
    assert head.status_code == 200
    assert head.content == b""
    options = httpx.options(server.url + f"/v1/projects/{KEY}/settings", trust_env=False)
    assert options.status_code == 204
    assert options.headers["allow"] == "GET, HEAD, OPTIONS"


def test_settings_of_an_unknown_key_are_404_and_name_no_other_key(server: ServeProcess) -> None:
    before = metric(server, "settings_unknown_key")
    response = get(server, "/v1/projects/wk_guess/settings", Origin=ORIGIN)
    assert response.status_code == 404
    assert response.json() == {
        "success": False,
        "code": "unknown_write_key",
        "message": "no such write key",
    }
    assert KEY not in response.text
    assert metric(server, "settings_unknown_key") == before + 1


def test_forwarded_headers_count_only_with_trust_proxy(
    server: ServeProcess, proxied: ServeProcess
) -> None:
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "events.shop.example"}
    trusted = get(proxied, f"/v1/projects/{KEY}/settings", **headers).json()
    assert trusted["integrations"]["Segment.io"]["apiHost"] == "events.shop.example/v1"
    assert trusted["integrations"]["Segment.io"]["protocol"] == "https"
    ignored = get(server, f"/v1/projects/{KEY}/settings", **headers).json()
    assert ignored["integrations"]["Segment.io"]["apiHost"].startswith("127.0.0.1:")
    assert ignored["integrations"]["Segment.io"]["protocol"] == "http"


# --- the hosted library --------------------------------------------------------------------------


def test_the_hosted_library_has_the_write_key_embedded(server: ServeProcess) -> None:
    response = get(server, f"/analytics.js/v1/{KEY}/analytics.min.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/javascript")
    assert response.content == STANDALONE.replace(b'"__WRITE_KEY__"', f'"{KEY}"'.encode())


def test_the_library_for_an_unknown_key_is_a_404_script(server: ServeProcess) -> None:
    response = get(server, "/analytics.js/v1/wk_guess/analytics.min.js")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/javascript")
    assert b"no such write key" in response.content


def test_bundles_are_served_by_name_only(server: ServeProcess) -> None:
    response = get(server, f"/analytics-next/bundles/{BUNDLE}")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    for name in ("..%2Fsecret.js", ".hidden.js", "missing.bundle.js", "standalone.txt"):
        answer = get(server, f"/analytics-next/bundles/{name}")
        assert answer.status_code == 404, name
        assert b"not to be served" not in answer.content


def test_without_analytics_js_the_library_paths_are_404(proxied: ServeProcess) -> None:
    assert get(proxied, f"/analytics.js/v1/{KEY}/analytics.min.js").status_code == 404
    assert get(proxied, f"/analytics-next/bundles/{BUNDLE}").status_code == 404


# --- telemetry, 404s, origins ---------------------------------------------------------------------


def test_the_library_telemetry_is_accepted_and_dropped(server: ServeProcess) -> None:
    before = metric(server, "telemetry_dropped")
    body = b'{"series":[{"type":"Counter","metric":"analytics_js.invoke","value":1}]}'
    response = httpx.post(server.url + "/v1/m", content=body, trust_env=False)
    assert response.status_code == 200
    big = httpx.post(server.url + "/v1/m", content=b"x" * 300_000, trust_env=False)
    assert big.status_code == 200
    assert metric(server, "telemetry_dropped") == before + 2


def test_an_unknown_path_is_a_json_404_logged_once_a_minute(server: ServeProcess) -> None:
    before = metric(server, "not_found")
    for _ in range(3):
        response = get(server, "/v1/no-such-thing")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
    assert metric(server, "not_found") == before + 3
    logged = [line for line in server.stderr().splitlines() if "/v1/no-such-thing" in line]
    assert len(logged) == 1, server.stderr()


def test_a_post_from_an_origin_not_allowed_is_403_and_stores_nothing(server: ServeProcess) -> None:
    body = {"type": "track", "event": "Product Viewed", "userId": "u-evil", "writeKey": KEY}
    response = httpx.post(
        server.url + "/v1/t",
        json=body,
        headers={"Origin": "https://evil.example", "Content-Type": "text/plain"},
        trust_env=False,
    )
    assert response.status_code == 403
    assert response.json()["code"] == "origin_not_allowed"
    assert "received" not in response.text
    allowed = httpx.post(
        server.url + "/v1/t",
        json={**body, "userId": "u-shop"},
        headers={"Origin": ORIGIN, "Content-Type": "text/plain"},
        trust_env=False,
    )
    assert allowed.status_code == 200
    assert "https://evil.example" in server.stderr()


# --- options -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--public-url", "events.shop.example"], "expected http(s)://HOST[:PORT]"),
        (["--public-url", "https://events.shop.example/v1"], "only the scheme, host and port"),
        (["--analytics-js", "/nonexistent/umd"], "give the dist/umd folder"),
    ],
)
def test_bad_browser_options_exit_2_with_the_reason(
    args: list[str], message: str, tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "attentive_router", "serve", "--write-key", KEY]
    command += ["--no-deliver", "--queue", str(tmp_path / "q.db"), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert message in result.stderr


def test_public_url_and_request_base() -> None:
    public = parse_public_url("https://events.shop.example:8443/")
    assert public == PublicBase("https", "events.shop.example:8443")
    headers = {"host": "10.0.0.5:8088", "x-forwarded-proto": "https, http"}
    assert request_base(headers, "http", public, trust_proxy=True) == public
    assert request_base(headers, "http", None, trust_proxy=False) == PublicBase(
        "http", "10.0.0.5:8088"
    )
    forwarded = {**headers, "x-forwarded-host": "events.shop.example, proxy.internal"}
    assert request_base(forwarded, "http", None, trust_proxy=True) == PublicBase(
        "https", "events.shop.example"
    )
    with pytest.raises(PublicUrlError):
        parse_public_url("ftp://events.shop.example")
    document = settings_document("k", PublicBase("https", "e.example"))
    assert document["integrations"]["Segment.io"]["apiHost"] == "e.example/v1"


def test_once_per_minute_counts_what_it_did_not_log() -> None:
    throttle = OncePerMinute()
    assert throttle.due("a", now=0.0) == 1
    assert throttle.due("a", now=10.0) is None
    assert throttle.due("b", now=10.0) == 1
    assert throttle.due("a", now=30.0) is None
    assert throttle.due("a", now=61.0) == 3


def test_the_serving_line_shows_the_library_folder_unredacted(
    server: ServeProcess, umd: Path
) -> None:
    serving = [line for line in server.stderr().splitlines() if '"message":"serving"' in line]
    assert serving, server.stderr()
    assert f'"analytics_js":"{umd}"' in serving[0]


def test_paths_with_a_scope_are_not_taken_for_addresses() -> None:
    path = "/srv/site/node_modules/@segment/analytics-next/dist/umd"
    assert redact(path) == path
    assert redact("ada@example.com wrote") == "[email] wrote"
    assert redact("mailto:ada@shop") == "mailto:[email]"
