"""`lofi serve` driven in a real headless Chromium (Debian's chromium and chromium-driver, with
Selenium): upload a tiny archive, watch every stage finish, play a track, tweak the master,
download the run; and what the server must refuse."""
import json
import socket
import urllib.error
import urllib.request
import zipfile

import pytest

from helpers import ROOT, lofi_process, quick_archive, wait_for
from lofi_pipeline.pipeline import STAGE_NAMES


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def post_json(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`lofi serve` on a free port with its outputs in a temporary folder: (base URL, outputs, process)."""
    base = tmp_path_factory.mktemp("serve")
    port = free_port()
    proc = lofi_process("serve", "--port", str(port), "--outputs", str(base / "outputs"),
                        "--set", "intake.max_read_mib=1")
    url = f"http://127.0.0.1:{port}"

    def up():
        try:
            return get(f"{url}/api/state")[0] == 200
        except OSError:
            return False
    assert wait_for(up, proc, 120), proc.stderr.read() if proc.poll() is not None else "no answer"
    yield url, base / "outputs", base
    proc.terminate()
    proc.wait(30)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1800",
                 "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    yield driver
    driver.quit()


def until(driver, condition, timeout_s: float = 600):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout_s, poll_frequency=0.2).until(lambda d: condition(d))


def test_upload_run_listen_tweak_and_download_in_a_real_browser(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    url, outputs, base = server
    archive = quick_archive(tmp_path)
    browser.get(url)
    browser.find_element(By.CSS_SELECTOR, "input[name=source][value=upload]").click()
    browser.find_element(By.ID, "archive").send_keys(str(archive))
    browser.find_element(By.CSS_SELECTOR, "#profile option[value=quick]").click()
    browser.find_element(By.ID, "start").click()
    until(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-run") == "done")
    states = {li.get_attribute("data-stage"): li.get_attribute("data-state")
              for li in browser.find_elements(By.CSS_SELECTOR, "#stages li")}
    assert set(states.values()) == {"done"} and len(states) == len(STAGE_NAMES)
    until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".track audio")) == 2, 60)
    duration = until(browser, lambda d: d.execute_script(
        "const a = document.querySelector('.track audio'); return a.duration > 0 ? a.duration : null;"), 60)
    assert 5 < duration < 60
    before = browser.find_element(By.CSS_SELECTOR, ".track audio").get_attribute("src")
    browser.save_screenshot(str(base / "serve.png"))
    slider = browser.find_element(By.CSS_SELECTOR, "[data-key='master.crackle_per_second']")
    browser.execute_script("arguments[0].value = 25; arguments[0].dispatchEvent(new Event('input'));", slider)
    browser.find_element(By.ID, "apply").click()
    after = until(browser, lambda d: (lambda s: s if s != before else None)(
        d.find_element(By.CSS_SELECTOR, ".track audio").get_attribute("src")), 300)
    assert after.endswith(".mp3") and after != before
    status, data = get(f"{url}/api/download.zip")
    assert status == 200
    (tmp_path / "run.zip").write_bytes(data)
    names = zipfile.ZipFile(tmp_path / "run.zip").namelist()
    assert after.split("/files/")[1] in {n.removeprefix("lofi/") for n in names}
    assert "lofi/playlist.m3u8" in names and sum(n.endswith("_bass.mid") for n in names) == 2


def test_the_radio_hands_over_from_one_track_to_the_next(server, browser):
    """After the run above: the radio makes new tracks with the same models (no training), plays
    the first, fades into the second, never makes more than two ahead, and stops making when the
    page stops listening."""
    from selenium.webdriver.common.by import By
    url, outputs, base = server
    browser.find_element(By.ID, "radio-on").click()
    now = lambda d: int(d.find_element(By.ID, "now-playing").get_attribute("data-index"))  # noqa: E731
    until(browser, lambda d: now(d) == 1, 300)
    assert until(browser, lambda d: d.execute_script(
        "return [...document.querySelectorAll('#radio-panel audio')].some(a => !a.paused && a.currentTime > 0)"), 60)
    until(browser, lambda d: now(d) == 2, 300)  # the hand-over
    browser.save_screenshot(str(base / "radio.png"))  # the README's picture of the radio
    srcs = [a.get_attribute("src") for a in browser.find_elements(By.CSS_SELECTOR, "#radio-panel audio")]
    assert len(set(srcs)) == 2 and all("/files/radio/tracks/" in s for s in srcs)
    state = json.loads(get(f"{url}/api/radio")[1])
    assert state["made"] - state["played"] <= 2 and not state["error"]
    radio_train = (outputs / "radio" / "train" / "manifest.json").read_text()
    assert radio_train == (outputs / "train" / "manifest.json").read_text()  # the same models, not retrained
    browser.find_element(By.ID, "radio-off").click()
    until(browser, lambda d: json.loads(get(f"{url}/api/radio")[1])["listeners"] == 0, 60)
    state = json.loads(get(f"{url}/api/radio")[1])
    assert state["made"] <= state["played"] + 2


def test_downloads_serve_only_the_runs_files(server):
    url, outputs, _ = server
    (outputs / "leak.txt").symlink_to(ROOT / "README.md")
    for path in ("../../etc/passwd", "%2e%2e/%2e%2e/etc/passwd", "..%2f..%2fetc%2fpasswd", "leak.txt",
                 "/etc/passwd", "uploads"):
        assert get(f"{url}/files/{path}")[0] == 404, path


def test_an_oversized_upload_is_refused_with_a_message(server):
    """Refused on its headers, before a byte of the body is read (so the client sends none)."""
    import http.client
    from urllib.parse import urlsplit
    url, _, _ = server
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.putrequest("POST", "/api/upload")
    conn.putheader("Content-Type", "multipart/form-data; boundary=x")
    conn.putheader("Content-Length", str(2 * 2**20))
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413 and "over 1 MiB" in json.loads(response.read())["error"]
    conn.close()


def test_another_sites_page_cannot_start_a_run(server):
    url, _, _ = server
    request = urllib.request.Request(f"{url}/api/run", b'{"profile": "quick"}',
                                     {"Content-Type": "text/plain", "Origin": "http://evil.example"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 403
    assert get(f"{url}/files/%00")[0] == 404 and post_json(f"{url}/api/run", ["not", "an", "object"])[0] == 400


def test_a_second_run_while_one_runs_is_refused(server):
    url, _, _ = server
    assert post_json(f"{url}/api/run", {"profile": "quick", "archive": "/etc/passwd"})[0] == 400
    archive = json.loads(get(f"{url}/api/state")[1])["choice"]["archive"]  # the upload of the first test
    status, first = post_json(f"{url}/api/run", {"profile": "quick", "archive": archive,
                                                 "tweaks": {"generate.temperature": 0.9}})
    assert status == 200
    status, second = post_json(f"{url}/api/run", {"profile": "quick", "archive": archive})
    assert status == 409 and "one run at a time" in second["error"]
    assert post_json(f"{url}/api/stop", {})[0] == 200


def test_stopping_the_server_stops_its_run(tmp_path):
    """SIGTERM to `lofi serve` mid-training: the server, its run and the run's workers end within
    seconds, and no stage after the last committed one has an artifact."""
    import os
    import signal
    import time
    port = free_port()
    outputs = tmp_path / "outputs"
    proc = lofi_process("serve", "--port", str(port), "--outputs", str(outputs))
    url = f"http://127.0.0.1:{port}"
    assert wait_for(lambda: _answers(url), proc, 120)
    archive = quick_archive(tmp_path)
    form = b"--x\r\nContent-Disposition: form-data; name=\"archive\"; filename=\"songs.zip\"\r\n\r\n" \
        + archive.read_bytes() + b"\r\n--x--\r\n"
    request = urllib.request.Request(f"{url}/api/upload", form, {"Content-Type": "multipart/form-data; boundary=x"})
    uploaded = json.loads(urllib.request.urlopen(request, timeout=30).read())["archive"]
    assert post_json(f"{url}/api/run", {"profile": "quick", "archive": uploaded})[0] == 200
    assert wait_for(lambda: json.loads(get(f"{url}/api/state")[1])["run"]["stages"]["train"]["state"] == "running",
                    proc, 300)
    run_pid = int(os.popen(f"pgrep -f 'lofi_pipeline all --outputs {outputs}'").read().split()[0])
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    assert time.monotonic() - start < 30
    deadline = time.monotonic() + 30  # a guard against a hang; the run is usually gone already
    while os.path.exists(f"/proc/{run_pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{run_pid}")
    assert not (outputs / "train" / "manifest.json").exists() and not (outputs / "export").exists()


def _answers(url: str) -> bool:
    try:
        return get(f"{url}/api/state")[0] == 200
    except OSError:
        return False
