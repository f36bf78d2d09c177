"""A real browser for tests: Debian's headless Chromium, driven over the DevTools protocol on a pipe.

`open_page(path)` starts `chromium --headless --remote-debugging-pipe` (fds 3 and 4 carry NUL-terminated JSON
messages, so no websocket library is needed), opens the file, waits for its load event and returns a `Page`
that has every console message, uncaught exception, log entry and network request seen while loading; it can
evaluate JavaScript and take a screenshot. Every wait has a deadline; the browser is killed with its children
when the page is closed.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
]


def chromium() -> str | None:
    """The Chromium binary on PATH (Debian's package `chromium`), or None."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


class BrowserError(RuntimeError):
    pass


@dataclass
class Page:
    process: subprocess.Popen
    to_browser: int
    from_browser: int
    session: str = ""
    console: list[dict[str, Any]] = field(default_factory=list)
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    _buffer: bytes = b""
    _next_id: int = 0
    _events: list[dict[str, Any]] = field(default_factory=list)

    # -------------------------------------------------------------- protocol

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: bool = True, timeout: float = 30.0
    ) -> dict[str, Any]:
        """Send one command and return its result; raise BrowserError on an error or past the deadline."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline, f"{method} answered nothing within {timeout:g}s")
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._record(reply)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        for index, event in enumerate(self._events):
            if event.get("method") == method:
                return self._events.pop(index)
        deadline = time.monotonic() + timeout
        while True:
            event = self._read(deadline, f"no {method} within {timeout:g}s")
            self._record(event)
            if event.get("method") == method:
                self._events.remove(event)
                return event

    def drain(self, seconds: float) -> None:
        """Read events for a while (console messages that come after the load event)."""
        deadline = time.monotonic() + seconds
        with contextlib.suppress(TimeoutError):
            while True:
                self._record(self._read(deadline, ""))

    def _read(self, deadline: float, why: str) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(why)
            ready, _, _ = select.select([self.from_browser], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.from_browser, 1 << 20)
            if not chunk:
                raise BrowserError(f"chromium closed the pipe (exit status {self.process.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def _record(self, event: dict[str, Any]) -> None:
        method = event.get("method", "")
        params = event.get("params", {})
        if method == "Runtime.consoleAPICalled":
            self.console.append(
                {
                    "type": params.get("type"),
                    "text": " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])),
                }
            )
        elif method == "Runtime.exceptionThrown":
            self.exceptions.append(params.get("exceptionDetails", {}))
        elif method == "Log.entryAdded":
            self.log.append(params.get("entry", {}))
        elif method == "Network.requestWillBeSent":
            self.requests.append(params.get("request", {}).get("url", ""))
        else:
            self._events.append(event)

    # -------------------------------------------------------------- what tests use

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries, as text."""
        out = [f"console.{c['type']}: {c['text']}" for c in self.console if c["type"] in ("error", "assert")]
        out += [f"exception: {e.get('text')} {e.get('exception', {}).get('description', '')}" for e in self.exceptions]
        out += [
            f"log {e.get('source')}: {e.get('text')} {e.get('url', '')}" for e in self.log if e.get("level") == "error"
        ]
        return out

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"evaluate: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path, width: int = 1400, height: int = 1600, top: float = 0) -> None:
        """A PNG of width x height CSS pixels of the page, from `top` down."""
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        clip = {"x": 0, "y": top, "width": width, "height": height, "scale": 1}
        data = self.send("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True})
        path.write_bytes(base64.b64decode(data["data"]))


@contextlib.contextmanager
def open_page(path: Path, width: int = 1400, height: int = 1000, timeout: float = 60.0) -> Iterator[Page]:
    """The page at path, loaded in headless Chromium; the browser is stopped on leaving."""
    binary = chromium()
    if binary is None:
        raise BrowserError("chromium is not installed (apt-get install chromium)")
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    profile = tempfile.mkdtemp(prefix="vllm-fleet-chromium-")

    def child_fds() -> None:
        # The DevTools pipe is fd 3 (commands in) and fd 4 (replies out) in the browser. Both are moved out of the
        # way first, so that neither overwrites the other whatever numbers the pipes got.
        commands = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
        replies = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
        os.dup2(commands, 3)
        os.dup2(replies, 4)

    process = subprocess.Popen(
        [binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=child_fds,
        pass_fds=(3, 4),
        start_new_session=True,
    )
    os.close(to_child_r)
    os.close(from_child_w)
    page = Page(process, to_child_w, from_child_r)
    try:
        target = page.send("Target.createTarget", {"url": "about:blank"}, session=False, timeout=timeout)
        attached = page.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, session=False, timeout=timeout
        )
        page.session = attached["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            page.send(f"{domain}.enable", timeout=timeout)
        page.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        page.send("Page.navigate", {"url": path.resolve().as_uri()}, timeout=timeout)
        page.wait_for("Page.loadEventFired", timeout=timeout)
        page.drain(0.5)
        yield page
    finally:
        with contextlib.suppress(OSError, BrowserError, TimeoutError):
            os.write(page.to_browser, json.dumps({"id": 10**6, "method": "Browser.close"}).encode() + b"\0")
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # what it started (zygote, renderers) goes with it
        os.close(page.to_browser)
        os.close(page.from_browser)
        shutil.rmtree(profile, ignore_errors=True)
