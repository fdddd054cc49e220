"""`ratchet serve`: the JSON it serves, its refusal to write, and the page in headless Chromium
while a study runs (Playwright driving Debian's /usr/bin/chromium)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import ratchet
from ratchet.reports.serve import make_server
from ratchet.store.database import Store

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SLOW = ('command = "python objective.py"', 'command = "sleep 0.6 && python objective.py"')
GREEDY = ('rule = "noise-aware"\nbaseline_runs = 3', 'rule = "greedy"\nbaseline_runs = 1')


@pytest.fixture
def served(make_repo: Callable[..., Path], storage_url: str) -> Iterator[tuple[Store, str]]:
    """A dashboard over a store (SQLite and PostgreSQL) holding one finished study."""
    repo = make_repo("quadratic", replace={"ratchet.toml": GREEDY})
    ratchet.open_study(repo, "first", storage=storage_url, proposer="random",
                       seed=1).run(max_experiments=3)
    store = Store(storage_url)
    server = make_server(store, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield store, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    store.close()


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_api_serves_studies_experiments_and_diffs(served: tuple[Store, str]) -> None:
    store, url = served
    status, body = get(f"{url}/api/studies")
    (study,) = json.loads(body)
    assert status == 200 and (study["name"], study["experiments"]) == ("first", 3)
    detail = json.loads(get(f"{url}/api/studies/first")[1])
    assert [e["number"] for e in detail["experiments"]] == [0, 1, 2]
    assert detail["curve"]["x"] == [0, 1, 2]
    one = json.loads(get(f"{url}/api/studies/first/experiments/1")[1])
    assert one["diff"].startswith("diff --git a/objective.py")
    assert get(f"{url}/api/studies/nope")[0] == 404
    assert get(f"{url}/plotly.js")[1][:200].count(b"plotly") >= 1
    record = store.get_study("first")
    before = (record, store.experiments(record.id))
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        request = urllib.request.Request(f"{url}/api/studies/first", data=b"{}", method=method)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request)
        assert refused.value.code == 405
    assert (store.get_study("first"), store.experiments(record.id)) == before


@pytest.mark.slow
def test_the_page_follows_a_running_study(make_repo: Callable[..., Path], tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed")
    from playwright.sync_api import sync_playwright

    repo = make_repo("quadratic", replace={"ratchet.toml": GREEDY})
    toml = (repo / "ratchet.toml").read_text().replace(*SLOW)
    (repo / "ratchet.toml").write_text(toml)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam",
                    "slow"], cwd=repo, check=True)
    study = ratchet.open_study(repo, "live", proposer="random", seed=0)
    runner = threading.Thread(target=lambda: study.run(max_experiments=8), daemon=True)
    server = subprocess.Popen([sys.executable, "-m", "ratchet", "serve", "--repo", str(repo),
                               "--port", "0"], stdout=subprocess.PIPE, text=True)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    try:
        url = server.stdout.readline().split()[2]  # "ratchet serve: http://...:PORT/ ..."
        runner.start()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.goto(url)
            page.wait_for_selector("#studies tr[data-study='live']")
            page.wait_for_function(  # the running driver, and what it runs
                "document.querySelector(\"#studies tr[data-study='live']\")"
                ".textContent.includes(' (local) #')")
            page.wait_for_function("document.getElementById('curve').data !== undefined")
            axis = page.evaluate("document.getElementById('curve').layout.yaxis.title.text")
            assert axis == "loss (minimize: lower is better)"
            assert "tick the compare box" in page.text_content("#compare")
            studies = page.locator("#studies th").all_text_contents()
            assert "pruned" in studies and "compute saved" in studies
            headers = page.locator("#experiments th").all_text_contents()
            assert headers[3:7] == ["better by", "holdout", "runs", "time"]
            # one diverged run among many close ones is left off the chart, and counted
            clip = page.evaluate("clipped([0.10, 0.11, 0.10, 0.12, 0.10, 0.105, 12.7])")
            assert clip["outside"] == 1 and clip["range"][1] < 1.0
            assert page.evaluate("clipped([1, 2, 3, 4, 5, 6])")["outside"] == 0
            points = "document.getElementById('curve').data[0].x.length"
            seen = page.evaluate(points)
            page.screenshot(path=str(shots / "1-running.png"), full_page=True)
            page.wait_for_function(f"{points} > {seen}", timeout=30_000)  # a point was added
            assert page.evaluate(points) > seen
            page.screenshot(path=str(shots / "2-new-point.png"), full_page=True)
            page.click("#experiments tr[data-number='1']")
            page.wait_for_function(
                "document.getElementById('diff').textContent.includes('objective.py')")
            added = page.locator("#diff span.add").all_text_contents()
            assert any(line.startswith("+") and "=" in line for line in added)
            assert "diff of experiment 1" in page.text_content("#diff-title")
            page.screenshot(path=str(shots / "3-diff.png"), full_page=True)
            # the diff is on screen next to the table, without scrolling
            box = page.locator("#diff").bounding_box()
            assert box is not None and box["y"] < 1000
            page.check("#studies tr[data-study='live'] input[type=checkbox]")
            page.wait_for_function("document.getElementById('compare').data !== undefined")
            page.screenshot(path=str(shots / "4-compare.png"), full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(10)
        runner.join(60)
    assert all((shots / name).stat().st_size > 10_000
               for name in ("1-running.png", "2-new-point.png", "3-diff.png", "4-compare.png"))
    if os.environ.get("RATCHET_SCREENSHOTS"):  # keep them where the caller wants them
        shutil.copytree(shots, os.environ["RATCHET_SCREENSHOTS"], dirs_exist_ok=True)
