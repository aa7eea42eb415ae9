"""`lofi serve` driven in a real headless Chromium (Debian's chromium and chromium-driver, with
Selenium) with mouse clicks and key presses: a take from an upload, the page saying where things
stand, controls that show their state and what they re-run, a bad archive named by its own
name, takes with names of their own that download alone, a radio that never plays a take's
track; and what the server must refuse. The tests of this module run in order on one server."""
import hashlib
import json
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile

import pytest

from helpers import ROOT, lofi_process, quick_archive, wait_for, write_zip
from lofi_pipeline.pipeline import STAGE_NAMES


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def post_json(url: str, body) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def upload(url: str, data: bytes, name: str) -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}/api/upload?name={urllib.parse.quote(name)}", data,
                                     {"Content-Type": "application/zip"})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def state(url: str) -> dict:
    return json.loads(get(f"{url}/api/state")[1])


def serve(folder, *options):
    """`lofi serve` on a free port, its terminal log in folder/serve.log: (URL, process, log path)."""
    port = free_port()
    log = folder / "serve.log"
    proc = lofi_process("serve", "--port", str(port), "--outputs", str(folder / "outputs"), *options,
                        stdout=open(log, "a"), stderr=open(folder / "serve.err", "a"))
    url = f"http://127.0.0.1:{port}"
    assert wait_for(lambda: _answers(url), proc, 120), (folder / "serve.err").read_text()
    return url, proc, log


def _answers(url: str) -> bool:
    try:
        return get(f"{url}/api/state")[0] == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base URL, outputs, the folder with its log)."""
    base = tmp_path_factory.mktemp("serve")
    url, proc, _ = serve(base, "--set", "intake.max_read_mib=1")
    yield url, base / "outputs", base
    proc.terminate()
    proc.wait(30)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,2200",
                 "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    yield driver
    driver.quit()


def until(driver, condition, timeout_s: float = 600):
    """Wait for a state of the page (a guard against a hang, not a timing)."""
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout_s, poll_frequency=0.2).until(lambda d: condition(d))


def css(driver, selector):
    from selenium.webdriver.common.by import By
    return driver.find_element(By.CSS_SELECTOR, selector)


def click(driver, selector, timeout_s: float = 30) -> None:
    """Click what `selector` finds, once it holds still: a list the page draws again from the
    server's events (the takes) may replace the element between finding it and clicking it."""
    from selenium.common.exceptions import StaleElementReferenceException

    def clicked(d) -> bool:
        try:
            css(d, selector).click()
        except StaleElementReferenceException:
            return False
        return True
    until(driver, clicked, timeout_s)


def run_number(driver) -> int:
    return driver.execute_script("return current.run ? current.run.number : 0")


def start_and_wait(driver, button: str = "#start", timeout_s: float = 600) -> str:
    """Click a button that starts a run and wait until that run has ended; its status."""
    before = run_number(driver)
    css(driver, button).click()
    return until(driver, lambda d: run_number(d) > before and (lambda s: s if s in ("done", "failed", "stopped")
                                                                else None)(css(d, "body").get_attribute("data-run")),
                 timeout_s)


def stage_texts(driver) -> dict:
    return {li.get_attribute("data-stage"): (li.get_attribute("data-state"),
                                             li.find_element("css selector", ".what").text)
            for li in driver.find_elements("css selector", "#stages li")}


def press(driver, selector: str, key: str, times: int) -> None:
    """Key presses on a control (Selenium focuses it first), as a listener at the keyboard does."""
    element = css(driver, selector)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    for _ in range(times):
        element.send_keys(key)


def test_a_take_from_an_upload_and_the_page_says_where_things_stand(server, browser, tmp_path):
    """Findings 2 and 3: choosing a file selects "my MIDI"; a finished run reads done with each
    stage's time on screen, a done notice, no training ETA left up, labelled buttons; the
    terminal logs the run and the requests."""
    url, outputs, base = server
    archive = quick_archive(tmp_path)
    browser.get(url)
    until(browser, lambda d: d.find_elements("css selector", "#controls input"), 60)
    assert css(browser, "input[name=source][value=default]").is_selected()
    assert css(browser, "#notice").text == "No run yet: start a take."
    css(browser, "#archive").send_keys(str(archive))
    assert css(browser, "input[name=source][value=upload]").is_selected()
    css(browser, "#profile").click()
    css(browser, "#profile option[value=quick]").click()
    assert start_and_wait(browser) == "done"
    texts = stage_texts(browser)
    assert set(texts) == set(STAGE_NAMES)
    assert all(s == "done" and re.fullmatch(r"done in \d+\.\d s", t) for s, t in texts.values()), texts
    assert css(browser, "#notice").text.startswith("Done: songs, take 1 in ")
    assert not css(browser, "#training").is_displayed() and "left" not in css(browser, "#watch-panel").text
    labels = [b.text for b in browser.find_elements("css selector", "button")]
    assert all(labels) and len(set(labels)) == len(labels), labels
    until(browser, lambda d: len(d.find_elements("css selector", ".track audio")) == 2, 60)
    assert css(browser, "#take-name").text == "songs, take 1"
    assert [h.text for h in browser.find_elements("css selector", ".track h3")] == ["songs, take 1 01",
                                                                                      "songs, take 1 02"]
    duration = until(browser, lambda d: d.execute_script(
        "const a = document.querySelector('.track audio'); return a.duration > 0 ? a.duration : null;"), 60)
    assert 5 < duration < 60
    browser.save_screenshot(str(base / "serve.png"))
    log = (base / "serve.log").read_text()
    assert "upload: songs.zip" in log and "run: done in" in log and "POST /api/run 200" in log


def test_controls_show_their_values_and_what_they_rerun(server, browser):
    """Findings 3 and 4: a slider shows its value; each control says what a change re-runs before
    Apply, and Apply re-runs only that; the settings in use are shown, survive a reload, and
    reset to the defaults."""
    from selenium.webdriver.common.keys import Keys
    url, outputs, base = server
    reruns = {el.get_attribute("data-for"): el.text for el in browser.find_elements("css selector", ".reruns")}
    assert reruns["master.crackle_per_second"] == "re-runs master, stems, export"
    assert reruns["master.lowpass_hz"] == "re-runs render, master, stems, export"  # render reads the low-pass
    assert reruns["generate.temperature"].startswith("re-runs generate, drums, arrange")
    assert css(browser, "output[data-for='master.crackle_per_second']").text == "6"
    assert css(browser, "output[data-for='generate.temperature']").text == "auto"
    before = css(browser, ".track audio").get_attribute("src")
    press(browser, "[data-key='master.crackle_per_second']", Keys.ARROW_RIGHT, 4)
    value = css(browser, "[data-key='master.crackle_per_second']").get_attribute("value")
    assert value == "10" and css(browser, "output[data-for='master.crackle_per_second']").text == "10"
    assert css(browser, "#apply-plan").text == "Apply re-runs: master, stems, export"
    assert start_and_wait(browser, "#apply") == "done"
    texts = stage_texts(browser)
    assert texts["render"][0] == "cached" and texts["master"][0] == "done" and texts["train"][0] == "cached"
    until(browser, lambda d: css(d, ".track audio").get_attribute("src") != before, 60)
    assert css(browser, "#current-tweaks").text == "master.crackle_per_second = 10"
    browser.refresh()
    until(browser, lambda d: css(d, "#current-tweaks").text == "master.crackle_per_second = 10", 60)
    assert css(browser, "[data-key='master.crackle_per_second']").get_attribute("value") == "10"
    assert css(browser, "output[data-for='master.crackle_per_second']").text == "10"
    assert all(t[0] in ("done", "cached") for t in stage_texts(browser).values())  # a reloaded page knows too
    assert start_and_wait(browser, "#reset") == "done"
    until(browser, lambda d: css(d, "#current-tweaks").text == "defaults", 60)
    assert css(browser, "output[data-for='master.crackle_per_second']").text == "6"
    assert state(url)["settled"]["tweaks"] == {}


def play(driver, index: int):
    """Click the play button of track `index`'s player (the left end of its controls)."""
    from selenium.webdriver.common.action_chains import ActionChains
    audio = css(driver, f".track[data-index='{index}'] audio")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", audio)
    ActionChains(driver).move_to_element_with_offset(audio, -audio.size["width"] // 2 + 18, 0).click().perform()
    playing = "return !arguments[0].paused && arguments[0].currentTime > 1.5"
    until(driver, lambda d: d.execute_script(playing, audio), 60)
    return audio


def test_a_tweak_is_heard_first_on_the_track_playing_and_one_track_gets_a_new_take(server, browser):
    """A master tweak re-masters the track playing first (its preview plays on from where it
    was while the take catches up, and it is the take's file to the byte); a track's "New take"
    button draws that track anew, first, the others keeping theirs."""
    from selenium.webdriver.common.keys import Keys
    url, outputs, base = server
    audio = play(browser, 2)
    at = browser.execute_script("return arguments[0].currentTime", audio)
    press(browser, "[data-key='master.reverb_wet']", Keys.ARROW_RIGHT, 3)
    before = run_number(browser)
    css(browser, "#apply").click()
    until(browser, lambda d: "/files/preview/" in audio.get_attribute("src"), 120)
    preview = audio.get_attribute("src")
    assert run_number(browser) > before and css(browser, "body").get_attribute("data-run") == "running"
    until(browser, lambda d: d.execute_script("return arguments[0].readyState >= 2 && !arguments[0].paused", audio), 60)
    assert browser.execute_script("return arguments[0].currentTime", audio) >= at  # on from where it was
    assert "track 2 re-mastered in" in css(browser, "#message").text
    until(browser, lambda d: css(d, "body").get_attribute("data-run") == "done", 600)
    until(browser, lambda d: "/files/tracks/" in audio.get_attribute("src"), 60)
    take = audio.get_attribute("src")
    assert take.rsplit("/", 1)[1] == preview.rsplit("/", 1)[1] and get(take)[1] == get(preview)[1]
    assert not browser.execute_script("return arguments[0].paused", audio)
    seeds = {t["index"]: t["seed"] for t in state(url)["tracks"]}
    first = css(browser, ".track[data-index='1'] audio").get_attribute("src")
    assert start_and_wait(browser, ".track[data-index='2'] button.retake") == "done"
    run = state(url)["run"]
    assert run["previews"]["2"]["how"] == "made anew"
    assert state(url)["settled"]["tweaks"]["generate.retakes"] == [2]
    now = {t["index"]: t["seed"] for t in state(url)["tracks"]}
    assert now[1] == seeds[1] and now[2] != seeds[2]
    until(browser, lambda d: "/files/tracks/" in audio.get_attribute("src") and audio.get_attribute("src") != take, 60)
    assert css(browser, ".track[data-index='1'] audio").get_attribute("src") == first
    assert start_and_wait(browser, "#reset") == "done"


def test_a_bad_archive_is_named_by_its_own_name_and_apply_stays_on_the_take(server, browser, tmp_path):
    """Finding 3: the error names the user's file, not uploads/<digest>.zip, and an Apply after
    it revises the take on screen instead of re-running the bad archive."""
    from selenium.webdriver.common.keys import Keys
    url, outputs, base = server
    good = state(url)["settled"]
    bad = write_zip(tmp_path / "my broken loops.zip", {"notes.txt": b"no MIDI here"})
    css(browser, "#archive").send_keys(str(bad))
    assert start_and_wait(browser) == "failed"
    error = css(browser, "#error").text
    assert "my broken loops.zip" in error and "uploads/" not in error, error
    not_zip = tmp_path / "not a zip.zip"
    not_zip.write_text("plain text")
    css(browser, "#archive").send_keys(str(not_zip))
    css(browser, "#start").click()
    until(browser, lambda d: "not a zip.zip: not a zip archive" in css(d, "#message").text, 60)
    press(browser, "[data-key='master.hiss_db']", Keys.ARROW_LEFT, 2)
    assert start_and_wait(browser, "#apply") == "done"
    now = state(url)["settled"]
    assert now["archive"] == good["archive"] and now["take"] == good["take"]
    assert now["tweaks"] == {"master.hiss_db": -50.0}


def test_takes_have_names_of_their_own_and_one_downloads_as_a_zip_that_stands_alone(server, browser, tmp_path):
    """Findings 5 and 6: a second take has its own name and titles, both stay listed; one take's
    zip holds every file its playlist and its report name; a take is kept or deleted."""
    url, outputs, base = server
    css(browser, "input[name=source][value=upload]").click()
    css(browser, "#archive").send_keys(str(quick_archive(tmp_path)))
    assert start_and_wait(browser) == "done"
    until(browser, lambda d: len(d.find_elements("css selector", "#takes li")) == 2, 60)
    names = [text.split(":")[0] for text in browser.execute_script(  # one read: nothing to go stale
        "return [...document.querySelectorAll('#takes li')].map(e => e.innerText)")]
    assert names == ["songs, take 2", "songs, take 1"]  # the bad archive made no take
    until(browser, lambda d: css(d, ".track h3").text == "songs, take 2 01", 60)
    status, data = get(f"{url}/api/takes/1.zip")
    assert status == 200
    (tmp_path / "take1.zip").write_bytes(data)
    z = zipfile.ZipFile(tmp_path / "take1.zip")
    names = set(z.namelist())
    listed = [line for line in z.read("songs-take-1/playlist.m3u8").decode().splitlines()
              if line and not line.startswith("#")]
    assert len(listed) == 2 and all(f"songs-take-1/{p}" in names for p in listed)
    report = z.read("songs-take-1/report.html").decode()
    images = re.findall(r"<img[^>]* src='([^']+)'", report)
    assert images and all(f"songs-take-1/{i}" in names for i in images)
    assert sum(n.endswith("_bass.mid") for n in names) == 2
    assert all("take 1" in t["title"] for t in json.loads(
        (outputs / "takes" / "1" / "take.json").read_text())["tracks"])
    click(browser, "#takes li[data-take='1'] input.keep")
    until(browser, lambda d: next(t for t in state(url)["takes"] if t["id"] == 1)["kept"], 30)
    click(browser, "#takes li[data-take='2'] button.delete")
    until(browser, lambda d: [t["id"] for t in state(url)["takes"]] == [1], 30)
    assert not (outputs / "takes" / "2").exists()


def test_the_radio_never_plays_a_takes_track_and_hands_over(server, browser):
    """Finding 1: the radio's tracks come from a stream of seeds no run draws from (their seeds
    differ from every run's), it crossfades from one to the next, skips and pauses on a click,
    says what is next, and stops."""
    url, outputs, base = server
    run_seeds = set(json.loads((outputs / "generate" / "manifest.json").read_text())["stats"]["seeds"])
    css(browser, "#radio-on").click()
    now = lambda d: int(css(d, "#now-playing").get_attribute("data-index"))  # noqa: E731
    until(browser, lambda d: now(d) == 1, 300)
    assert until(browser, lambda d: d.execute_script(
        "return [...document.querySelectorAll('#radio-panel audio')].some(a => !a.paused && a.currentTime > 0)"), 60)
    until(browser, lambda d: css(d, "#radio-next").text.startswith("next: "), 300)
    until(browser, lambda d: json.loads(get(f"{url}/api/radio")[1])["made"] > now(d), 300)
    playing = now(browser)
    css(browser, "#radio-skip").click()
    until(browser, lambda d: now(d) == playing + 1, 60)  # the hand-over
    browser.save_screenshot(str(base / "radio.png"))
    css(browser, "#radio-pause").click()
    assert until(browser, lambda d: d.execute_script(
        "return [...document.querySelectorAll('#radio-panel audio')].every(a => a.paused)"), 30)
    assert css(browser, "#radio-pause").text == "Resume"
    radio = json.loads(get(f"{url}/api/radio")[1])
    assert radio["made"] - radio["played"] <= 2 and not radio["error"]
    radio_seeds = {t["seed"] for t in radio["queue"]}
    assert len(radio_seeds) == radio["made"] and not radio_seeds & run_seeds
    assert all("radio" in t["title"] for t in radio["queue"])
    assert (outputs / "radio" / "train" / "manifest.json").read_text() == \
        (outputs / "train" / "manifest.json").read_text()  # the same models, not retrained
    css(browser, "#radio-off").click()
    until(browser, lambda d: json.loads(get(f"{url}/api/radio")[1]) == {"on": False}, 60)


def test_the_radio_deletes_played_tracks_past_its_cap(tmp_path):
    """Only played tracks go, the oldest first, never the one playing or one waiting."""
    from lofi_pipeline.web.radio import Radio
    radio = Radio(ROOT, tmp_path, [], "test radio", ahead=2, kept=2)
    for i in range(1, 8):
        mp3 = tmp_path / "radio" / "tracks" / f"t{i}.mp3"
        mp3.parent.mkdir(parents=True, exist_ok=True)
        mp3.write_bytes(b"x")
        (tmp_path / "radio" / "daw" / f"t{i}").mkdir(parents=True)
        radio.queue.append({"index": i, "title": f"t{i}", "file": f"radio/tracks/t{i}.mp3", "seconds": 1.0})
    radio.started_playing(6)  # 1-5 played, 6 playing, 7 waiting: keep 4 and 5
    left = sorted(p.name for p in (tmp_path / "radio" / "tracks").iterdir())
    assert left == ["t4.mp3", "t5.mp3", "t6.mp3", "t7.mp3"]
    assert sorted(p.name for p in (tmp_path / "radio" / "daw").iterdir()) == ["t4", "t5", "t6", "t7"]
    assert radio.state()["on_disk"] == 4


def test_downloads_serve_only_the_runs_files(server):
    url, outputs, _ = server
    (outputs / "leak.txt").symlink_to(ROOT / "README.md")
    for path in ("../../etc/passwd", "%2e%2e/%2e%2e/etc/passwd", "..%2f..%2fetc%2fpasswd", "leak.txt",
                 "/etc/passwd", "uploads"):
        assert get(f"{url}/files/{path}")[0] == 404, path
    assert get(f"{url}/api/takes/99.zip")[0] == 404


def test_an_oversized_or_lengthless_upload_is_refused_with_a_message(server):
    """Refused on its headers, before a byte of the body is read (so the client sends none)."""
    import http.client
    from urllib.parse import urlsplit
    url, _, _ = server
    parts = urlsplit(url)
    for headers, status in (({"Content-Length": str(2 * 2**20)}, 413), ({"Transfer-Encoding": "chunked"}, 411)):
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        conn.putrequest("POST", "/api/upload?name=big.zip")
        conn.putheader("Content-Type", "application/zip")
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        if status == 411:
            conn.send(b"0\r\n\r\n")
        response = conn.getresponse()
        message = json.loads(response.read())["error"]
        assert response.status == status and ("over 1 MiB" in message or "Content-Length" in message)
        conn.close()


def test_another_sites_page_cannot_start_a_run(server):
    url, _, _ = server
    request = urllib.request.Request(f"{url}/api/run", b'{"profile": "quick"}',
                                     {"Content-Type": "text/plain", "Origin": "http://evil.example"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 403
    rebinding = urllib.request.Request(f"{url}/api/state", headers={"Host": "evil.example"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(rebinding, timeout=30)
    assert refused.value.code == 403
    assert get(f"{url}/files/%00")[0] == 404 and post_json(f"{url}/api/run", ["not", "an", "object"])[0] == 400
    status, body = post_json(f"{url}/api/run", {"profile": "quick", "tweaks": {"master.lowpass_hz": 10}})
    assert status == 400 and "master.lowpass_hz" in body["error"]  # the config's own range check
    status, body = post_json(f"{url}/api/run", {"profile": "quick", "tweaks": {"run.outputs": "/tmp"}})
    assert status == 400 and "cannot be changed here" in body["error"]


def test_a_second_run_while_one_runs_is_refused(server):
    url, _, _ = server
    assert post_json(f"{url}/api/run", {"profile": "quick", "archive": "/etc/passwd"})[0] == 400
    status, first = post_json(f"{url}/api/run", {"take": "current", "tweaks": {"generate.temperature": 0.9}})
    assert status == 200
    status, second = post_json(f"{url}/api/run", {"take": "current"})
    assert status == 409 and "one run at a time" in second["error"]
    assert post_json(f"{url}/api/stop", {})[0] == 200


def rss_bytes(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_500_mb_upload_goes_through_the_disk_not_memory(tmp_path):
    """Finding 7: the server reads an upload a chunk at a time into a file, so half a gigabyte
    raises its memory by less than 50 MB, and the file kept is the bytes sent."""
    import http.client
    from urllib.parse import urlsplit
    url, proc, _ = serve(tmp_path, "--set", "intake.max_read_mib=600")
    try:
        before = rss_bytes(proc.pid)
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
        chunk, total, digest = os.urandom(1 << 20), 500 << 20, hashlib.sha256()
        conn.putrequest("POST", "/api/upload?name=big.zip")
        conn.putheader("Content-Type", "application/zip")
        conn.putheader("Content-Length", str(total))
        conn.endheaders()
        peak = before
        for i in range(total >> 20):
            piece = (b"PK" + chunk[2:]) if i == 0 else chunk
            digest.update(piece)
            conn.send(piece)
            if i % 50 == 0:
                peak = max(peak, rss_bytes(proc.pid))
        response = conn.getresponse()
        body = json.loads(response.read())
        peak = max(peak, rss_bytes(proc.pid))
        assert response.status == 200 and body["bytes"] == total
        assert (peak - before) < 50 * 2**20, f"{(peak - before) / 2**20:.1f} MiB"
        kept = tmp_path / "outputs" / "uploads" / f"{digest.hexdigest()[:16]}.zip"
        assert kept.stat().st_size == total
        kept.unlink()
    finally:
        proc.terminate()
        proc.wait(30)


def test_stopping_the_server_stops_its_run(tmp_path):
    """SIGTERM to `lofi serve` mid-training: the server, its run and the run's workers end within
    seconds, and no stage after the last committed one has an artifact."""
    import signal
    outputs = tmp_path / "outputs"
    url, proc, _ = serve(tmp_path)
    uploaded = upload(url, quick_archive(tmp_path).read_bytes(), "songs.zip")[1]["archive"]
    assert post_json(f"{url}/api/run", {"profile": "quick", "archive": uploaded})[0] == 200
    assert wait_for(lambda: state(url)["run"]["stages"]["train"]["state"] == "running", proc, 300)
    worker = int(os.popen(f"pgrep -P {proc.pid} -f lofi_pipeline.web.worker").read().split()[0])
    group = os.getpgid(worker)
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    assert time.monotonic() - start < 30

    def group_gone() -> bool:
        try:
            os.killpg(group, 0)
            return False
        except ProcessLookupError:
            return True
    deadline = time.monotonic() + 30  # a guard against a hang; the group is usually gone already
    while not group_gone() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert group_gone()  # the run and every worker of its process group
    assert not (outputs / "train" / "manifest.json").exists() and not (outputs / "export").exists()
