"""Drives the operator console of a running `wasmtx serve` in headless Chromium (Debian's
chromium and chromedriver, through Selenium): what tests/console.rs asks, as an operator
would do it. Arguments: one JSON object with
  url, admin (token with every scope), reader (token with `read` only),
  committed, aborted, in_doubt (gids), plugin, wasm (a component to publish as 1.0.1),
  screenshots (a directory).
Exits non-zero with the failed check's message; the Rust test then checks the databases.
"""

import json
import os
import sys
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

ARGS = json.loads(sys.argv[1])
URL = ARGS["url"]
SHOTS = ARGS["screenshots"]


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print(f"ok: {what}", flush=True)


def browser(width=1280, height=1000):
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("WASMTX_CHROMIUM", "/usr/bin/chromium")
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--lang=en-US"]:
        options.add_argument(arg)
    driver_path = os.environ.get("WASMTX_CHROMEDRIVER", "/usr/bin/chromedriver")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    # Times shown in a zone that is not UTC, to see the conversion.
    driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "Europe/Berlin"})
    return driver


def until(driver, condition):
    """Whether `condition(driver)` comes true within five seconds (a click does not wait for
    the navigation it starts)."""
    try:
        WebDriverWait(driver, 5).until(condition)
        return True
    except Exception:
        return False


def lands_on(driver, suffix):
    return until(driver, lambda d: d.current_url.endswith(suffix))


def go(driver, path):
    driver.get(URL + path)


def shot(driver, name):
    os.makedirs(SHOTS, exist_ok=True)
    # The whole page, not just the window.
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, 600)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, max(600, min(height + 150, 4000)))
    driver.save_screenshot(os.path.join(SHOTS, f"{name}.png"))


AXE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node_modules/axe-core/axe.min.js")


def accessible(driver, page):
    """axe-core's WCAG 2 A and AA rules (colour contrast, labels, landmarks, …) on the page
    shown now: no violation."""
    with open(AXE) as source:
        driver.execute_script(source.read())
    result = driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa"]}})
          .then(r => done(r.violations.map(v => ({id: v.id, help: v.help,
                 nodes: v.nodes.slice(0, 3).map(n => n.html)}))), e => done([{id: String(e)}]));
        """)
    check(result == [], f"{page}: no WCAG 2 A/AA violation by axe-core: {json.dumps(result)}")


def sign_in(driver, token):
    go(driver, "/console/")
    check(driver.current_url.endswith("/console/sign-in"), "an anonymous visit is sent to sign in")
    accessible(driver, "sign-in")
    field = driver.find_element(By.ID, "token")
    field.send_keys(token)
    field.submit()
    check(lands_on(driver, "/console/"), "signing in lands on the overview")
    check(token not in driver.current_url, "the token is not in the URL")
    storage = driver.execute_script(
        "return [localStorage.length, sessionStorage.length, document.cookie]")
    check(storage == [0, 0, ""], f"no storage and no script-readable cookie: {storage}")
    cookies = driver.get_cookies()
    session = [c for c in cookies if c["name"] == "wasmtx_console"]
    check(len(session) == 1 and session[0]["httpOnly"] and session[0]["sameSite"] == "Strict",
          f"the session cookie is HttpOnly and SameSite=Strict: {cookies}")
    check(all(token not in c["value"] for c in cookies), "no cookie holds the token")
    return session[0]


def sign_out(driver):
    driver.find_element(By.CSS_SELECTOR, "form.signout button").click()
    check(lands_on(driver, "/console/sign-in"), "signing out lands on sign-in")


def post_from_page(driver, path, fields):
    """A form post made by script from the console's own page (same origin): what a forged
    request riding on the session would look like."""
    return driver.execute_async_script(
        """
        const [path, fields, done] = arguments;
        fetch(path, {method: "POST", body: new URLSearchParams(fields), redirect: "manual"})
          .then(r => done(r.status), e => done(String(e)));
        """,
        path, fields)


def text(driver):
    return driver.find_element(By.TAG_NAME, "main").text


def headers_of(path):
    """The status and the headers (looked up case-insensitively) of a GET."""
    try:
        with urllib.request.urlopen(URL + path) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as err:
        return err.code, err.headers


def main():
    gid_ok, gid_bad, gid_doubt = ARGS["committed"], ARGS["aborted"], ARGS["in_doubt"]

    status, headers = headers_of("/console/sign-in")
    csp = headers.get("Content-Security-Policy") or ""
    check(status == 200 and "script-src 'self'" in csp and "unsafe-inline" not in csp
          and "frame-ancestors 'none'" in csp, f"a strict Content-Security-Policy: {csp}")

    # A read-only token: sees, cannot act, and the server refuses a forged action.
    reader = browser()
    try:
        sign_in(reader, ARGS["reader"])
        go(reader, "/console/in-doubt")
        check(gid_doubt in text(reader), "the read-only session sees the transaction in doubt")
        check(not reader.find_elements(By.CSS_SELECTOR, "main form, a.button"),
              "the read-only session sees no action")
        go(reader, f"/console/in-doubt/{gid_doubt}")
        check(not reader.find_elements(By.CSS_SELECTOR, "main form"),
              "the confirmation page has no form for a read-only session")
        csrf = reader.find_element(By.CSS_SELECTOR, "form.signout input[name=csrf]").get_attribute("value")
        forged = post_from_page(reader, f"/console/in-doubt/{gid_doubt}/resolve",
                                {"csrf": csrf, "outcome": "rollback", "reason": "forged",
                                 "allow_heuristic": "true"})
        check(forged == 403, f"a read-only session's resolve is refused: {forged}")
        sign_out(reader)
    finally:
        reader.quit()

    driver = browser()
    try:
        cookie = sign_in(driver, ARGS["admin"])
        check("Transactions, last hour" in text(driver), "the overview shows the last hour")
        check(driver.find_elements(By.CSS_SELECTOR, "figure.chart svg rect"), "the chart has bars")
        # Tab from the top of the page: the first stop is the skip link.
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
        active = driver.switch_to.active_element
        check(active.get_attribute("class") == "skip", "the first Tab stop is 'Skip to content'")
        shot(driver, "overview")
        accessible(driver, "overview")

        # History: the committed and the aborted transaction, filters, paging, details.
        go(driver, "/console/transactions")
        page = text(driver)
        check(gid_ok in page, "the history's first page lists the newest transaction")
        first = driver.find_element(By.CSS_SELECTOR, "table.history time")
        check(first.get_attribute("title").endswith("UTC") and "UTC" not in first.text,
              f"times in the browser's zone, UTC on hover: {first.text!r} / {first.get_attribute('title')!r}")
        shot(driver, "transactions")
        accessible(driver, "transactions")
        rows = driver.find_elements(By.CSS_SELECTOR, "table.history tbody tr")
        check(len(rows) == 50, f"a page holds 50 rows: {len(rows)}")
        seen_first = {r.find_element(By.CSS_SELECTOR, "code").text for r in rows}
        driver.find_element(By.CSS_SELECTOR, "a[rel=next]").click()
        check(until(driver, lambda d: "cursor=" in d.current_url), "the next page opens")
        older = driver.find_elements(By.CSS_SELECTOR, "table.history tbody tr")
        check(len(older) > 0, f"the next page holds older rows: {len(older)}")
        seen_next = {r.find_element(By.CSS_SELECTOR, "code").text for r in older}
        check(not (seen_first & seen_next), "pages do not overlap")
        go(driver, "/console/transactions")
        Select(driver.find_element(By.ID, "status")).select_by_value("aborted")
        driver.find_element(By.CSS_SELECTOR, "form.filters button").click()
        check(until(driver, lambda d: "status=aborted" in d.current_url), "the filter applies")
        badges = [b.text for b in driver.find_elements(By.CSS_SELECTOR, "table.history .badge")]
        check(badges and set(badges) == {"aborted"}, f"the status filter keeps aborted ones: {badges}")
        check(gid_bad in text(driver) and gid_ok not in text(driver), "the aborted one, not the committed")
        go(driver, "/console/transactions")
        driver.find_element(By.ID, "gid").send_keys(gid_ok + Keys.ENTER)
        check(lands_on(driver, f"/console/transactions/{gid_ok}"), "a gid search opens its page")
        page = text(driver)
        check("committed" in page and ARGS["plugin"] in page and "sha256:" in page,
              "the detail shows the status, the plugin and its digest")
        check(driver.find_elements(By.CSS_SELECTOR, "svg.timeline rect"), "the phases as a timeline")
        shot(driver, "transaction-committed")
        accessible(driver, "transaction-committed")
        go(driver, f"/console/transactions/{gid_bad}")
        page = text(driver)
        check("aborted" in page and "insufficient funds" in page, "the aborted one shows its error")
        shot(driver, "transaction-aborted")
        accessible(driver, "transaction-aborted")

        # In doubt: the branch the stopped host left, forced through with a reason.
        go(driver, "/console/in-doubt")
        check(gid_doubt in text(driver), "the transaction in doubt is listed")
        shot(driver, "in-doubt")
        accessible(driver, "in-doubt")
        driver.find_element(By.CSS_SELECTOR, f"a.button[href='/console/in-doubt/{gid_doubt}']").click()
        check(lands_on(driver, f"/console/in-doubt/{gid_doubt}"), "the confirmation page opens")
        page = text(driver)
        check("Force-resolve: commit" in page and "Force-resolve: roll back" in page, "both outcomes offered")
        rollback = driver.find_element(By.CSS_SELECTOR, "section[aria-labelledby=rollback-heading]").text
        check("heuristic decision" in rollback and "partly committed" in rollback,
              "rolling back a recorded COMMIT warns it may leave the transaction partly committed")
        commit = driver.find_element(By.CSS_SELECTOR, "section[aria-labelledby=commit-heading]")
        check("pg (PostgreSQL)" in commit.text and "my (MySQL" in commit.text,
              f"the confirmation names the branches and their databases: {commit.text}")
        shot(driver, "in-doubt-confirm")
        accessible(driver, "in-doubt-confirm")
        commit.find_element(By.TAG_NAME, "button").click()
        check(driver.current_url.endswith(f"/console/in-doubt/{gid_doubt}"),
              "without a reason the browser does not submit")
        commit = driver.find_element(By.CSS_SELECTOR, "section[aria-labelledby=commit-heading]")
        commit.find_element(By.TAG_NAME, "textarea").send_keys("ticket OPS-7: host lost after COMMIT")
        commit.find_element(By.TAG_NAME, "button").click()
        check(lands_on(driver, f"/console/in-doubt/{gid_doubt}/resolve"), "the action is submitted")
        page = text(driver)
        check(f"{gid_doubt} is now committed" in page, f"the result says what was done: {page}")
        shot(driver, "in-doubt-resolved")
        accessible(driver, "in-doubt-resolved")
        go(driver, f"/console/transactions/{gid_doubt}")
        page = text(driver)
        check("ticket OPS-7" in page and "ops" in page, "the resolution is recorded: who and why")

        # A forged action with the admin session but without its CSRF token is refused.
        forged = post_from_page(driver, f"/console/in-doubt/{gid_doubt}/retry", {"csrf": "0" * 64})
        check(forged == 403, f"an action without the session's CSRF token is refused: {forged}")

        go(driver, "/console/plugins")
        check(ARGS["plugin"] in text(driver), "the plugin is listed")
        shot(driver, "plugins")
        accessible(driver, "plugins")
        # Publish another version from a file, alias the first one, withdraw the new one.
        plugin = ARGS["plugin"]
        driver.find_element(By.ID, "name").send_keys(plugin)
        driver.find_element(By.ID, "version").send_keys("1.0.1")
        driver.find_element(By.ID, "wasm").send_keys(ARGS["wasm"])
        driver.find_element(By.CSS_SELECTOR, "section[aria-labelledby=publish-heading] button").click()
        check(lands_on(driver, "/console/plugins/publish"), "the upload is submitted")
        page = text(driver)
        check(f"Published {plugin}@1.0.1" in page and "wasmtx:script/script" in page,
              f"published, with what inspect says: {page[:300]}")
        go(driver, f"/console/plugins/{plugin}")
        driver.find_element(By.ID, "alias").send_keys("stable")
        Select(driver.find_element(By.ID, "alias-version")).select_by_value("1.0.0")
        driver.find_element(By.CSS_SELECTOR, "section[aria-labelledby=alias-heading] button").click()
        check(until(driver, lambda d: "stable → 1.0.0" in text(d)), "the alias is set")
        go(driver, f"/console/plugins/{plugin}/versions/1.0.1")
        withdraw = driver.find_element(By.CSS_SELECTOR, "section[aria-labelledby=withdraw-heading]")
        withdraw.find_element(By.ID, "withdraw-confirm").click()
        withdraw.find_element(By.TAG_NAME, "button").click()
        check(until(driver, lambda d: not d.find_elements(By.ID, "withdraw-heading")),
              "the version is withdrawn (no withdraw form any more)")
        check("Withdrawn\nno" not in text(driver), "the page shows when it was withdrawn")
        go(driver, f"/console/plugins/{ARGS['plugin']}/versions/1.0.0")
        check("wasmtx:script/script" in text(driver), "the version page shows what inspect says")
        shot(driver, "plugin-version")
        accessible(driver, "plugin-version")
        go(driver, "/console/nodes")
        shot(driver, "nodes")
        accessible(driver, "nodes")

        # A narrow screen: the same page, one column, nothing cut off sideways.
        driver.set_window_size(390, 844)
        go(driver, "/console/")
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        check(overflow <= 0, f"no sideways scrolling at 390 px: {overflow}")
        driver.save_screenshot(os.path.join(SHOTS, "overview-narrow.png"))
        accessible(driver, "overview at 390 px")
        driver.set_window_size(1280, 1000)

        sign_out(driver)
        go(driver, "/console/transactions")
        check(driver.current_url.endswith("/console/sign-in"), "after sign-out the console asks to sign in")
        # The old cookie, put back, is not a session any more.
        driver.add_cookie({"name": cookie["name"], "value": cookie["value"], "path": "/console"})
        go(driver, "/console/transactions")
        check(driver.current_url.endswith("/console/sign-in"), "the ended session's cookie is refused")
    finally:
        driver.quit()
    print("all checks passed")


if __name__ == "__main__":
    main()
