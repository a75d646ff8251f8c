"""The report in a real browser: Debian's chromium driven by playwright (no browser download).

Skipped, with the reason, where chromium or playwright is missing; `.ci/run` installs both.
"""

import csv
import io
import shutil

import pytest

import faultlines as fl

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium here (apt-get install chromium)")


@pytest.fixture(scope="module")
def page_file(clf, splits, tmp_path_factory):
    result = fl.scan(clf, splits.test, [fl.Spotlight(n_spotlights=3, alpha=None), fl.ErrorMixture(n_slices=2)], quiet=True)
    return result, fl.report(result, tmp_path_factory.mktemp("report") / "report.html")


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser, page_file):
    context = browser.new_context(viewport={"width": 1200, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.errors, page.requests = [], []
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("request", lambda r: page.requests.append(r.url))
    page.goto(page_file[1].as_uri(), wait_until="load")
    yield page
    context.close()


def test_the_page_loads_with_no_errors_and_no_network(page):
    assert page.errors == []
    assert [u for u in page.requests if not u.startswith(("file:", "data:", "blob:"))] == []
    assert page.locator("#embedding-map .main-svg").count() >= 1  # plotly drew the map
    # under a policy that forbids every request: a missed escape could still reach nothing
    policy = page.locator('meta[http-equiv="Content-Security-Policy"]').get_attribute("content")
    assert "default-src 'none'" in policy and "connect-src 'none'" in policy
    blocked = page.evaluate("""() => new Promise(done => {
        document.addEventListener('securitypolicyviolation', e => done(e.blockedURI), {once: true});
        const img = new Image(); img.src = 'http://127.0.0.1:9/x.png';
        setTimeout(() => done(null), 2000); })""")
    assert blocked == "http://127.0.0.1:9/x.png"  # the policy, not the address, stopped it


def test_every_nav_link_lands_on_its_section(page):
    links = page.locator("nav#nav > a")
    assert links.count() >= 4  # overview, modes, map, how it was made (and one per analysis section)
    for i in range(links.count()):
        target = links.nth(i).get_attribute("href")
        links.nth(i).click()
        page.wait_for_timeout(100)
        top, at_end = page.evaluate(f"""[document.querySelector('{target}').getBoundingClientRect().top,
            window.scrollY + window.innerHeight >= document.documentElement.scrollHeight - 2]""")
        # the section's heading is at the top, below the sticky bar (or the page is scrolled to its end)
        assert 0 <= top <= 120 or (at_end and top < 900), (target, top)


def test_folded_sections_unfold_for_a_link_into_them(page):
    page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = false; })")
    last = page.locator("nav#nav .modelinks a").last
    target = last.get_attribute("href")
    page.locator("nav#nav details > summary").click()
    last.click()
    page.wait_for_timeout(100)
    assert page.locator(target).is_visible()
    assert 0 <= page.evaluate(f"document.querySelector('{target}').getBoundingClientRect().top") <= 120


def test_sorting_the_mode_table_reorders_it(page):
    def sizes():
        return [int(v) for v in page.locator("#summary tbody tr td:nth-child(3)").all_inner_texts()]

    header = page.locator("#summary th", has_text="size")
    header.click()
    assert sizes() == sorted(sizes()) and len(set(sizes())) > 1
    header.click()
    assert sizes() == sorted(sizes(), reverse=True)


def test_hovering_a_point_on_the_map_shows_the_sample(page):
    page.locator("#embedding-map").scroll_into_view_if_needed()
    x, y = page.evaluate("""() => {
        const gd = document.getElementById('embedding-map'), L = gd._fullLayout, t = gd._fullData[0];
        const box = gd.querySelector('.nsewdrag').getBoundingClientRect();
        return [box.left + L.xaxis.d2p(t.x[0]), box.top + L.yaxis.d2p(t.y[0])];
    }""")
    page.mouse.move(x, y)
    page.wait_for_timeout(300)
    tip = page.locator("#embedding-map .hoverlayer .hovertext")
    assert tip.count() == 1 and "loss" in tip.text_content() and "→" in tip.text_content()
    thumb = page.locator("#map-thumb")  # and the digit itself beside the pointer
    assert thumb.is_visible() and thumb.get_attribute("src").startswith("data:image/png;base64,")


def test_a_modes_csv_download_holds_its_rows(page, page_file):
    result = page_file[0]
    mode = next(m for m in result.modes if m.id == page.locator("details.members").first.get_attribute("data-mode"))
    page.locator("details.members > summary").first.click()
    with page.expect_download() as download:
        page.locator("details.members button.csv").first.click()
    rows = list(csv.DictReader(io.StringIO(open(download.value.path(), encoding="utf-8").read())))
    assert [int(r["row"]) for r in rows] == mode.members.tolist()
    names = result.outputs.class_names
    assert all(r["label"] == names[result.outputs.labels[int(r["row"])]] for r in rows)
    # paging and the class filter act on the same rows
    box = page.locator("details.members").first
    assert box.locator("tbody tr").count() == min(20, len(mode.members))
    label = rows[0]["label"]
    box.locator("select.filter").select_option(label)
    assert set(box.locator("tbody tr td:nth-child(3)").all_inner_texts()) == {label}
