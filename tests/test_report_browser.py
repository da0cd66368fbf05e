"""Open a generated report in headless Chromium: no console errors, no network, every figure
drawn with data, the recommendation table on the first screen, and screenshots under
test-artifacts/ (the full page, and the first screen a reader sees on opening the file).

Chromium is driven over the DevTools protocol on ``--remote-debugging-pipe`` (file
descriptors 3 and 4, NUL-terminated JSON), which needs only the standard library: no
websocket client, no port to race for. Missing Chromium fails under ``CI=true`` and skips
elsewhere.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from report_fixtures import built_report

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
    # WebGL in software: Plotly's 3-D scatter and parallel coordinates draw with WebGL, and
    # --disable-gpu alone leaves no WebGL at all in recent Chromium.
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
    "--window-size=1400,1000",
)
WINDOW = (1400, 1000)  # the window above: the first screen a reader sees
# What the first screen shows: section headings and table header cells whose top edge lies
# inside the window, and the rows of the first table.
FIRST_SCREEN = """(() => {
  const h = window.innerHeight;
  const inside = el => { const r = el.getBoundingClientRect(); return r.top >= 0 && r.top < h; };
  const first = document.querySelector('main section table');
  return {
    headings: Array.from(document.querySelectorAll('h2, h3')).filter(inside)
      .map(e => e.textContent),
    header: first ? Array.from(first.querySelectorAll('th')).map(e => e.textContent) : [],
    rows: first ? Array.from(first.querySelectorAll('tbody tr')).filter(inside)
      .map(r => Array.from(r.cells).map(c => c.textContent)) : [],
  };
})()"""
# A figure counts as drawn when Plotly made its SVG and has at least one trace with data.
CHECK_FIGURES = """(() => {
  const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
  return plots.map(gd => ({
    id: gd.id,
    svg: !!gd.querySelector('.main-svg'),
    traces: (gd._fullData || []).length,
    points: (gd._fullData || []).reduce((n, t) => n + (t.x ? t.x.length :
             (t.dimensions ? t.dimensions.length : 0)), 0),
    type: (gd._fullData || []).map(t => t.type).join(','),
    gl: !!gd.querySelector('canvas'),
  }));
})()"""


def chromium_path() -> str | None:
    env = os.environ.get("SALNAS_CHROMIUM")
    if env:
        return env if Path(env).is_file() else shutil.which(env)
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


@pytest.fixture(scope="module")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        message = ("Chromium not found (install Debian's 'chromium' package, or set "
                   "SALNAS_CHROMIUM to a Chrome/Chromium binary)")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message + "; CI needs it for the browser test")
        pytest.skip(message)
    return path


class DevTools:
    """A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe``."""

    def __init__(self, binary: str, profile: Path) -> None:
        # Pipes at high descriptors first, so the dup2 onto 3 and 4 never clobbers one.
        to_r, to_w = (fcntl.fcntl(fd, fcntl.F_DUPFD, 20) for fd in os.pipe())
        from_r, from_w = (fcntl.fcntl(fd, fcntl.F_DUPFD, 20) for fd in os.pipe())

        def child() -> None:  # chromium reads commands on fd 3 and writes on fd 4
            os.dup2(to_r, 3)
            os.dup2(from_w, 4)

        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.stderr,
            pass_fds=(3, 4, to_r, from_w), preexec_fn=child)
        for fd in (to_r, from_w):
            os.close(fd)
        self._out = os.fdopen(to_w, "wb", buffering=0)
        self._in = os.fdopen(from_r, "rb", buffering=0)
        self._next = 0
        self.events: list[dict[str, Any]] = []
        self._replies: dict[int, dict[str, Any]] = {}
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self) -> None:
        buf = b""
        while True:
            chunk = self._in.read(1 << 16)
            if not chunk:
                self._queue.put(None)
                return
            buf += chunk
            *messages, buf = buf.split(b"\0")
            for m in messages:
                self._queue.put(json.loads(m))

    def _pump(self, timeout: float) -> None:
        msg = self._queue.get(timeout=timeout)
        if msg is None:
            raise RuntimeError("Chromium closed the DevTools pipe: " + self.log())
        if "id" in msg:
            self._replies[msg["id"]] = msg
        else:
            self.events.append(msg)

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None, timeout: float = 60.0) -> dict[str, Any]:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self._out.write(json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while self._next not in self._replies:
            self._pump(max(0.01, deadline - time.monotonic()))
        reply = self._replies.pop(self._next)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_for(self, method: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events:
                if e.get("method") == method:
                    return e
            self._pump(max(0.01, deadline - time.monotonic()))

    def log(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-3000:]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close", timeout=10)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._out.close()
        self.stderr.close()


def inspect_page(binary: str, page: Path, screenshot: Path, timeout: float = 90.0,
                 first_screen: Path | None = None) -> dict[str, Any]:
    """Load ``page`` in headless Chromium; returns figures, console errors, requests, and
    what the first screen shows (``first_screen``: also a screenshot of the top
    ``WINDOW``, what a reader sees on opening the file)."""
    with tempfile.TemporaryDirectory(prefix="salnas-chromium-") as profile:
        dt = DevTools(binary, Path(profile))
        try:
            target = dt.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = dt.send("Target.attachToTarget", {"targetId": target, "flatten": True}
                              )["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                dt.send(f"{domain}.enable", session=session)
            dt.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
            dt.wait_for("Page.loadEventFired", timeout)
            deadline = time.monotonic() + timeout
            while True:  # Plotly draws asynchronously: wait until every figure has its SVG
                figures = dt.send("Runtime.evaluate", {"expression": CHECK_FIGURES,
                                                       "returnByValue": True},
                                  session=session)["result"]["value"]
                if (figures and all(f["svg"] for f in figures)) or time.monotonic() > deadline:
                    break
                time.sleep(0.25)
            time.sleep(0.5)  # let WebGL traces finish and late console messages arrive
            visible = dt.send("Runtime.evaluate", {"expression": FIRST_SCREEN,
                                                   "returnByValue": True},
                              session=session)["result"]["value"]
            if first_screen is not None:
                shot = dt.send("Page.captureScreenshot", {
                    "format": "png", "clip": {"x": 0, "y": 0, "width": WINDOW[0],
                                              "height": WINDOW[1], "scale": 1}},
                    session=session, timeout=timeout)
                first_screen.parent.mkdir(parents=True, exist_ok=True)
                first_screen.write_bytes(base64.b64decode(shot["data"]))
            metrics = dt.send("Page.getLayoutMetrics", session=session)
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            shot = dt.send("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size["width"],
                         "height": min(size["height"], 16000), "scale": 1}},
                session=session, timeout=timeout)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            errors = []
            requests = []
            for e in dt.events:
                p = e.get("params", {})
                if e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in (
                        "error", "assert"):
                    errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                           for a in p.get("args", [])))
                elif e.get("method") == "Runtime.exceptionThrown":
                    details = p.get("exceptionDetails", {})
                    errors.append(details.get("exception", {}).get("description")
                                  or details.get("text", "exception"))
                elif e.get("method") == "Log.entryAdded" and p.get("entry", {}).get(
                        "level") == "error":
                    errors.append(p["entry"].get("text", ""))
                elif e.get("method") == "Network.requestWillBeSent":
                    requests.append(p.get("request", {}).get("url", ""))
            return {"figures": figures, "errors": errors, "requests": requests,
                    "height": size["height"], "first_screen": visible}
        finally:
            dt.close()


@pytest.mark.slow
def test_report_renders_in_chromium(chromium: str,
                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    out, page = built_report(tmp_path_factory.getbasetemp() / "report-run")
    assert not page.problems
    shot = ARTIFACTS / "report-fake-run.png"
    first = ARTIFACTS / "report-first-screen.png"
    result = inspect_page(chromium, out, shot, first_screen=first)
    assert not result["errors"], result["errors"]
    assert result["figures"], "no Plotly figure on the page"
    assert len(result["figures"]) == page.n_figures
    for f in result["figures"]:
        assert f["svg"], f"figure {f['id']} was not drawn: {f}"
        assert f["traces"] > 0 and f["points"] > 0, f"figure {f['id']} has no data: {f}"
    # Only the file itself and data: URIs: a report must work offline.
    outside = [u for u in result["requests"] if not u.startswith(("file:", "data:"))]
    assert not outside, outside
    assert shot.stat().st_size > 10_000
    # The first screen answers the analyst's question: the recommendation table, its header
    # and its rows (the best model overall and per budget) are visible without scrolling.
    screen = result["first_screen"]
    assert screen["headings"][0] == "Which model to use", screen
    assert {"budget", "model id", "CC", "NSS", "KLD", "latency (ms)", "resolution"} <= set(
        screen["header"])
    assert screen["rows"] and screen["rows"][0][0] == "none (best overall)"
    assert any(r[0].startswith("FLOPs ≤") for r in screen["rows"])  # the config's budget
    assert first.stat().st_size > 10_000


@pytest.mark.slow
def test_report_with_a_shared_plotlyjs_renders(chromium: str, tmp_path: Path,
                                               tmp_path_factory: pytest.TempPathFactory
                                               ) -> None:
    """--plotlyjs directory: the page loads plotly.min.js from beside it (file:, offline)."""
    from salnas.analysis.report import write_plotlyjs

    _, page = built_report(tmp_path_factory.getbasetemp() / "report-run")
    out = tmp_path / "shared" / "report.html"
    out.parent.mkdir()
    out.write_text(page.render("directory"), encoding="utf-8")
    write_plotlyjs(out.parent)
    result = inspect_page(chromium, out, tmp_path / "shot.png")
    assert not result["errors"], result["errors"]
    assert len(result["figures"]) == page.n_figures
    assert all(f["svg"] and f["points"] > 0 for f in result["figures"])
    assert any(u.endswith("/plotly.min.js") and u.startswith("file:")
               for u in result["requests"])
