// tastegraph demo page: text search, search by photo, "more like this", pagination.
const results = document.getElementById("results");
const statusEl = document.getElementById("status");
const more = document.getElementById("more");
let nextPage = null;
// Raw per-signal scores are for tuning search: shown only when the page is opened with ?explain=1.
const explain = ["1", "true", "yes"].includes(new URLSearchParams(location.search).get("explain"));
const explainQuery = explain ? "&explain=true" : "";
const keepExplain = explain ? "&explain=1" : "";

function show(msg) { statusEl.textContent = msg; }

function card(hit) {
  const pin = hit.pin;
  const el = document.createElement("article");
  el.className = "card";
  el.dataset.pinId = pin.id;
  const img = document.createElement("img");
  img.src = pin.thumbnail_url;
  img.alt = pin.title || (pin.labels[0] && pin.labels[0].label) || "pin " + pin.id;
  img.loading = "lazy";
  img.addEventListener("click", () => similar(pin.id));
  const meta = document.createElement("div");
  meta.className = "meta";
  const title = document.createElement("div");
  title.className = "title";
  title.textContent = pin.title || pin.tags.slice(0, 3).join(", ");
  const sig = document.createElement("div");
  sig.className = "signals";
  if (explain && hit.signals) sig.textContent = Object.entries(hit.signals).map(([k, v]) => k + " " + v).join(" · ");
  const btn = document.createElement("button");
  btn.textContent = "More like this";
  btn.addEventListener("click", () => similar(pin.id));
  meta.append(title, sig, btn);
  el.append(img, meta);
  return el;
}

async function fetchJSON(url, opts) {
  const r = await fetch(url, opts);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error ? body.error.message + (body.error.hint ? " — " + body.error.hint : "") : r.statusText);
  return body;
}

function render(body, append) {
  if (!append) results.replaceChildren();
  const items = body.results.map(x => x.pin ? x : { pin: x, signals: null });
  for (const hit of items) results.append(card(hit));
  more.hidden = body.next_offset == null;
  // A ranked search knows its exact count only when it saw every match (total is null
  // otherwise): then say how many are shown, never a search depth dressed up as a count.
  const shown = results.children.length;
  if (body.total === 0 || shown === 0) show("No results.");
  else if (typeof body.total === "number") show(`${body.total} result${body.total === 1 ? "" : "s"}`);
  else show(`${shown} shown${body.next_offset == null ? "" : " · more below"}`);
}

async function load(makeUrl, append = false, view = "browse") {
  try {
    show("Searching…");
    const body = await fetchJSON(makeUrl(append ? nextPage.offset : 0));
    nextPage = { makeUrl, offset: body.next_offset, view };
    render(body, append);
    results.dataset.view = view;  // what the grid shows now (tests and styles key on it)
  } catch (e) { show("Error: " + e.message); }
}

function textSearch(q) {
  history.replaceState(null, "", "?q=" + encodeURIComponent(q) + keepExplain);
  load(off => `/search?q=${encodeURIComponent(q)}&limit=30&offset=${off}${explainQuery}`, false, "search:" + q);
}

function similar(id) {
  history.replaceState(null, "", "?similar=" + id + keepExplain);
  window.scrollTo(0, 0);
  load(off => `/pins/${id}/similar?limit=30&offset=${off}${explainQuery}`, false, "similar:" + id);
}

async function photoSearch(file) {
  const fd = new FormData();
  fd.append("file", file);
  fd.append("limit", "30");
  if (explain) fd.append("explain", "true");
  try {
    show("Searching by photo…");
    const body = await fetchJSON("/search/image", { method: "POST", body: fd });
    nextPage = null;
    render(body, false);
    results.dataset.view = "photo";
    more.hidden = true;
  } catch (e) { show("Error: " + e.message); }
}

document.getElementById("text-search").addEventListener("submit", ev => {
  ev.preventDefault();
  const q = document.getElementById("q").value.trim();
  if (q) textSearch(q);
});
document.getElementById("photo").addEventListener("change", ev => {
  if (ev.target.files.length) photoSearch(ev.target.files[0]);
});
more.addEventListener("click", () => nextPage && nextPage.offset != null && load(nextPage.makeUrl, true, nextPage.view));

const params = new URLSearchParams(location.search);
if (params.get("q")) { document.getElementById("q").value = params.get("q"); textSearch(params.get("q")); }
else if (params.get("similar")) similar(params.get("similar"));
else load(off => `/pins?limit=30&offset=${off}`);
