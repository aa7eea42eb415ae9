// The page: the server pushes its whole state (server-sent events) whenever it changes, so a
// reloaded page shows the run, the take and the settings in use as they are. Tracks keep their
// player while a tweak re-renders: the file is swapped in place when its name (a digest of its
// bytes) changes. The controls, their ranges and defaults come from the server's settings.toml.
"use strict";
const $ = (sel) => document.querySelector(sel);
let current = { tracks: [], takes: [], choice: null, settled: null, run: null };
let controls = [];
const moved = new Set();  // the controls the listener touched since the last Apply

function say(text) { $("#message").textContent = text; }

async function post(url, body) {
  const response = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body || {}) });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

async function upload(file) {
  // The zip goes as the request's body, read by the server a chunk at a time.
  const response = await fetch(`/api/upload?name=${encodeURIComponent(file.name)}`,
    { method: "POST", headers: { "Content-Type": "application/zip" }, body: file });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function tweaks() {
  const out = {};
  for (const c of controls) {
    const el = document.querySelector(`[data-key="${c.key}"]`);
    if (moved.has(c.key)) out[c.key] = c.kind === "slider" ? Number(el.value) : el.value;
  }
  return out;
}

async function start() {
  try {
    let archive = "";
    if (document.querySelector("input[name=source]:checked").value === "upload") {
      const file = $("#archive").files[0];
      if (!file) { say("choose a zip of MIDI files first"); return; }
      say(`uploading ${file.name} ...`);
      archive = (await upload(file)).archive;
    }
    const started = await post("/api/run", { archive, profile: $("#profile").value, tweaks: tweaks() });
    moved.clear();
    say(`started ${started.take}`);
  } catch (err) { say(err.message); }
}

// The track being listened to, if any: a revision makes it first (a preview), heard within seconds.
function playingTrack() {
  const div = [...document.querySelectorAll("#tracks .track")].find((d) => !d.querySelector("audio").paused);
  return div ? Number(div.dataset.index) : null;
}

async function apply() {
  try {
    const started = await post("/api/run", { take: "current", tweaks: tweaks(), playing: playingTrack() });
    moved.clear();
    say(`applying to ${started.take}`);
  } catch (err) { say(err.message); }
}

function shown(c, value) {
  if (value === "auto" || value === undefined || value === null) return "auto";
  return c.kind === "slider" ? String(Number(value)) : String(value);
}

async function buildControls() {
  const data = await (await fetch("/api/controls")).json();
  controls = data.controls;
  if (!$("#profile").options.length) {  // once: a rebuild of the controls keeps the listener's choice
    $("#profile").replaceChildren(...Object.entries(data.profiles).map(([name, words]) => {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = words;
      return option;
    }));
  }
  const box = $("#controls");
  box.replaceChildren();
  for (const c of controls) {
    const label = document.createElement("label");
    label.title = c.help;
    const name = document.createElement("span");
    name.textContent = c.key.split(".")[1].replaceAll("_", " ");
    let input;
    if (c.kind === "slider") {
      input = document.createElement("input");
      input.type = "range";
      [input.min, input.max, input.step] = c.range.map(String);
      input.value = c.default === "auto" ? String((c.range[0] + c.range[1]) / 2) : String(c.default);
    } else {
      input = document.createElement("select");
      for (const option of c.options) {
        const o = document.createElement("option");
        o.value = o.textContent = option; input.append(o);
      }
      input.value = c.default;
    }
    input.dataset.key = c.key;
    const value = document.createElement("output");
    value.dataset.for = c.key;
    value.textContent = shown(c, c.default);
    input.addEventListener("input", () => { moved.add(c.key); value.textContent = shown(c, input.value); plan(); });
    const reruns = document.createElement("span");
    reruns.className = "reruns";
    reruns.dataset.for = c.key;
    reruns.textContent = c.reruns ? `re-runs ${c.reruns.join(", ")}` : "";
    label.append(name, input, value, reruns);
    box.append(label);
  }
  showSettings();
}

// What a change re-runs, before Apply: the union of the moved controls' stages.
function plan() {
  const stages = new Set();
  for (const c of controls) if (moved.has(c.key) && c.reruns) c.reruns.forEach((s) => stages.add(s));
  $("#apply-plan").textContent = stages.size ? `Apply re-runs: ${[...stages].join(", ")}` : "nothing to apply yet";
}

// The controls show the settings the take on screen was made with (after a reload too).
function showSettings() {
  const inUse = (current.settled || current.choice || { tweaks: {} }).tweaks;
  for (const c of controls) {
    if (moved.has(c.key)) continue;
    const el = document.querySelector(`[data-key="${c.key}"]`);
    const value = c.key in inUse ? inUse[c.key] : c.default;
    if (value !== "auto") el.value = String(value);
    document.querySelector(`output[data-for="${c.key}"]`).textContent = shown(c, value);
  }
  const listed = Object.entries(inUse).map(([k, v]) => `${k} = ${v}`);
  $("#current-tweaks").textContent = listed.length ? listed.join(", ") : "defaults";
  plan();
}

function stageText(info) {
  if (info.state === "running") return "running";
  if (info.state === "done") return info.seconds != null ? `done in ${info.seconds.toFixed(1)} s` : "done";
  if (info.state === "cached") return info.seconds != null ? `cached (built in ${info.seconds.toFixed(1)} s)` : "cached";
  return info.state;
}

function renderRun(run) {
  const list = $("#stages");
  for (const [name, info] of Object.entries(run.stages)) {
    let li = list.querySelector(`li[data-stage=${name}]`);
    if (!li) {
      li = document.createElement("li"); li.dataset.stage = name;
      li.innerHTML = "<span class=name></span><span class=what></span>";
      li.querySelector(".name").textContent = name; list.append(li);
    }
    li.dataset.state = info.state;
    li.querySelector(".what").textContent = stageText(info);
    li.title = info.why || "";
  }
  const t = run.training;
  const training = run.status === "running" && t.checks > 0;
  $("#training").hidden = !training;
  if (training) {
    $("#train-progress").value = t.of ? Math.min(1, t.checks / t.of) : 0;
    $("#train-text").textContent = `training: check ${t.checks} of at most ${t.of}, dev loss ` +
      `${t.dev_loss[t.dev_loss.length - 1].toFixed(3)}` + (t.eta_s ? `, about ${t.eta_s} s left` : "");
  }
  const notice = $("#notice");
  notice.dataset.kind = run.status;
  const name = current.choice ? current.choice.name : "";
  notice.textContent = {
    idle: current.settled ? `On screen: ${current.settled.name}` : (current.tracks.length ?
      "The outputs hold a finished run that is not a take (made with the command line); start a take to keep one." :
      "No run yet: start a take."),
    running: `Making ${name} ...`,
    done: `Done: ${name} in ${run.seconds} s.`,
    failed: `Failed: ${name}.`,
    stopped: `Stopped: ${name} (finished stages are kept).`,
  }[run.status] || run.status;
  $("#error").textContent = run.status === "failed" ? run.error : "";
  document.body.dataset.run = run.status;
}

function link(href, text) {
  const a = document.createElement("a");
  a.href = href; a.textContent = text; a.download = ""; return a;
}

// A new file for a track's player, in place: the same music (re-mastered, or the take's copy of a
// preview) goes on from where it was, a track made anew from its start; a player that was playing
// goes on playing.
function swapSource(audio, src, fromStart) {
  if (audio.getAttribute("src") === src) return;
  const wasPlaying = !audio.paused, at = audio.currentTime;
  if (audio.seekBack) audio.removeEventListener("loadedmetadata", audio.seekBack);
  audio.seekBack = null;
  audio.setAttribute("src", src);
  audio.load();
  if (!fromStart && at > 0) {
    audio.seekBack = () => { audio.currentTime = at; audio.seekBack = null; };
    audio.addEventListener("loadedmetadata", audio.seekBack, { once: true });
  }
  if (wasPlaying) audio.play().catch(() => {});
}

// While a revision runs, a track made first plays in place of the take's.
function renderPreviews(run) {
  if (run.status !== "running") return;
  for (const [index, preview] of Object.entries(run.previews || {})) {
    const div = document.querySelector(`#tracks .track[data-index="${index}"]`);
    if (!div || div.dataset.preview === preview.file) continue;
    div.dataset.preview = preview.file;
    swapSource(div.querySelector("audio"), `/files/${preview.file}`, preview.how !== "re-mastered");
    say(`track ${index} ${preview.how} in ${preview.seconds} s (playing it); the rest of the take follows`);
  }
}

async function retake(index) {
  try {
    await post("/api/retake", { index });
    say(`making a new take of track ${index} ...`);
  } catch (err) { say(err.message); }
}

function renderTracks(tracks) {
  const box = $("#tracks");
  $("#take-name").textContent = current.settled ? current.settled.name :
    (tracks.length ? "the last run (its take was deleted)" : "no take yet");
  for (const t of tracks) {
    let div = box.querySelector(`.track[data-index="${t.index}"]`);
    if (!div) {
      div = document.createElement("div");
      div.className = "track"; div.dataset.index = t.index;
      div.innerHTML = "<h3></h3><p class=meta></p><audio controls preload=metadata></audio><p class=links></p>" +
        "<button class=retake></button><img alt='piano roll'>";
      div.querySelector(".retake").textContent = `New take of track ${t.index}`;
      div.querySelector(".retake").addEventListener("click", () => retake(t.index));
      box.append(div);
    }
    div.querySelector("h3").textContent = t.title;
    div.querySelector(".meta").textContent = [t.key && `key ${t.key}`, t.tempo_bpm && `${t.tempo_bpm} BPM`,
      t.metre, `${Math.round(t.seconds)} s`, t.form, t.melody && `melody: ${t.melody}`, t.drums && `drums: ${t.drums}`,
      t.seed !== null && `seed ${t.seed}`].filter(Boolean).join(" · ");
    delete div.dataset.preview;
    swapSource(div.querySelector("audio"), `/files/${t.mp3}`, false);
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

let takesShown = "";

function renderTakes(takes) {
  const list = $("#takes");
  if (JSON.stringify(takes) === takesShown) return;  // a list being clicked is not rebuilt under the mouse
  takesShown = JSON.stringify(takes);
  list.replaceChildren(...takes.map((take) => {
    const li = document.createElement("li");
    li.dataset.take = take.id;
    const seconds = Math.round(take.tracks.reduce((s, t) => s + t.seconds, 0));
    const length = `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
    const label = document.createElement("span");
    label.textContent = `${take.name}: ${take.tracks.length} tracks, ${length}, made ${take.created} `;
    const keep = document.createElement("label");
    keep.style.display = "inline";
    const box = document.createElement("input");
    box.type = "checkbox"; box.checked = take.kept; box.className = "keep";
    box.addEventListener("change", () => post(`/api/takes/${take.id}/keep`, { kept: box.checked }).catch((e) => say(e.message)));
    keep.append(box, " keep ");
    const del = document.createElement("button");
    del.textContent = "Delete"; del.className = "delete";
    del.addEventListener("click", () => post(`/api/takes/${take.id}/delete`).then(() => say(`deleted ${take.name}`), (e) => say(e.message)));
    li.append(label, keep, link(`/api/takes/${take.id}.zip`, "Download (zip)"), " ", del);
    return li;
  }));
}

function connect() {
  const source = new EventSource("/api/events");
  source.onmessage = (event) => {
    const was = current.run ? current.run.status : null;
    current = JSON.parse(event.data);
    if (was === null) {  // a (re)loaded page starts from the choices the take on screen was made with
      const made = current.settled || current.choice;
      if (made) $("#profile").value = made.profile;
    }
    renderRun(current.run);
    renderPreviews(current.run);
    renderTakes(current.takes);
    if (current.run.status !== "running") renderTracks(current.tracks);
    if (was !== current.run.status && controls.length) buildControls();  // what each key re-runs may be known now
    else if (controls.length) showSettings();
  };
}

// The radio: two players, the next one fading in over the last seconds of the one playing.
const FADE_S = 1.5;
const radio = { queue: [], source: null, players: [$("#radio-a"), $("#radio-b")], active: 0, index: 0, fading: false,
  paused: false };

function radioNext() {
  const next = radio.queue.find((t) => t.index > radio.index);
  if (!next || radio.fading || radio.paused) return;
  const from = radio.players[radio.active], to = radio.players[1 - radio.active];
  to.src = `/files/${next.file}`; to.volume = 0; to.play();
  radio.fading = true; radio.index = next.index; radio.active = 1 - radio.active;
  $("#now-playing").dataset.index = next.index;
  $("#now-playing").textContent = `now playing: ${next.title}`;
  post("/api/radio/playing", { index: next.index }).catch(() => {});
  if (radio.last) radioShow(radio.last);
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

function radioShow(state) {
  radio.last = state;
  const waiting = radio.queue.filter((t) => t.index > radio.index);
  $("#radio-next").textContent = waiting.length ? `next: ${waiting[0].title}` :
    (radio.source ? "next: being made ..." : "");
  $("#radio-status").textContent = state.error || `${state.made} made, ${state.made - state.played} waiting, ` +
    `${state.on_disk} on disk`;
}

async function radioOn() {
  try {
    await post("/api/radio/start");
    radio.paused = false;
    if (radio.source) radio.source.close();
    radio.source = new EventSource("/api/radio/events");
    radio.source.onmessage = (event) => {
      const state = JSON.parse(event.data);
      radio.queue = state.queue;
      radioShow(state);
      const active = radio.players[radio.active];
      if (!radio.index || active.ended || (active.paused && !radio.paused)) radioNext();
    };
  } catch (err) { $("#radio-status").textContent = err.message; }
}

function radioSkip() {
  if (radio.fading) return;
  const next = radio.queue.find((t) => t.index > radio.index);
  if (!next) { $("#radio-status").textContent = "the next track is being made; it plays when ready"; return; }
  radio.paused = false; $("#radio-pause").textContent = "Pause";
  radioNext();
}

function radioPause() {
  const active = radio.players[radio.active];
  radio.paused = !radio.paused;
  if (radio.paused) active.pause(); else active.play();
  $("#radio-pause").textContent = radio.paused ? "Resume" : "Pause";
}

function radioOff() {
  if (radio.source) radio.source.close();
  radio.source = null;
  for (const player of radio.players) player.pause();
  post("/api/radio/stop").catch(() => {});
  $("#radio-next").textContent = "";
}

$("#archive").addEventListener("change", () => { document.querySelector("input[name=source][value=upload]").checked = true; });
$("#radio-on").addEventListener("click", radioOn);
$("#radio-skip").addEventListener("click", radioSkip);
$("#radio-pause").addEventListener("click", radioPause);
$("#radio-off").addEventListener("click", radioOff);
$("#start").addEventListener("click", start);
$("#apply").addEventListener("click", apply);
$("#reset").addEventListener("click", () => {
  moved.clear();
  post("/api/reset").then(() => say("back to the defaults"), (e) => say(e.message));
});
$("#stop").addEventListener("click", () => post("/api/stop").then(() => say("stopped"), (e) => say(e.message)));
buildControls().then(connect);
