"""The dashboard in a real browser: headless Debian Chromium driven by selenium over
chromedriver, the way a person uses the page. Started by crates/ferry/tests/dashboard.rs
against a real `ferry serve` (tier, events, keys and vectors configured; real Redis and
PostgreSQL); prints what it checked and exits non-zero on the first failure.

Steps: refused without a token; the jobs with the read token (an action refused with it);
a published event appearing in the live view; a tier pass run from the page and its events on
the timeline; a keys run and a verify started from the page; pause and resume; keyboard reach;
a phone width; no console errors. Saves a screenshot of each screen in --shots.
"""

import argparse
import json
import os
import sys
import time
import urllib.request

import redis
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

HOSTILE = '<img src=x onerror="window.ferryXss=1">'


def say(text):
    print(f"dashboard: {text}", flush=True)


def fail(text):
    print(f"dashboard: FAILED: {text}", flush=True)
    sys.exit(1)


class Page:
    def __init__(self, args):
        self.args = args
        options = webdriver.ChromeOptions()
        options.binary_location = args.chromium
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,800", "--hide-scrollbars", "--no-first-run",
                     "--disable-extensions", "--lang=en-GB"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(executable_path=args.chromedriver)
        self.driver = webdriver.Chrome(service=service, options=options)
        self.driver.set_window_size(1280, 800)
        self.allowed_console = []

    def wait(self, what, condition, timeout=20):
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.2).until(lambda d: condition())
        except TimeoutException:
            self.shot("failure")
            fail(f"{what} (waited {timeout} s); page text: {self.text('main')[:800]!r}; "
                 f"notice: {self.text('#notice')!r}")

    def find(self, css):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css):
        """The rendered text of the first match (read in the page: the dashboard re-renders)."""
        return self.driver.execute_script(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : ''", css)

    def shot(self, name):
        self.driver.execute_script("window.scrollTo(0, 0)")
        time.sleep(0.2)
        os.makedirs(self.args.shots, exist_ok=True)
        path = os.path.join(self.args.shots, f"{name}.png")
        self.driver.save_screenshot(path)
        say(f"screenshot {path}")

    def use_token(self, token):
        field = self.find("#token-input")[0]
        field.clear()
        field.send_keys(token)
        field.send_keys(Keys.ENTER)

    def tab(self, name):
        self.wait(f"the {name} tab appears", lambda: self.find(f"#tab-{name}"))
        self.find(f"#tab-{name}")[0].click()
        self.wait(f"the {name} view shows", lambda: self.find(f"#view-{name}")[0].is_displayed())

    def button(self, scope, label):
        """Whether a visible button `label` is in `scope`."""
        return self.driver.execute_script(
            "return [...document.querySelectorAll(arguments[0] + ' button')]"
            ".some(b => b.innerText.trim() === arguments[1] && b.offsetParent !== null)", scope, label)

    def click(self, scope, label):
        """Clicks the button `label` in `scope` (found again if the page re-rendered it)."""
        for _ in range(20):
            for b in self.find(f"{scope} button"):
                try:
                    if b.text.strip() == label and b.is_displayed():
                        b.click()
                        return
                except StaleElementReferenceException:
                    break
            time.sleep(0.1)
        fail(f"no button {label!r} in {scope}")

    def console_errors(self):
        """SEVERE browser log entries not explained by a deliberate refusal."""
        out = []
        for entry in self.driver.get_log("browser"):
            if entry["level"] != "SEVERE":
                continue
            if any(a in entry["message"] for a in self.allowed_console):
                continue
            out.append(entry["message"])
        page = self.driver.execute_script("return window.ferryErrors || []")
        return out + [f"page: {e}" for e in page]


def api(args, method, path, token=None, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(args.url + path, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, json.loads(res.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def refused_without_token(page, args):
    status, _ = api(args, "GET", "/api/v1/overview")
    if status != 401:
        fail(f"GET /api/v1/overview without a token answered {status}, not 401")
    page.driver.get(args.url + "/")
    page.wait("the page says it needs a token", lambda: "needs a token" in page.text("#cards"))
    if page.find(".card"):
        fail("job cards shown without a token")
    page.shot("01-token-needed")
    say("refused without a token: the API answers 401 and the page shows no data")


def overview_with_read_token(page, args):
    page.use_token(args.read_token)
    page.wait("the job cards appear", lambda: len(page.find(".card")) >= 4)
    kinds = {c.get_attribute("data-job").split(":")[0] for c in page.find(".card")}
    for kind in ("tier", "events", "keys", "vectors"):
        if kind not in kinds:
            fail(f"no {kind} card: {kinds}")
    stores = page.text('.card[data-job="events"] .stores')
    if "PostgreSQL" not in stores or "Redis" not in stores:
        fail(f"the events card does not show its stores: {stores!r}")
    # An action with the read token is refused, and the page says so.
    page.allowed_console.append("403")
    page.click('.card[data-job="tier"]', "Run a pass now")
    page.wait("the refusal is shown", lambda: "Refused" in page.text("#notice"))
    page.wait("a chart is drawn", lambda: page.find(".card .chart svg"))
    page.shot("02-overview")
    say(f"overview with the read token: cards {sorted(kinds)}; an action refused with it")


def live_event(page, args):
    page.use_token(args.admin_token)
    page.tab("events")
    page.wait("the live view connects", lambda: page.driver.execute_script(
        "return document.body.dataset.live") == "connected")
    event = {"event_type": "person", "camera_id": "cam-live",
             "event_data": {"note": HOSTILE, "confidence": 0.93}}
    status, body = api(args, "POST", "/api/v1/events", args.admin_token, event)
    if status != 201:
        fail(f"POST /api/v1/events answered {status}: {body}")
    event_id = str(body["ids"][0])
    page.wait("the published event appears in the live view",
              lambda: page.find(f'#live li[data-event-id="{event_id}"]'))
    item = page.text(f'#live li[data-event-id="{event_id}"]')
    if "cam-live" not in item or "<img src=x onerror=" not in item:
        fail(f"the live item does not show the event as text: {item!r}")
    if page.driver.execute_script("return window.ferryXss === 1"):
        fail("the event's data ran as HTML")
    page.wait("the outbox figures show", lambda: "outbox backlog" in page.text("#events-summary"))
    page.shot("04-events")
    say(f"a published event (#{event_id}) appeared in the live view, its data shown as text")


def tier_pass(page, args):
    conn = redis.Redis.from_url(args.redis)
    now = int(time.time() * 1000)
    start = now - 2 * 3600 * 1000
    texts = {"cam-a": ["a courier leaves a parcel at the door", "a red car parks by the gate"],
             "cam-b": ["two people talk near the loading dock"]}
    for camera, scenes in texts.items():
        t = start
        for text in scenes:
            for i in range(12):
                conn.xadd(f"captions:{camera}", {"caption": text}, id=f"{t}-0")
                t += 10_000
            t += 120_000
    page.tab("tier")
    page.wait("the cameras are listed", lambda: "cam-a" in page.text("#tier-timelines"))
    page.find("#tier-pass")[0].click()
    page.wait("the pass reports its events", lambda: "events written" in page.text("#notice"))
    page.wait("the events are on the timeline",
              lambda: len(page.find('.timeline[data-camera="cam-a"] rect.ev')) >= 2
              and page.find('.timeline[data-camera="cam-b"] rect.ev'))
    # Captions that are not due stay hot in Redis: ticks beside the bars.
    t = start + 40 * 60_000
    for i in range(5):
        conn.xadd("captions:cam-a", {"caption": "a cyclist waits at the crossing"}, id=f"{t + i * 10_000}-0")
    page.wait("the hot captions are on the timeline",
              lambda: len(page.find('.timeline[data-camera="cam-a"] line.hot')) == 5, 30)
    page.find('.timeline[data-camera="cam-a"] details summary')[0].click()
    table = page.text('.timeline[data-camera="cam-a"] table')
    if "a courier leaves a parcel at the door" not in table:
        fail(f"the timeline's table lacks the representative caption: {table!r}")
    page.shot("03-tier")
    say("a tier pass run from the page; its events are on the timeline of cam-a and cam-b")


def keys_verify(page, args):
    page.tab("keys")
    page.wait("the keys run is listed", lambda: "browser-run" in page.text("#keys-runs"))
    page.click("#keys-runs", "Details")
    page.wait("the run's details show", lambda: "Counts by rule" in page.text("#keys-run"))
    page.click("#keys-run", "Run verify")
    page.wait("the verify result shows", lambda: "Verify results" in page.text("#keys-run"), 30)
    results = page.text("#keys-run")
    if "missing" not in results:
        fail(f"verify results lack their counts: {results!r}")
    page.find("#keys-plan-show")[0].click()
    page.wait("the plan shows", lambda: "Computed" in page.text("#keys-plan"), 30)
    page.shot("05-keys")
    say("keys: the run listed with its counts by rule; a verify started from the page finished")


def pause_resume(page, args):
    page.tab("overview")
    card = '.card[data-job="events"]'
    page.wait("the events card", lambda: page.button(card, "Pause"))
    page.click(card, "Pause")
    page.wait("the events job shows paused", lambda: page.text(f"{card} .badge") == "paused")
    status, body = api(args, "GET", "/api/v1/overview", args.admin_token)
    state = [j["state"] for j in body["jobs"] if j["id"] == "events"]
    if state != ["paused"]:
        fail(f"the API does not report the events job paused: {state}")
    page.click(card, "Resume")
    page.wait("the events job runs again", lambda: page.text(f"{card} .badge") == "running")
    say("pause and resume from the page")


def keyboard(page, args):
    page.driver.get(args.url + "/#overview")
    page.wait("the cards", lambda: page.find(".card"))
    seen = []
    for _ in range(60):
        ActionChains(page.driver).send_keys(Keys.TAB).perform()
        seen.append(tuple(page.driver.execute_script(
            "const e = document.activeElement;"
            "return [e.tagName.toLowerCase(), e.id || '', (e.innerText || '').trim()]")))
    names = {s[1] for s in seen} | {s[2] for s in seen}
    for wanted in ("tab-tier", "tab-events", "tab-keys", "token-input", "Run a pass now", "Pause"):
        if wanted not in names:
            fail(f"{wanted} is not reachable with the keyboard: {seen}")
    # Enter on a focused tab opens its view.
    page.find("#tab-tier")[0].send_keys(Keys.ENTER)
    page.wait("Enter on the tier tab opens it", lambda: page.find("#view-tier")[0].is_displayed())
    say("the tabs, the token field and the actions are reachable with the keyboard")


def phone(page, args):
    page.driver.set_window_size(390, 844)
    page.driver.get(args.url + "/#overview")
    page.wait("the cards on a phone", lambda: page.find(".card"))
    time.sleep(0.5)
    wide = page.driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    if wide > 1:
        fail(f"the page is {wide} px wider than a phone's screen")
    page.shot("06-phone")
    page.driver.set_window_size(1280, 800)
    say("readable at a phone's width (390 px): nothing wider than the screen")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--admin-token", required=True)
    p.add_argument("--read-token", required=True)
    p.add_argument("--redis", required=True)
    p.add_argument("--shots", required=True)
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = p.parse_args()
    for path in (args.chromium, args.chromedriver):
        if not os.path.exists(path):
            fail(f"{path} is missing: run `make test-setup` (scripts/setup.sh installs chromium and chromium-driver)")
    page = Page(args)
    try:
        refused_without_token(page, args)
        overview_with_read_token(page, args)
        live_event(page, args)
        tier_pass(page, args)
        keys_verify(page, args)
        pause_resume(page, args)
        keyboard(page, args)
        phone(page, args)
        errors = page.console_errors()
        if errors:
            fail(f"console errors: {errors}")
        say("no console errors")
        say("all steps passed")
    finally:
        page.driver.quit()


if __name__ == "__main__":
    main()
