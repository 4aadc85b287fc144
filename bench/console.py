"""The console's figures: time to first render of the volumes page with 5,000 volumes, and
the bytes the console transfers on first load.

1. ``volumed serve`` is started on a fresh temporary data directory, stopped, and N
   (default 5,000) volume rows are inserted into its SQLite file (``bench/paging.py``'s
   ``insert_rows``: rows only, no images; the listing never reads an image). A third of
   them get two tags and a realistic size and ``free_mb``, so rows differ as they would.
2. The server is started again and Debian's headless Chromium (``/usr/bin/chromium``,
   through Playwright, the console tests' flags) opens ``/console/#/volumes`` already
   signed in (the token put in ``sessionStorage`` before the page's scripts run) with the
   page size set to ``--page`` (default: all N on one page).
3. Time to first render: from the start of the navigation (``performance.now()`` = 0) to
   the first animation frame in which the table shows a screenful of rows (20; the page
   draws only the rows in and near the viewport, spacers stand for the rest). Then a jump
   to the end of the page (``scrollTo`` the bottom) until its last rows are drawn. Also
   when the listing was asked for and when its answer had arrived (Resource Timing
   ``startTime``, ``responseEnd``), and how long the page took from the parsed answer to
   the rows in the document (User Timing marks ``volumes-listed``, ``volumes-drawn``).
   Fresh browser context each round (nothing cached); ``--rounds`` (default 5), median,
   min and max printed.
4. Bytes on first load: Resource Timing ``transferSize`` (headers + body as sent on the
   wire, gzip where the server compressed) of the page and every asset, split into the
   console's own files and the API answers; signed out (the sign-in page) and signed in
   (the volumes page, whose listing is the API part). Also a reload in the same context,
   where every asset revalidates (304).

Usage: ``.venv/bin/python bench/console.py [-n 5000] [--page 5000] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import secrets
import sqlite3
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paging import Server, insert_rows  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

RENDERED = """(n) => {
  const rows = document.querySelectorAll('#volume-rows tr[data-uuid]').length;
  return rows >= n ? performance.now() : false;
}"""
TO_THE_END = """() => new Promise((resolve) => {
  const began = performance.now();
  window.scrollTo(0, document.body.scrollHeight);
  const check = () => {
    const spacer = document.querySelector('#volume-rows tr.spacer:last-child');
    if (spacer && spacer.style.height === '0px') {
      requestAnimationFrame(() => resolve(performance.now() - began));
    } else if (performance.now() - began > 30000) {
      resolve(NaN);
    } else requestAnimationFrame(check);
  };
  requestAnimationFrame(check);
})"""
SCREENFUL = 20
MARKS = """() => Object.fromEntries(
  performance.getEntriesByType('mark').map((m) => [m.name, m.startTime]))"""
RESOURCES = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const all = [nav, ...performance.getEntriesByType('resource')];
  return all.map((e) => ({ name: e.name, bytes: e.transferSize, end: e.responseEnd,
                           start: e.startTime,
                           body: e.encodedBodySize, decoded: e.decodedBodySize }));
}"""


def vary_rows(db_path: Path) -> None:
    db = sqlite3.connect(db_path)
    db.execute(
        'UPDATE volumes SET tags = \'["prod","web"]\', size_mb = 1024,'
        " free_mb = 1024 - (rowid * 37) % 1024 WHERE rowid % 3 = 0"
    )
    db.commit()
    db.close()


def open_context(browser: Browser, server: Server, page_size: int, signed_in: bool) -> Any:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    script = f"localStorage.setItem('volumed.pageSize', '{page_size}');"
    if signed_in:
        script += f"sessionStorage.setItem('volumed.token', '{server.token}');"
    context.add_init_script(script)
    return context


def kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def split(entries: list[dict[str, Any]]) -> tuple[int, int, int]:
    """(console bytes, API bytes, API decoded body bytes)."""
    api = [e for e in entries if "/v1/" in e["name"] or "/volumed/v1/" in e["name"]]
    own = [e for e in entries if e not in api]
    return (
        sum(e["bytes"] for e in own),
        sum(e["bytes"] for e in api),
        sum(e["decoded"] for e in api),
    )


def render_round(
    browser: Browser, server: Server, rows: int, page_size: int
) -> tuple[float, float, float, float, float]:
    context = open_context(browser, server, page_size, signed_in=True)
    page = context.new_page()
    page.goto(f"{server.url}/console/#/volumes")
    first = page.wait_for_function(RENDERED, arg=min(rows, SCREENFUL), polling="raf")
    first_ms = float(first.json_value())
    to_the_end_ms = float(page.evaluate(TO_THE_END))
    listing = [e for e in page.evaluate(RESOURCES) if "/v1/volumes" in e["name"]]
    marks = page.evaluate(MARKS)
    context.close()
    drawing = marks["volumes-drawn"] - marks["volumes-listed"]
    return first_ms, to_the_end_ms, float(listing[0]["end"]), float(listing[0]["start"]), drawing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=5000, help="volumes (default 5000)")
    parser.add_argument("--page", type=int, default=0, help="page size (default: n)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    page_size = args.page or args.n
    shown = min(args.n, page_size)

    with tempfile.TemporaryDirectory(prefix="volumed-bench-console-") as tmp:
        server = Server(Path(tmp) / "data", "bench-" + secrets.token_hex(16))
        server.start()
        server.stop()
        insert_rows(server.data_dir / "volumed.db", args.n)
        vary_rows(server.data_dir / "volumed.db")
        server.start()
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=FLAGS
                )
                render_round(browser, server, shown, page_size)  # warm the server
                rounds = [
                    render_round(browser, server, shown, page_size) for _ in range(args.rounds)
                ]

                context = open_context(browser, server, page_size, signed_in=False)
                page = context.new_page()
                page.goto(f"{server.url}/console/")
                page.wait_for_selector("#sign-in-form", state="visible")
                page.wait_for_load_state("networkidle")
                signed_out = split(page.evaluate(RESOURCES))
                context.close()

                context = open_context(browser, server, page_size, signed_in=True)
                page = context.new_page()
                page.goto(f"{server.url}/console/#/volumes")
                page.wait_for_function(RENDERED, arg=min(shown, SCREENFUL), polling="raf")
                signed_in = split(page.evaluate(RESOURCES))
                page.reload()
                page.wait_for_function(RENDERED, arg=min(shown, SCREENFUL), polling="raf")
                reloaded = split(page.evaluate(RESOURCES))
                context.close()
                browser.close()
        finally:
            server.stop()

    first = [r[0] for r in rounds]
    to_the_end = [r[1] for r in rounds]
    arrived = [r[2] for r in rounds]
    asked = [r[3] for r in rounds]
    drawing = [r[4] for r in rounds]
    print(f"{args.n} volumes, page size {page_size}: {shown} rows rendered")
    print(
        f"time to first render (the first screenful of rows): median "
        f"{statistics.median(first):.0f} ms, min {min(first):.0f} ms, max {max(first):.0f} ms "
        f"({args.rounds} rounds, cold browser context each)"
    )
    print(
        f"then a jump to the end of the page (its last rows drawn): median "
        f"{statistics.median(to_the_end):.0f} ms, max {max(to_the_end):.0f} ms"
    )
    print(
        f"  the listing was asked for at {statistics.median(asked):.0f} ms and had arrived "
        f"at {statistics.median(arrived):.0f} ms; from its parsed answer to the first rows "
        f"in the table {statistics.median(drawing):.0f} ms (medians)"
    )
    print(f"first load, signed out: {kib(signed_out[0])} (page, scripts, styles)")
    print(
        f"first load, signed in, volumes page: console files {kib(signed_in[0])}, "
        f"API answers {kib(signed_in[1])} ({kib(signed_in[2])} decoded)"
    )
    print(
        f"reload (assets revalidated, 304): console files {kib(reloaded[0])}, "
        f"API answers {kib(reloaded[1])}"
    )


if __name__ == "__main__":
    main()
