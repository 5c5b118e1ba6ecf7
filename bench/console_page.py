"""The browser half of ``bench/console.py``: a dispatcher logged in to the console in Debian's Chromium, noting
(with a MutationObserver) the wall-clock millisecond each incident's row appears in the queue. Its own process:
it imports nothing of the project (whose stand-ins install trio-asyncio's loop policy, which Playwright's
sync API cannot run under). Prints "logged in" once ready, then, after ``seconds``, the arrivals as JSON."""

from __future__ import annotations

import json
import shutil
import sys

WATCH = """() => {
  window.arrived = {};
  new MutationObserver(() => {
    const now = Date.now();
    for (const row of document.querySelectorAll('#queue tbody tr[data-id]')) {
      if (!(row.dataset.id in window.arrived)) window.arrived[row.dataset.id] = now;
    }
  }).observe(document.querySelector('#queue tbody'), { childList: true });
}"""


def watch(url: str, name: str, password: str, seconds: float) -> dict[str, int]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"),
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url + "/console/")
        page.fill("#login-name", name)
        page.fill("#login-password", password)
        page.click("#login-form button")
        page.wait_for_selector("#queue tbody tr")
        page.evaluate(WATCH)
        print("logged in", flush=True)
        page.wait_for_timeout(seconds * 1000)
        arrived: dict[str, int] = page.evaluate("() => window.arrived")
        browser.close()
    return arrived


if __name__ == "__main__":
    print(json.dumps(watch(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]))))
