"""How big the report is and how long Chromium takes to open it.

    faultlines demo --out runs/all --finders all -q
    python benchmarks/report_load.py runs/all/report.html [--repeats 5] [--screenshots docs]

Opens the page in Debian's chromium (headless, through playwright) `--repeats` times in fresh
pages and prints the page's size and the median time from navigation to the load event
(`performance` navigation timing: parsing, the inlined images, plotly drawing the map). With
--screenshots, saves one PNG per section of the page into that folder (the README shows them).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
from pathlib import Path

from playwright.sync_api import sync_playwright

#: (file name, the element to capture) for --screenshots.
SECTIONS = (("report-overview.png", "#overview"), ("report-modes.png", "#modes-table"), ("report-map.png", "#map"),
            ("report-density.png", "#section-density"), ("report-perturb.png", "#section-perturb"),
            ("report-mode.png", "section.mode"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--screenshots", type=Path, default=None)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no chromium here: apt-get install chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        times = []
        for _ in range(args.repeats):
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(args.page.resolve().as_uri(), wait_until="load")
            times.append(page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd") / 1000)
            page.close()
        if args.screenshots is not None:
            args.screenshots.mkdir(parents=True, exist_ok=True)
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(args.page.resolve().as_uri(), wait_until="load")
            for name, selector in SECTIONS:
                target = page.locator(selector).first
                if target.count():
                    target.evaluate("e => { if (e.closest('details')) e.closest('details').open = true;"
                                    " e.querySelectorAll('details.members').forEach(d => { d.open = true; }); }")
                    box = page.evaluate(f"""(() => {{ const e = document.querySelector('{selector}');
                        let end = e.nextElementSibling; while (end && !/^H2$/.test(end.tagName)) end = end.nextElementSibling;
                        const top = e.getBoundingClientRect().top + window.scrollY;
                        const bottom = end ? end.getBoundingClientRect().top + window.scrollY : top + 800;
                        return [top, Math.min(bottom - top, 1400)]; }})()""")
                    page.screenshot(path=str(args.screenshots / name), full_page=True,
                                    clip={"x": 0, "y": box[0] - 10, "width": 1200, "height": box[1] + 10})
        browser.close()
    print(f"| page | size (MB) | load in Chromium (s, median of {args.repeats}) |")
    print("|---|---|---|")
    print(f"| {args.page} | {args.page.stat().st_size / 1e6:.1f} | {statistics.median(times):.2f} |")


if __name__ == "__main__":
    main()
