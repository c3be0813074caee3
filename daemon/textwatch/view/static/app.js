// textwatch view: plain JavaScript, no build step. Every text from the daemon is written with
// textContent (never innerHTML), so an OCR'd "<script>" is shown as text, never run.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const FEED_MAX = 50;
const cameras = new Map();  // id -> {img, svg, state}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function time(ts) {
  return ts == null ? "" : new Date(ts * 1000).toLocaleString();
}

// ------------------------------------------------------------------ tabs

function show(tab) {
  for (const name of ["live", "history"]) {
    $(name).hidden = name !== tab;
    $("tab-" + name).classList.toggle("active", name === tab);
  }
}
$("tab-live").addEventListener("click", () => show("live"));
$("tab-history").addEventListener("click", () => show("history"));

// ------------------------------------------------------------------ live

function camera(id) {
  if (cameras.has(id)) return cameras.get(id);
  const img = el("img", {alt: "newest frame of " + id, "data-camera": id});
  const svg = document.createElementNS(SVG, "svg");
  const state = el("span", {class: "muted", text: ""});
  const title = el("h3", {}, document.createTextNode(id + " "), state);
  const stage = el("div", {class: "stage"}, img, svg);
  $("cameras").append(el("div", {class: "camera", id: "camera-" + id}, title, stage));
  const entry = {img, svg, state, seq: null, loading: false, next: null};
  cameras.set(id, entry);
  const option = el("option", {value: id, text: id});
  $("camera").append(option);
  return entry;
}

function drawBoxes(entry, frame) {
  const svg = entry.svg;
  svg.setAttribute("viewBox", `0 0 ${frame.width} ${frame.height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.replaceChildren();
  const size = Math.max(12, frame.height / 30);
  for (const box of frame.boxes) {
    const [x1, y1, x2, y2] = box.box;
    const rect = document.createElementNS(SVG, "rect");
    rect.setAttribute("x", x1); rect.setAttribute("y", y1);
    rect.setAttribute("width", x2 - x1); rect.setAttribute("height", y2 - y1);
    svg.append(rect);
    if (box.text) {
      const label = document.createElementNS(SVG, "text");
      label.setAttribute("x", x1); label.setAttribute("y", Math.max(size, y1 - 4));
      label.setAttribute("font-size", size);
      label.textContent = box.text;
      svg.append(label);
    }
  }
}

// One image request per camera at a time: a frame that arrives meanwhile replaces the waiting one.
function showFrame(frame) {
  const entry = camera(frame.camera);
  if (entry.loading) { entry.next = frame; return; }
  entry.loading = true;
  const url = `/api/cameras/${encodeURIComponent(frame.camera)}/frame.jpg?seq=${frame.seq}`;
  const done = () => {
    entry.loading = false;
    entry.seq = frame.seq;
    entry.img.dataset.seq = String(frame.seq);
    drawBoxes(entry, frame);
    if (entry.next) { const next = entry.next; entry.next = null; showFrame(next); }
  };
  entry.img.onload = done;
  entry.img.onerror = () => { entry.loading = false; };
  entry.img.src = url;
}

function showTrack(event) {
  const item = el("li", {class: "track-event"},
    el("span", {class: "muted", text: `${event.camera} #${event.track} ${event.event} `}),
    el("span", {class: "text", text: event.text}));
  $("feed").prepend(item);
  while ($("feed").children.length > FEED_MAX) $("feed").lastElementChild.remove();
}

function showStatus(status) {
  const rows = [];
  for (const [id, cam] of Object.entries(status.cameras)) {
    const entry = camera(id);
    const word = cam.up === null ? "unknown" : cam.up ? "up" : "down";
    entry.state.textContent = word;
    entry.state.className = cam.up ? "up" : cam.up === false ? "down" : "muted";
    rows.push(el("tr", {}, el("td", {text: id}), el("td", {class: entry.state.className, text: word}),
      el("td", {text: `${cam.frames_read} frames, ${cam.live_tracks} tracks`})));
  }
  for (const [key, value] of Object.entries(status.counters)) {
    rows.push(el("tr", {}, el("td", {text: key.replaceAll("_", " ")}), el("td", {text: String(value)})));
  }
  $("status").tBodies[0].replaceChildren(...rows);
}

function showSource(event) {
  const entry = camera(event.camera);
  entry.state.textContent = event.event === "source_up" ? "up" : `down (${event.reason})`;
  entry.state.className = event.event === "source_up" ? "up" : "down";
}

function connect() {
  const stream = new EventSource("/api/events");
  stream.onopen = () => { $("connection").textContent = "live"; };
  stream.onerror = () => { $("connection").textContent = "reconnecting…"; };
  const on = (kind, fn) => stream.addEventListener(kind, (e) => fn(JSON.parse(e.data)));
  on("frame", showFrame);
  on("track", showTrack);
  on("status", showStatus);
  on("source", showSource);
}

// ------------------------------------------------------------------ history

function queryParams() {
  const params = new URLSearchParams();
  const q = $("q").value.trim();
  if (q) params.set("q", q);
  if ($("fuzzy").checked) params.set("fuzzy", "1");
  if ($("camera").value) params.set("camera", $("camera").value);
  for (const key of ["since", "until"]) {
    if ($(key).value) params.set(key, String(new Date($(key).value).getTime() / 1000));
  }
  return params;
}

function showHit(hit) {
  const picture = hit.crop ? el("img", {src: hit.crop, alt: "crop of track " + hit.id, class: "crop"})
                           : el("p", {class: "muted", text: "no picture"});
  const score = hit.score == null ? "" : ` · score ${hit.score}`;
  return el("div", {class: "hit"}, picture,
    el("div", {class: "text", text: hit.text}),
    el("div", {class: "muted", text: `${hit.camera} #${hit.track} · ${time(hit.last_ts)} · conf ${hit.confidence}${score}`}));
}

async function search(event) {
  if (event) event.preventDefault();
  const params = queryParams();
  $("csv").href = "/api/history.csv?" + params;
  $("summary").className = "muted";
  $("summary").textContent = "searching…";
  const response = await fetch("/api/history?" + params);
  const body = await response.json();
  if (!response.ok) {
    $("summary").className = "error";
    $("summary").textContent = body.error;
    $("hits").replaceChildren();
    return;
  }
  $("summary").textContent = `${body.count} hit${body.count === 1 ? "" : "s"}`;
  $("hits").replaceChildren(...body.hits.map(showHit));
}
$("search").addEventListener("submit", search);

connect();
