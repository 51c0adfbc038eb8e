"""The playground page in a real headless Chromium (selenium), served by the real ``ppdpp ui`` command.

``ppdpp ui`` runs as a subprocess on a free port with a real planner (the real all-MiniLM-L6-v2, a fresh seeded
head) in front of SmolLM2-135M, and a real evaluation's transcripts. The test loads the page, sends a message
and sees a strategy, a reply and the bars of the planner's distribution, switches to "no planner", then opens a
transcript file and sees its case by two policies side by side, with rewards and the oracle's outcomes.

Needs Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``, ``/usr/bin/chromedriver``) and the
``selenium`` package: without them the test skips, or fails under ``PPDPP_REQUIRE_BROWSER=1`` (CI).
"""

from __future__ import annotations

import importlib.util
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner
from ppdpp.planner.registry.manager import get_domain

from test_playground import run_evaluation

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
REQUIRE_ENV = "PPDPP_REQUIRE_BROWSER"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,900")
pytestmark = pytest.mark.slow


def _browser_missing() -> str | None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        return f"{' and '.join(missing)} missing (apt-get install chromium chromium-driver)"
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium driven by Debian's chromedriver (given explicitly: Selenium Manager never runs)."""
    missing = _browser_missing()
    if missing:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{missing}, and ${REQUIRE_ENV}=1 requires the browser test", pytrace=False)
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    return run_evaluation(tmp_path_factory.mktemp("eval") / "out")


@pytest.fixture(scope="module")
def ui(tmp_path_factory, evaluation, smollm2_gguf):
    """``ppdpp ui`` in a subprocess: the base URL of the page, once the server says it is listening."""
    torch.manual_seed(0)
    planner = PolicyPlanner(get_domain("emotional_support"), PlannerConfig(max_length=96)).save_pretrained(
        tmp_path_factory.mktemp("p") / "planner")
    command = [sys.executable, "-c", "from ppdpp.planner.cli import main; main()", "ui", "--planner", str(planner),
               "--upstream", "local/smollm2", "--transcripts", str(evaluation), "--port", "0",
               "--max-tokens", "12", "--threads", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        line, output = "", []
        deadline = time.monotonic() + 240
        while "ppdpp ui:" not in line and time.monotonic() < deadline and process.poll() is None:
            if select.select([process.stdout], [], [], 1)[0]:
                line = process.stdout.readline()
                output.append(line)
        assert "ppdpp ui:" in line, f"ppdpp ui did not start:\n{''.join(output)}"
        url = line.split(" at ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:"), line
        yield {"url": url, "planner": str(planner)}
    finally:
        process.terminate()
        process.communicate(timeout=60)


def wait_for(driver, selector: str, count: int = 1, timeout: float = 300):
    """The elements matching ``selector`` once there are at least ``count`` (a chat turn runs SmolLM2)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, selector)) >= count)
    return driver.find_elements(By.CSS_SELECTOR, selector)


def send(driver, text: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "message-input").send_keys(text)
    driver.find_element(By.ID, "send-button").click()


def test_chat_with_a_planner_then_without_one(browser, ui, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    strategies = get_domain("emotional_support").strategy_names
    browser.get(ui["url"])
    options = [o.text for o in wait_for(browser, "#planner-select option", 2)]
    assert options == [ui["planner"], "no planner"]
    send(browser, "I failed my exam and my parents are angry.")
    (agent,) = wait_for(browser, ".turn.agent:not(.pending)")
    badge = agent.find_element(By.CSS_SELECTOR, ".strategy").text
    assert badge.split(" · p=")[0] in strategies, badge
    assert agent.find_element(By.CSS_SELECTOR, ".text").text.strip(), "the agent's reply is empty"
    rows = agent.find_elements(By.CSS_SELECTOR, ".bar-row")
    assert [r.get_attribute("data-strategy") for r in rows] == strategies
    chosen = agent.find_elements(By.CSS_SELECTOR, ".bar-row.chosen")
    assert [c.get_attribute("data-strategy") for c in chosen] == [badge.split(" · p=")[0]]
    widths = [r.find_element(By.CSS_SELECTOR, ".bar").size["width"] for r in rows]
    assert max(widths) == chosen[0].find_element(By.CSS_SELECTOR, ".bar").size["width"] > 0  # the longest bar
    browser.save_screenshot(str(tmp_path / "chat.png"))

    Select(browser.find_element(By.ID, "planner-select")).select_by_visible_text("no planner")
    send(browser, "Thank you, that helps a little.")
    agents = wait_for(browser, ".turn.agent:not(.pending)", 2)
    plain = agents[-1]
    assert plain.find_element(By.CSS_SELECTOR, ".strategy").text == "no strategy"
    assert plain.find_element(By.CSS_SELECTOR, ".who").text == "no planner"
    assert not plain.find_elements(By.CSS_SELECTOR, ".bar-row")
    assert len(browser.find_elements(By.CSS_SELECTOR, ".turn.user")) == 2
    assert not browser.find_element(By.ID, "chat-error").is_displayed()


def test_open_a_transcript_file_and_read_a_case_side_by_side(browser, ui, evaluation):
    from selenium.webdriver.common.by import By

    browser.get(ui["url"])
    browser.find_element(By.ID, "tab-transcripts").click()
    files = wait_for(browser, ".transcript-file", 2)
    assert [f.get_attribute("data-name") for f in files] == ["no-planner.jsonl", "random.jsonl"]
    files[1].click()
    columns = wait_for(browser, ".policy-column", 2)
    assert [c.get_attribute("data-policy") for c in columns] == ["random", "no-planner"]  # the opened file first
    rows = [json.loads(line) for line in (evaluation / "transcripts" / "random.jsonl").read_text().splitlines()]
    first = rows[0]
    assert browser.find_element(By.ID, "case-title").text == f"case {first['case_id']}"
    assert [r.get_attribute("data-case") for r in browser.find_elements(By.CSS_SELECTOR, ".case-row")] == [
        r["case_id"] for r in rows]
    random_column = columns[0]
    text = random_column.text
    assert f"reward {first['total_reward']:.2f}" in text and ("success" if first["success"] else "failure") in text
    steps = random_column.find_elements(By.CSS_SELECTOR, ".step")
    assert len(steps) == len(first["steps"])
    for step, record in zip(steps, first["steps"]):
        assert record["agent"] in step.text and record["user"] in step.text
        assert "oracle outcome:" in step.text and all(s in step.text for s in record["critic_samples"])
    other = next(r for r in (json.loads(line) for line in (evaluation / "transcripts" / "no-planner.jsonl")
                             .read_text().splitlines()) if r["case_id"] == first["case_id"])
    assert len(columns[1].find_elements(By.CSS_SELECTOR, ".step")) == len(other["steps"])
    assert "no strategy" in columns[1].text
