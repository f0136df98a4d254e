"""The HTML report in a real browser: headless Chromium lays out the MathML, fetches nothing.

Chromium is driven through the DevTools protocol over a pipe
(``--remote-debugging-pipe``: JSON messages separated by NUL bytes on file
descriptors 3 and 4), so no websocket library is needed. On CI (``CI=true``)
a missing Chromium fails the test; elsewhere it skips.
"""

import base64
import json
import os
import select
import shutil
import subprocess
import time

import pytest

from bnproof.report import write_html

pytestmark = pytest.mark.browser

#: Seconds to wait for any one DevTools reply or for a page to load. Generous:
#: the machine may be busy and a cold Chromium start takes a few seconds.
TIMEOUT = 60.0

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--remote-debugging-pipe",
    # Whatever a page asks for, no name resolves: nothing can leave the machine
    # even if the page tried (the test still sees and reports the attempt).
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--window-size=1200,900",
]

#: JavaScript measuring the layout: every <math> box, and whether fractions
#: and square roots are laid out as such (numerator above denominator, the
#: radical wider than its content). Without MathML support these elements
#: are inline boxes on one line and the checks fail.
MEASURE = """(() => {
  const box = e => { const r = e.getBoundingClientRect(); return [r.width, r.height]; };
  const maths = [...document.querySelectorAll('math')].map(box);
  const fracs = [...document.querySelectorAll('mfrac')].map(f => {
    const [num, den] = f.children;
    return num.getBoundingClientRect().bottom <= den.getBoundingClientRect().top + 1;
  });
  const roots = [...document.querySelectorAll('msqrt')].map(s =>
    s.getBoundingClientRect().width > s.firstElementChild.getBoundingClientRect().width);
  return JSON.stringify({maths, fracs, roots, mathml: typeof MathMLElement});
})()"""


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class DevTools:
    """A minimal DevTools protocol client over ``--remote-debugging-pipe``."""

    def __init__(self, executable, profile):
        to_child_r, self._write = os.pipe()
        self._read, from_child_w = os.pipe()

        def fds():  # runs in the child before exec: Chromium expects fds 3 and 4
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        self.proc = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=fds, pass_fds=(3, 4),
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next_id = 0
        self.events = []

    def _message(self, deadline):
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method, session=None, **params):
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method, session):
        deadline = time.monotonic() + TIMEOUT
        for event in self.events:
            if event.get("method") == method and event.get("sessionId") == session:
                self.events.remove(event)
                return event
        while True:
            event = self._message(deadline)
            if event.get("method") == method and event.get("sessionId") == session:
                return event
            self.events.append(event)

    def close(self):
        try:
            self.send("Browser.close")
        except (OSError, EOFError, TimeoutError, RuntimeError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._read)
        os.close(self._write)


def devtools_session(tmp_path_factory):
    """Yield a :class:`DevTools` connected to a fresh headless Chromium."""
    executable = _chromium()
    if executable is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is not installed; .ci/run installs Debian's chromium package")
        pytest.skip("Chromium is not installed (CI installs it)")
    devtools = DevTools(executable, tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield devtools
    finally:
        devtools.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    yield from devtools_session(tmp_path_factory)


def render(browser, path, screenshot=None):
    """Load ``path`` in a fresh tab; return (layout measures, requested URLs)."""
    target = browser.send("Target.createTarget", url="about:blank")["targetId"]
    session = browser.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    try:
        browser.send("Page.enable", session)
        browser.send("Network.enable", session)
        browser.events.clear()
        browser.send("Page.navigate", session, url=path.as_uri())
        browser.wait_for("Page.loadEventFired", session)
        measured = browser.send("Runtime.evaluate", session, expression=MEASURE,
                                returnByValue=True)
        layout = json.loads(measured["result"]["value"])
        if screenshot is not None:
            size = browser.send("Page.getLayoutMetrics", session)["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"],
                    "scale": 1}
            shot = browser.send("Page.captureScreenshot", session, format="png", clip=clip,
                                captureBeyondViewport=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        urls = [e["params"]["request"]["url"] for e in browser.events
                if e.get("method") == "Network.requestWillBeSent"
                and e.get("sessionId") == session]
        return layout, urls
    finally:
        browser.send("Target.closeTarget", targetId=target)


def _offline(urls):
    return [u for u in urls if not u.startswith(("file:", "data:", "about:"))]


def test_report_math_is_laid_out_and_nothing_is_fetched(browser, tmp_path):
    from test_report import sample_data

    page = write_html(sample_data(), tmp_path)
    shot = tmp_path / "report.png"
    layout, urls = render(browser, page, screenshot=shot)
    assert layout["mathml"] == "function", "this Chromium has no MathML Core support"
    n_math = page.read_text(encoding="utf-8").count("<math ")
    assert len(layout["maths"]) == n_math >= 5
    assert all(w > 0 and h > 0 for w, h in layout["maths"]), layout["maths"]
    assert layout["fracs"] and all(layout["fracs"]), "a fraction is not stacked"
    assert layout["roots"] and all(layout["roots"]), "a square root has no radical"
    assert _offline(urls) == [], urls
    assert urls and urls[0] == page.as_uri()
    assert shot.read_bytes().startswith(b"\x89PNG")


def test_layout_check_fails_without_mathml(browser, tmp_path):
    # Negative control: the same fraction outside a <math> element is plain
    # inline HTML, so the stacking check must report it as not laid out.
    page = tmp_path / "nomath.html"
    page.write_text(
        "<!DOCTYPE html><html><body><p><mfrac><mi>a</mi><mi>b</mi></mfrac></p>"
        '<math display="block"><mfrac><mi>a</mi><mi>b</mi></mfrac></math></body></html>',
        encoding="utf-8",
    )
    layout, _ = render(browser, page)
    assert layout["fracs"] == [False, True]


def test_network_check_sees_a_request(browser, tmp_path):
    # Negative control: a page that does fetch something is caught.
    page = tmp_path / "fetches.html"
    page.write_text(
        '<!DOCTYPE html><html><body><img src="http://example.invalid/x.png"></body></html>',
        encoding="utf-8",
    )
    _, urls = render(browser, page)
    assert _offline(urls) == ["http://example.invalid/x.png"]
