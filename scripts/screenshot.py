#!/usr/bin/env python
"""Screenshots of a running dashboard (``make demo``), for the README and for looking at it.

    python scripts/screenshot.py                         # the fleet overview -> docs/screenshot.png
    python scripts/screenshot.py --all --out test-artifacts/demo

Drives Debian's chromium through Playwright (it cannot fetch a browser of its own here).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Pages worth looking at besides the overview: path -> file name.
PAGES = {
    "/hosts/ocr-east-1/": "host-ocr-east-1.png",
    "/hosts/ocr-lab/": "host-ocr-lab.png",
    "/models/": "models.png",
    "/requests/": "requests.png",
    "/audit/": "audit.png",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--user", default="operator")
    parser.add_argument("--password", default="demo-operator-pass")
    parser.add_argument("--out", default=None, help="a folder (default: docs/ for the overview only)")
    parser.add_argument("--all", action="store_true", help="also the host, model, request and audit pages")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    out = Path(args.out) if args.out else ROOT / "docs"
    out.mkdir(parents=True, exist_ok=True)
    base = args.url.rstrip("/")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 760})
        page.goto(f"{base}/accounts/login/")
        page.fill("input[name=username]", args.user)
        page.fill("input[name=password]", args.password)
        page.click("button[type=submit], input[type=submit]")
        page.wait_for_load_state("networkidle")
        if "/accounts/login/" in page.url:
            print(f"login as {args.user} failed", file=sys.stderr)
            return 1
        page.goto(f"{base}/")
        page.wait_for_load_state("networkidle")
        name = "screenshot.png" if not args.out else "fleet.png"
        page.screenshot(path=str(out / name))
        print(out / name)
        if args.all:
            for path, file_name in PAGES.items():
                page.goto(f"{base}{path}")
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(out / file_name), full_page=True)
                print(out / file_name)
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
