"""What the browser tests run on: Chromium under Playwright, pages, a TLS front, the README.

Nothing here is a stand-in: the browser is a real Chromium, the JavaScript is Segment's own
(``@segment/analytics-next`` and ``@segment/snippet`` from npm, in ``tests/browser/node_modules``,
installed by ``make browser``), the pages come from a real HTTP server on 127.0.0.1, and the TLS
front is a real TLS listener (what a load balancer or nginx does in front of ``serve``). The
browser resolves no host name at all: every address it uses is 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
NODE_MODULES = ROOT / "tests" / "browser" / "node_modules"
ANALYTICS_NEXT = NODE_MODULES / "@segment" / "analytics-next"
UMD = ANALYTICS_NEXT / "dist" / "umd"
"""The folder ``serve --analytics-js`` takes: the standalone build and its lazy bundles."""
SNIPPET = NODE_MODULES / "@segment" / "snippet"
README = ROOT / "README.md"

CHROMIUM_FLAGS = (
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    # The TLS front's certificate is self-signed; requests that outlive their page (keepalive)
    # are made by the browser process, which does not see the context's own setting.
    "--ignore-certificate-errors",
    # Every host name fails to resolve: the browser can reach 127.0.0.1 and nothing else.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)

README_HOST = "events.shop.example"
README_KEY = "YOUR_WRITE_KEY"

T = TypeVar("T")


def chromium_path() -> str | None:
    """Debian's Chromium, if installed."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def missing_parts(*, analytics_js: bool = True) -> list[str]:
    """What the browser tests need and this machine lacks (``make browser`` installs it).

    ``analytics_js=False``: only the browser (the console's pages need no npm package).
    """
    missing = []
    if chromium_path() is None:
        missing.append("Debian's chromium package")
    try:
        import playwright.sync_api  # noqa: F401, PLC0415
    except ImportError:
        missing.append("the playwright Python package")
    if analytics_js and (
        not (UMD / "standalone.js").is_file() or not (SNIPPET / "package.json").is_file()
    ):
        missing.append("@segment/analytics-next and @segment/snippet in tests/browser")
    return missing


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(what: str, check: Callable[[], T | None], timeout: float, tab: Tab | None) -> T:
    """Poll ``check`` until it returns something; on timeout fail with the tab's logs.

    While it waits, the tab's events keep coming in: Playwright's synchronous API delivers
    them only while it is called, so the pause between polls is the page's, not ``time.sleep``.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            logs = "" if tab is None else "\n" + tab.explain()
            raise AssertionError(f"{what}: not within {timeout:g} s{logs}")
        if tab is None:
            time.sleep(0.05)
        else:
            tab.pause(0.05)


# --- the README's browser section -----------------------------------------------------------------


def readme_block(language: str, marker: str) -> str:
    """The README's first fenced ``language`` block that contains ``marker``."""
    text = README.read_text(encoding="utf-8")
    for match in re.finditer(rf"```{language}\n(.*?)```", text, re.DOTALL):
        if marker in match.group(1):
            return match.group(1)
    raise AssertionError(f"README.md has no ```{language} block with {marker!r}")


def readme_snippet(host: str, write_key: str) -> str:
    """The snippet as the README shows it, with the site's own host and write key put in."""
    block = readme_block("html", "SNIPPET_VERSION")
    return block.replace(README_HOST, host).replace(README_KEY, write_key)


def readme_npm_load(cdn_url: str, write_key: str) -> str:
    """The README's ``AnalyticsBrowser.load`` example as a page script (the UMD build's global
    instead of the ``import`` a bundler would resolve)."""
    block = readme_block("js", "AnalyticsBrowser.load")
    block = block.replace(f"https://{README_HOST}", cdn_url).replace(README_KEY, write_key)
    block = block.replace(
        'import { AnalyticsBrowser } from "@segment/analytics-next";',
        "const { AnalyticsBrowser } = window.AnalyticsNext;",
    )
    return block.replace("export const analytics =", "window.analytics =")


def stock_snippet(host: str, write_key: str) -> str:
    """The snippet as Segment's ``@segment/snippet`` package renders it (minified, with page())."""
    script = (
        "const s = require(process.argv[1]);"
        "process.stdout.write(s.min({host: process.argv[2], apiKey: process.argv[3], page: true}))"
    )
    node = shutil.which("node")
    assert node is not None, "node is needed to render the snippet"
    result = subprocess.run(
        [node, "-e", script, str(SNIPPET), host, write_key],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return result.stdout


# --- pages ----------------------------------------------------------------------------------------


class PageServer:
    """A site on ``http://127.0.0.1:PORT``: fixed pages and files by path, and what was asked."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[bytes, str]] = {}
        self.asked: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.asked.append(self.path)
                found = owner.pages.get(self.path.split("?", 1)[0])
                if found is None:
                    self.send_error(404)
                    return
                body, kind = found
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def page(self, path: str, html: str) -> str:
        """Serve ``html`` at ``path``; return its URL."""
        self.pages[path] = (html.encode(), "text/html; charset=utf-8")
        return self.origin + path

    def file(self, path: str, body: bytes, kind: str) -> str:
        """Serve ``body`` at ``path`` as ``kind``; return its URL."""
        self.pages[path] = (body, kind)
        return self.origin + path

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


def html_page(head: str, body: str = "", title: str = "Example Store") -> str:
    """A small page: ``head`` and ``body`` are inserted as given."""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>{head}</head>"
        f"<body><h1>{title}</h1>{body}</body></html>"
    )


# --- a TLS front ----------------------------------------------------------------------------------


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with openssl."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    openssl = shutil.which("openssl")
    assert openssl is not None, "openssl is needed for the TLS front"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


class TlsFront:
    """``https://127.0.0.1:PORT`` in front of a plain-HTTP port: TLS ends here, bytes go on.

    ``backend`` may be set (or changed) after the front is started; connections while it is
    None, or while nothing listens there, are closed at once, as a proxy with its upstream
    down would.
    """

    def __init__(self, cert: Path, key: Path) -> None:
        self.backend: int | None = None
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(cert, key)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self._context), self._loop
        )
        self._server = started.result(10)
        self.port: int = self._server.sockets[0].getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.backend is None:
                return
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(
                    "127.0.0.1", self.backend
                )
            except OSError:
                return
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def close(self) -> None:
        """Stop listening and stop the thread."""

        async def shut() -> None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


# --- the browser ----------------------------------------------------------------------------------


class Tab:
    """A page in its own browser context, with its network log and console kept for failures."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(ignore_https_errors=True, service_workers="block")
        self.page = self.context.new_page()
        self.network: list[str] = []
        self.console: list[str] = []
        self.page.on("request", lambda r: self.network.append(f"-> {r.method} {r.url}"))
        self.page.on(
            "response",
            lambda r: self.network.append(f"<- {r.status} {r.request.method} {r.url}"),
        )
        self.page.on(
            "requestfailed",
            lambda r: self.network.append(f"xx {r.method} {r.url}: {r.failure}"),
        )
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    def pause(self, seconds: float) -> None:
        """Let the page run for ``seconds`` while its events are recorded."""
        self.page.wait_for_timeout(seconds * 1000)

    def explain(self) -> str:
        """The network log and the console, for a failure message."""
        return (
            "network:\n  "
            + "\n  ".join(self.network)
            + "\nconsole:\n  "
            + "\n  ".join(self.console)
        )

    def requests_to(self, pattern: str) -> list[str]:
        """Network log lines whose URL matches ``pattern`` (a regular expression)."""
        return [line for line in self.network if re.search(pattern, line)]

    def close(self) -> None:
        """Close the page and its context."""
        with contextlib.suppress(Exception):
            self.context.close()


def require_parts(*, analytics_js: bool = True) -> None:
    """Skip the calling test module when ``missing_parts`` names something; fail in CI."""
    import pytest  # noqa: PLC0415 - the screenshot script uses this module without pytest

    missing = missing_parts(analytics_js=analytics_js)
    if not missing:
        return
    reason = "browser tests need " + ", ".join(missing) + " (run `make browser`)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}: in CI they must run")
    pytest.skip(reason)


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Playwright's driver with Debian's Chromium launched (``launch``), closed afterwards."""
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only once installed

    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            yield browser
        finally:
            browser.close()


def launch(playwright: Any) -> Any:
    """Debian's Chromium, headless, with Playwright's driver and no network but 127.0.0.1."""
    return playwright.chromium.launch(
        executable_path=chromium_path(),
        headless=True,
        args=list(CHROMIUM_FLAGS),
        env=dict(loopback_environment()),
    )


def loopback_environment() -> Mapping[str, str]:
    """The environment without proxies, so that nothing between the browser and 127.0.0.1."""
    names = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
    return {key: value for key, value in os.environ.items() if key not in names}


@contextlib.contextmanager
def opened(browser: Any) -> Iterator[Tab]:
    """A ``Tab`` that is closed afterwards."""
    tab = Tab(browser)
    try:
        yield tab
    finally:
        tab.close()
