"""Drive headless Chromium over the DevTools protocol through a pipe (stdlib only).

``--remote-debugging-pipe`` makes Chromium read NUL-terminated JSON commands from file descriptor
3 and write replies and events to descriptor 4: no websocket, no port, nothing else to install.
:func:`check_page` loads a page and reports what a person would notice: script errors, console
errors, failed loads, requests leaving the machine, and what the page drew.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INSTALL_HINT = (
    "headless Chromium is needed for the report's browser test: install Debian's package with "
    "'apt-get update && apt-get install -y chromium' (make test does this when it runs as root)"
)

# what the page drew: tables with rows, and each plot's SVG with a real size and drawn content
PROBE = """(() => {
  const figs = [...document.querySelectorAll('figure.plot')].map(f => {
    const svg = f.querySelector('svg');
    const r = svg ? svg.getBoundingClientRect() : null;
    return {name: f.dataset.plot || '', svg: !!svg, width: r ? r.width : 0, height: r ? r.height : 0,
            shapes: svg ? svg.querySelectorAll('path, rect, line, polyline, use').length : 0,
            texts: svg ? svg.querySelectorAll('text').length : 0};
  });
  const tables = [...document.querySelectorAll('table')].map(t => ({
    cls: t.className, rows: t.querySelectorAll('tbody tr').length,
    width: t.getBoundingClientRect().width}));
  const sections = [...document.querySelectorAll('section[id], footer[id]')].map(s => s.id);
  return JSON.stringify({title: document.title, figures: figs, tables: tables, sections: sections,
                         scripts: document.scripts.length,
                         height: document.documentElement.scrollHeight});
})()"""


@dataclass
class PageCheck:
    errors: list[str] = field(default_factory=list)  # exceptions, console errors, failed loads
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    dom: dict[str, Any] = field(default_factory=dict)
    screenshot: Path | None = None

    @property
    def remote_requests(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(("file:", "data:", "about:"))]


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """One headless Chromium process; use as a context manager."""

    def __init__(self, binary: str, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(prefix="qs-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        cmd = [binary, "--headless=new", "--remote-debugging-pipe", "--no-sandbox",
               "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
               "--no-default-browser-check", "--disable-extensions", "--mute-audio",
               "--hide-scrollbars", f"--user-data-dir={self._profile.name}", "about:blank"]

        def wire() -> None:  # in the child: the protocol's fds 3 (in) and 4 (out)
            high_r, high_w = os.dup(to_browser_r), os.dup(from_browser_w)  # never clobber 3/4 early
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        # fds 3 and 4 are kept open in the child (closing the others happens after ``wire``)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, pass_fds=(3, 4), preexec_fn=wire)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buf = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            self.send("Browser.close")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._profile.cleanup()

    # --- protocol ----------------------------------------------------------------------

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None) -> dict[str, Any]:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, session: str | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        for i, ev in enumerate(self.events):
            if ev.get("method") == method and (session is None or ev.get("sessionId") == session):
                return self.events.pop(i)
        while True:
            ev = self._read(deadline)
            if ev.get("method") == method and (session is None or ev.get("sessionId") == session):
                return ev
            self.events.append(ev)

    def _read(self, deadline: float) -> dict[str, Any]:
        import select

        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe (did it crash?)")
                self._buf += chunk
        raw, _, self._buf = self._buf.partition(b"\0")
        return json.loads(raw)

    # --- one page ------------------------------------------------------------------------

    def check_page(self, url: str, screenshot: Path | None = None, width: int = 1280,
                   height: int = 900) -> PageCheck:
        """Open ``url`` in a new tab, wait for load, collect errors, probe the DOM, screenshot."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                  session=session)
        self.events = [e for e in self.events if e.get("sessionId") != session]
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_for("Page.loadEventFired", session)
        # let late console messages and rendering settle: one round trip through the renderer
        self.send("Runtime.evaluate", {"expression": "new Promise(r => requestAnimationFrame("
                                       "() => setTimeout(r, 50)))", "awaitPromise": True},
                  session=session)
        check = PageCheck()
        probe = self.send("Runtime.evaluate", {"expression": PROBE, "returnByValue": True},
                          session=session)
        check.dom = json.loads(probe["result"]["value"])
        if screenshot is not None:
            shot = self.send("Page.captureScreenshot", {"format": "png"}, session=session)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            check.screenshot = screenshot
        for ev in self.events:
            if ev.get("sessionId") != session:
                continue
            method, p = ev.get("method"), ev.get("params", {})
            if method == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                text = d.get("exception", {}).get("description") or d.get("text", "")
                check.errors.append(f"uncaught exception: {text}")
            elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                args = " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
                check.errors.append(f"console.{p['type']}: {args}")
            elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
                check.errors.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
            elif method == "Network.requestWillBeSent":
                check.requests.append(p["request"]["url"])
            elif method == "Network.loadingFailed":
                check.errors.append(f"failed to load: {p.get('errorText')}")
        self.events = [e for e in self.events if e.get("sessionId") != session]
        self.send("Target.closeTarget", {"targetId": target})
        return check
