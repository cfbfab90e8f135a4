"""The web console in a real browser: Debian's headless Chromium driven by Selenium.

A root that is also the controller serves its local API (and so the console) on 127.0.0.1. The
test logs in with the node's token, creates a network, gives it an IP pool, watches a member
that is actually joining appear in the member table by itself, authorizes it with a click (the
member's join then completes), adds a route (the member receives it), and has the rules editor
point at the line of a broken script. Screenshots of the steps go to ``artifacts/console/``
(``ZTNODE_ARTIFACTS`` elsewhere). The browser talks to 127.0.0.1 only: its background services
(updates, sync, metrics) are switched off.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.data import test_identities
from ztnode.testing.local import LocalZtWorld
from ztnode.transport.localapi import serve_local_api

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

IDS = test_identities()
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("ZTNODE_ARTIFACTS", ROOT / "artifacts")) / "console"
WAIT_S = 20.0


def _driver() -> Any:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        pytest.skip("Chromium and its driver are not installed (Debian: chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-default-apps", "--no-first-run", "--disable-extensions",
        "--metrics-recording-only", "--disable-domain-reliability", "--no-pings",
        "--disable-features=OptimizationHints,MediaRouter,Translate",
    ):  # fmt: skip
        opts.add_argument(flag)
    # An explicit driver: Selenium Manager would otherwise look for one on the network.
    return webdriver.Chrome(options=opts, service=Service(executable_path=chromedriver))


def _wait(driver: Any, what: str, cond: Callable[[Any], Any]) -> Any:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # The page re-renders after each save and every poll: an element may go stale in between.
    ignored = (NoSuchElementException, StaleElementReferenceException)
    try:
        return WebDriverWait(driver, WAIT_S, 0.1, ignored_exceptions=ignored).until(cond)
    except Exception as e:
        _shot(driver, f"failed-{what}")
        raise AssertionError(f"the console never showed {what}") from e


def _shot(driver: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def test_console_end_to_end(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    driver = _driver()

    def css(selector: str) -> Callable[[Any], Any]:
        def find(d: Any) -> Any:
            found = d.find_elements(By.CSS_SELECTOR, selector)
            return found[0] if found and found[0].is_displayed() else False

        return find

    async def run() -> None:
        async with LocalZtWorld(tmp_path, members=0, identities=IDS[:1]) as world:
            assert world.root is not None
            api, port = await serve_local_api(world.root.service)
            token = (world.root.service.home.path / "authtoken.secret").read_text().strip()
            try:
                await asyncio.to_thread(steps_before_member, port, token)
                nwid = await asyncio.to_thread(create_network)
                member, _ = await world.add_member(IDS[1], authorize=False)
                joining = asyncio.create_task(member.join(nwid, timeout=60, wait_authorized=True))
                await asyncio.to_thread(authorize, member.address)
                net = await asyncio.wait_for(joining, 30)
                assert net.status == "OK" and net.address(4).startswith("10.147.30.")
                await asyncio.to_thread(watch_online, member.address, net.address(4))
                await asyncio.to_thread(add_route, "10.147.31.0/24", "10.147.30.1")
                core = member.service.node
                assert core is not None
                deadline = time.monotonic() + WAIT_S
                while True:  # the member received the route the console added
                    cn = core.network(int(nwid, 16))
                    targets = [
                        str(r.target) for r in (cn.config.routes if cn and cn.config else ())
                    ]
                    if "10.147.31.0/24" in targets:
                        break
                    assert time.monotonic() < deadline, targets
                    await asyncio.sleep(0.1)
                await asyncio.to_thread(rules_error)
            finally:
                await api.close()

    def steps_before_member(port: int, token: str) -> None:
        driver.get(f"http://127.0.0.1:{port}/console")
        field = _wait(driver, "the login form", css("#token"))
        _shot(driver, "1-login")
        field.send_keys("not-the-token")
        driver.find_element(By.ID, "login").click()
        _wait(
            driver,
            "a refused token",
            lambda d: "not this node" in d.find_element(By.ID, "notice").text,
        )
        field = driver.find_element(By.ID, "token")
        field.clear()
        field.send_keys(token)
        driver.find_element(By.ID, "login").click()
        _wait(driver, "the networks", css("#networks"))

    def create_network() -> str:
        driver.find_element(By.ID, "new-network-name").send_keys("console-net")
        driver.find_element(By.ID, "create").click()
        _wait(driver, "the new network", lambda d: "#/network/" in d.current_url)
        nwid = driver.current_url.rsplit("/", 1)[1]
        _wait(driver, "its pool form", css("#pools-ipRangeStart")).send_keys("10.147.30.1")
        driver.find_element(By.ID, "pools-ipRangeEnd").send_keys("10.147.30.254")
        driver.find_element(By.ID, "pools-submit").click()
        _wait(
            driver,
            "the pool",
            lambda d: "10.147.30.1 to 10.147.30.254" in d.find_element(By.ID, "pools-list").text,
        )
        # As in ZeroTierOne, pool addresses are handed out only inside a managed route.
        add_route("10.147.30.0/24", "")
        return nwid

    def authorize(address: str) -> None:
        row = f'tr[data-address="{address}"]'
        box = _wait(driver, "the joining member", css(f"{row} input.authorized"))
        _shot(driver, "2-member-asks")
        assert not box.is_selected()
        box.click()
        _wait(
            driver,
            "the authorization saved",
            lambda d: "Authorization saved" in d.find_element(By.ID, "notice").text,
        )

    def watch_online(address: str, ip: str) -> None:
        row = f'tr[data-address="{address}"]'
        _wait(
            driver,
            "the member's address",
            lambda d: (
                ip in d.find_element(By.CSS_SELECTOR, f"{row} input.ips").get_attribute("value")
            ),
        )
        _wait(
            driver,
            "the member online",
            lambda d: d.find_element(By.CSS_SELECTOR, f"{row} .state").text == "online",
        )
        _shot(driver, "3-member-authorized")
        tags = driver.find_element(By.CSS_SELECTOR, f"{row} input.tags")
        tags.send_keys("1000=2")
        tags.send_keys("\t")  # change fires on leaving the field, as a user's tab does
        _wait(
            driver, "the tags saved", lambda d: "Tags saved" in d.find_element(By.ID, "notice").text
        )

    def add_route(target: str, via: str) -> None:
        _wait(driver, "the route form", css("#routes-target")).send_keys(target)
        if via:
            driver.find_element(By.ID, "routes-via").send_keys(via)
        driver.find_element(By.ID, "routes-submit").click()
        shown = f"{target} via {via}" if via else f"{target} (on the network)"
        _wait(
            driver,
            f"the route {target}",
            lambda d: shown in d.find_element(By.ID, "routes-list").text,
        )

    def rules_error() -> None:
        text = _wait(driver, "the rules editor", css("#rules-source"))
        text.clear()
        text.send_keys("accept;\nthis is not a rule;\n")
        driver.find_element(By.ID, "rules-check").click()
        _wait(
            driver,
            "the compiler's error",
            lambda d: d.find_element(By.ID, "rules-result").text.startswith("Line 2,"),
        )
        selected = driver.execute_script(
            "const t = document.getElementById('rules-source');"
            "return t.value.substring(t.selectionStart, t.selectionEnd);"
        )
        assert selected == "this is not a rule;"
        _shot(driver, "4-rules-error")

    try:
        asyncio.run(run())
        # No script error and no Content-Security-Policy violation; refused API calls (the
        # wrong token's 401, the broken script's 400) are the network's business and expected.
        console_errors = [
            e
            for e in driver.get_log("browser")
            if e.get("level") == "SEVERE" and e.get("source") != "network"
        ]
        assert not console_errors, console_errors
    finally:
        driver.quit()
