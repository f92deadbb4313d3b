"use strict";
// The page of fastmlp serve. A drawing (pointer events: mouse, finger or pen) or an image file goes
// to POST /predict; the drawing as a PNG, debounced: WAIT_MS after it last changed, or MAX_WAIT_MS
// after its first unasked change while it keeps changing. The answer shows the ranked letters and
// the 28 × 28 input the network received; a refusal of the conversion rule shows its words.

const PEN_WIDTH = 18; // canvas pixels, of 280
const WAIT_MS = 120;
const MAX_WAIT_MS = 400;
const TOP = 5; // letters shown

const canvas = document.getElementById("canvas");
const pen = canvas.getContext("2d");
const statusLine = document.getElementById("status");
const errorLine = document.getElementById("error");
const letters = document.getElementById("letters");
const seen = document.getElementById("seen");
const seenImage = document.getElementById("input");
const fileInput = document.getElementById("file");

const strokes = new Map(); // pointer id -> its last point, while it draws
let cleared = 0; // counts Clear and opened files: an answer about an older picture is dropped
let timer = null;
let firstChange = null; // when the drawing first changed since the last question
let asking = false;
let askAgain = false;

function element(tag, text, className) {
  const made = document.createElement(tag);
  if (text !== undefined) made.textContent = text;
  if (className) made.className = className;
  return made;
}

function percent(p) {
  return p < 0.001 ? "<0.1%" : `${(100 * p).toFixed(1)}%`;
}

// ------------------------------------------------------------------ drawing
function blank() {
  pen.fillStyle = "#fff";
  pen.fillRect(0, 0, canvas.width, canvas.height);
}

function pointOf(event) {
  const box = canvas.getBoundingClientRect();
  return [
    ((event.clientX - box.left) * canvas.width) / box.width,
    ((event.clientY - box.top) * canvas.height) / box.height,
  ];
}

function line(from, to) {
  pen.strokeStyle = "#000";
  pen.lineWidth = PEN_WIDTH;
  pen.lineCap = "round";
  pen.lineJoin = "round";
  pen.beginPath();
  pen.moveTo(...from);
  pen.lineTo(...to);
  pen.stroke();
}

canvas.addEventListener("pointerdown", (event) => {
  if (event.button !== 0) return;
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId);
  const point = pointOf(event);
  strokes.set(event.pointerId, point);
  line(point, point);
  changed();
});

canvas.addEventListener("pointermove", (event) => {
  let last = strokes.get(event.pointerId);
  if (last === undefined) return;
  const moves = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  for (const move of moves.length ? moves : [event]) {
    const point = pointOf(move);
    line(last, point);
    last = point;
  }
  strokes.set(event.pointerId, last);
  changed();
});

for (const type of ["pointerup", "pointercancel"]) {
  canvas.addEventListener(type, (event) => strokes.delete(event.pointerId));
}

// ------------------------------------------------------------ asking the server
function changed() {
  const now = performance.now();
  if (firstChange === null) firstChange = now;
  clearTimeout(timer);
  timer = setTimeout(ask, Math.min(WAIT_MS, firstChange + MAX_WAIT_MS - now));
}

function ask() {
  timer = null;
  firstChange = null;
  if (asking) {
    askAgain = true;
    return;
  }
  asking = true;
  canvas.toBlob(async (png) => {
    await send(png, "drawing", "dark"); // the canvas: black ink on white
    asking = false;
    if (askAgain) {
      askAgain = false;
      ask();
    }
  }, "image/png");
}

async function send(body, name, ink = "auto") {
  const picture = cleared;
  let reply, answer;
  try {
    reply = await fetch(`predict?top=${TOP}&ink=${ink}&name=${encodeURIComponent(name)}`, {
      method: "POST",
      body,
      headers: { "Content-Type": body.type || "application/octet-stream" },
    });
    answer = await reply.json();
  } catch {
    if (picture === cleared) refuse("The server did not answer: is fastmlp serve still running?");
    return;
  }
  if (picture !== cleared) return;
  if (reply.ok) show(answer);
  else refuse(answer.error);
}

function show(answer) {
  const ranked = [{ letter: answer.letter, probability: answer.probability }, ...answer.next];
  errorLine.hidden = true;
  statusLine.className = "answer";
  statusLine.replaceChildren(element("span", answer.letter, "letter"), `${percent(answer.probability)} sure`);
  letters.replaceChildren(
    ...ranked.map(({ letter, probability }) => {
      const row = element("li");
      const bar = element("span", undefined, "bar");
      const fill = element("span");
      fill.style.width = `${100 * probability}%`;
      bar.append(fill);
      row.append(element("span", letter, "name"), bar, element("span", percent(probability), "p"));
      return row;
    }),
  );
  seenImage.src = answer.input;
  seen.hidden = false;
}

function refuse(message) {
  statusLine.className = "";
  statusLine.textContent = "Not read:";
  errorLine.textContent = message;
  errorLine.hidden = false;
  letters.replaceChildren();
  seen.hidden = true;
}

function clear() {
  cleared += 1;
  clearTimeout(timer);
  timer = null;
  firstChange = null;
  askAgain = false;
  strokes.clear();
  blank();
  statusLine.className = "";
  statusLine.textContent = "Draw a letter.";
  errorLine.hidden = true;
  letters.replaceChildren();
  seen.hidden = true;
}

// ---------------------------------------------------------------- image files
async function openFile(file) {
  if (!file) return;
  clear();
  try {
    const picture = await createImageBitmap(file);
    const scale = Math.min(canvas.width / picture.width, canvas.height / picture.height);
    const [width, height] = [picture.width * scale, picture.height * scale];
    pen.drawImage(picture, (canvas.width - width) / 2, (canvas.height - height) / 2, width, height);
  } catch {
    // not a picture the browser shows: the server's answer says what is wrong with it
  }
  await send(file, file.name);
}

fileInput.addEventListener("change", () => {
  openFile(fileInput.files[0]);
  fileInput.value = "";
});
document.addEventListener("dragover", (event) => {
  event.preventDefault();
  document.body.classList.add("dropping");
});
document.addEventListener("dragleave", () => document.body.classList.remove("dropping"));
document.addEventListener("drop", (event) => {
  event.preventDefault();
  document.body.classList.remove("dropping");
  openFile(event.dataTransfer.files[0]);
});
document.getElementById("clear").addEventListener("click", clear);

// ------------------------------------------------------------- about the model
const LABELS = { precision: "trained with precision", fastmlp_version: "written by fastmlp" };

// a recorded value in words: a full batch (batch_size null) as "full", fractions to 4 digits
function words(value, key) {
  if (value !== null && typeof value === "object") {
    return Object.entries(value)
      .map(([inner, innerValue]) => `${inner.replaceAll("_", " ")} ${words(innerValue, inner)}`)
      .join(", ");
  }
  if (value === null && key === "batch_size") return "full";
  if (typeof value === "number" && !Number.isInteger(value)) return String(Number(value.toPrecision(4)));
  return String(value);
}

// the settings of each fit (a list): a row per fit, "training" when there was one
function recordedRows(key, value) {
  if (key === "training" && Array.isArray(value)) {
    return value.map((fit, i) => [value.length === 1 ? "training" : `fit ${i + 1}`, words(fit)]);
  }
  return [[LABELS[key] || key.replaceAll("_", " "), words(value)]];
}

async function about() {
  const facts = await (await fetch("model")).json();
  const rows = [
    ["file", facts.file],
    ["layers", `${facts.layers.join(" → ")} (H = ${facts.layers[1]} hidden units)`],
    ["letters", facts.classes.join(" ")],
    ["dtype", facts.dtype],
    ["backend", [`${facts.backend} on ${facts.device}`, words(facts.threads)].filter(Boolean).join("; ")],
    ["precision", facts.precision],
    ...Object.entries(facts.recorded).flatMap(([key, value]) => recordedRows(key, value)),
  ];
  document.getElementById("facts").replaceChildren(...rows.flatMap(([key, value]) => [element("dt", key), element("dd", value)]));
}

clear();
about();
