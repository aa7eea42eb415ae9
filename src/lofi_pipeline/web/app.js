// The page: the server pushes its whole state (server-sent events) whenever it changes, so a
// reloaded page shows the run as it is. Tracks keep their player while a tweak re-renders: the
// file is swapped in place when its name (a digest of its bytes) changes.
"use strict";
const $ = (sel) => document.querySelector(sel);
let current = { tracks: [] };

function say(text) { $("#message").textContent = text; }

async function post(url, body) {
  const response = await fetch(url, body instanceof FormData ? { method: "POST", body } :
    { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}) });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

async function start(tweaks) {
  try {
    let archive = "";
    if (tweaks && current.choice) {  // a tweak re-runs what is on the page, whatever the controls say now
      await post("/api/run", { archive: current.choice.archive, profile: current.choice.profile, tweaks });
      say("started");
      return;
    }
    if (document.querySelector("input[name=source]:checked").value === "upload") {
      const file = $("#archive").files[0];
      if (!file) { say("choose a zip of MIDI files first"); return; }
      const form = new FormData();
      form.append("archive", file);
      say(`uploading ${file.name} ...`);
      archive = (await post("/api/upload", form)).archive;
    }
    await post("/api/run", { archive, profile: $("#profile").value, tweaks: tweaks || {} });
    say("started");
  } catch (err) { say(err.message); }
}

const moved = new Set();  // only the controls the listener touched: a preset's own values stay
for (const el of document.querySelectorAll("[data-key]")) el.addEventListener("input", () => moved.add(el.dataset.key));

function tweaks() {
  const out = {};
  for (const el of document.querySelectorAll("[data-key]")) if (moved.has(el.dataset.key)) out[el.dataset.key] = el.value;
  return out;
}

function renderStages(run) {
  const list = $("#stages");
  for (const [name, info] of Object.entries(run.stages)) {
    let li = list.querySelector(`li[data-stage=${name}]`);
    if (!li) { li = document.createElement("li"); li.dataset.stage = name; li.textContent = name; list.append(li); }
    li.dataset.state = info.state;
    li.title = info.seconds !== undefined ? `${info.seconds} s` : "";
  }
  const t = run.training;
  $("#training").textContent = t.checks ? `training: check ${t.checks} of at most ${t.of}, dev loss ` +
    `${t.dev_loss[t.dev_loss.length - 1].toFixed(3)}` + (t.eta_s ? `, about ${t.eta_s} s left` : "") : "";
  $("#error").textContent = run.status === "failed" ? run.error : "";
  document.body.dataset.run = run.status;
}

function link(href, text) {
  const a = document.createElement("a");
  a.href = href; a.textContent = text; a.download = ""; return a;
}

function renderTracks(tracks) {
  const box = $("#tracks");
  for (const t of tracks) {
    let div = box.querySelector(`.track[data-index="${t.index}"]`);
    if (!div) {
      div = document.createElement("div");
      div.className = "track"; div.dataset.index = t.index;
      div.innerHTML = "<h3></h3><p class=meta></p><audio controls preload=metadata></audio><p class=links></p><img alt='piano roll'>";
      box.append(div);
    }
    div.querySelector("h3").textContent = t.title;
    div.querySelector(".meta").textContent = [t.key && `key ${t.key}`, t.tempo_bpm && `${t.tempo_bpm} BPM`,
      t.metre, `${Math.round(t.seconds)} s`, t.form, t.seed !== null && `seed ${t.seed}`].filter(Boolean).join(" · ");
    const audio = div.querySelector("audio");
    const src = `/files/${t.mp3}`;
    if (audio.getAttribute("src") !== src) { audio.setAttribute("src", src); audio.load(); }
    const links = div.querySelector(".links");
    const items = [link(`/files/${t.mp3}?download=1`, "MP3")];
    if (t.wav) items.push(link(`/files/${t.wav}?download=1`, "WAV"));
    if (t.midi) items.push(link(`/files/${t.midi}?download=1`, "MIDI"));
    for (const f of t.stems.filter((name) => name.endsWith(".wav"))) items.push(link(`/files/${f}?download=1`, f.split("_").pop()));
    links.replaceChildren(...items.flatMap((a, i) => (i ? [" · ", a] : [a])));
    const img = div.querySelector("img");
    if (t.roll && img.dataset.for !== t.mp3) { img.dataset.for = t.mp3; img.src = `${t.roll}?v=${encodeURIComponent(t.mp3)}`; }
  }
  for (const div of box.querySelectorAll(".track")) {
    if (!tracks.some((t) => String(t.index) === div.dataset.index)) div.remove();
  }
}

function connect() {
  const source = new EventSource("/api/events");
  source.onmessage = (event) => {
    current = JSON.parse(event.data);
    renderStages(current.run);
    if (current.run.status !== "running") renderTracks(current.tracks);
  };
}

// The radio: two players, the next one fading in over the last seconds of the one playing.
const FADE_S = 1.5;
const radio = { queue: [], source: null, players: [$("#radio-a"), $("#radio-b")], active: 0, index: 0, fading: false };

function radioNext() {
  const next = radio.queue.find((t) => t.index > radio.index);
  if (!next || radio.fading) return;
  const from = radio.players[radio.active], to = radio.players[1 - radio.active];
  to.src = `/files/${next.file}`; to.volume = 0; to.play();
  radio.fading = true; radio.index = next.index; radio.active = 1 - radio.active;
  $("#now-playing").dataset.index = next.index;
  $("#now-playing").textContent = `now playing: ${next.title}`;
  post("/api/radio/playing", { index: next.index }).catch(() => {});
  const started = performance.now();
  const ramp = setInterval(() => {
    const x = Math.min(1, (performance.now() - started) / (FADE_S * 1000));
    to.volume = x; if (!from.paused) from.volume = 1 - x;
    if (x >= 1) { clearInterval(ramp); from.pause(); radio.fading = false; }
  }, 50);
}

for (const player of radio.players) {
  player.addEventListener("timeupdate", () => {
    if (player === radio.players[radio.active] && player.duration - player.currentTime < FADE_S) radioNext();
  });
  player.addEventListener("ended", () => { if (player === radio.players[radio.active]) radioNext(); });
}

async function radioOn() {
  try {
    await post("/api/radio/start");
    if (radio.source) radio.source.close();
    radio.source = new EventSource("/api/radio/events");
    radio.source.onmessage = (event) => {
      const state = JSON.parse(event.data);
      radio.queue = state.queue;
      $("#radio-status").textContent = state.error || `${state.made} made, ${state.made - state.played} waiting`;
      const active = radio.players[radio.active];
      if (!radio.index || active.ended || active.paused) radioNext();
    };
  } catch (err) { $("#radio-status").textContent = err.message; }
}

function radioOff() {
  if (radio.source) radio.source.close();
  radio.source = null;
  for (const player of radio.players) player.pause();
}

$("#radio-on").addEventListener("click", radioOn);
$("#radio-off").addEventListener("click", radioOff);
$("#start").addEventListener("click", () => start());
$("#apply").addEventListener("click", () => start(tweaks()));
$("#stop").addEventListener("click", () => post("/api/stop").then(() => say("stopped"), (e) => say(e.message)));
connect();
