// The volumes page: one page of the listing as a table, filtered by state (here) and by
// tag (by the server), kept current by polling while the tab is visible. Rows whose
// volume did not change are kept as they are, so a poll over thousands of volumes
// touches only the rows that moved.
import * as api from "./api.js";
import { ageText, h, replace, showError, sizeText, usageBar } from "./dom.js";
import { every } from "./poll.js";

const POLL_MS = 2000;
const SIZES = [100, 500, 1000, 2000, 5000];
const SIZE_KEY = "volumed.pageSize";
const BUFFER_ROWS = 20; // rows drawn beyond the viewport, above and below
const STATES = ["uninitialized", "initializing", "available", "idle", "mounted", "busy", "error"];

function pageSize() {
  const stored = Number(localStorage.getItem(SIZE_KEY));
  return SIZES.includes(stored) ? stored : 1000;
}

function names(list) {
  return (list || []).map((ref) => ref.name || ref.uuid).join(", ");
}

// One row, cloned from a prototype and filled in: several times faster than building
// each cell anew, which matters for the first render of thousands of rows.
const PROTOTYPE = h(
  "tr",
  {},
  h("td", {}, h("a")),
  h("td", {}, h("span", { class: "state" })),
  h("td", { class: "num" }),
  h("td"),
  h("td"),
  h("td"),
  h("td"),
  h("td", { class: "num" }),
);

function row(volume, now) {
  const tr = PROTOTYPE.cloneNode(true);
  tr.dataset.uuid = volume.uuid;
  tr.dataset.state = volume.state;
  const [name, state, size, used, attached, mounted, tags, age] = tr.children;
  name.firstChild.href = `#/volume/${encodeURIComponent(volume.uuid)}`;
  name.firstChild.textContent = volume.name;
  state.firstChild.className = `state state-${volume.state}`;
  state.firstChild.textContent = volume.state;
  size.textContent = sizeText(volume.size_mb);
  used.append(usageBar(volume));
  attached.textContent = names(volume.attached_to);
  mounted.textContent = names(volume.mounted_by);
  for (const tag of volume.tags || []) tags.append(h("span", { class: "tag" }, tag));
  age.textContent = ageText(volume.created_at, now);
  age.title = volume.created_at;
  return tr;
}

function summary(volumes) {
  const counts = {};
  let full = 0;
  for (const v of volumes) {
    counts[v.state] = (counts[v.state] || 0) + 1;
    if (v.free_mb !== undefined && v.size_mb && (v.size_mb - v.free_mb) / v.size_mb >= 0.9) full++;
  }
  const parts = STATES.filter((s) => counts[s]).map((s) => h("span", { class: `count state-${s}` }, `${counts[s]} ${s}`));
  if (full) parts.push(h("span", { class: "count state-error" }, `${full} ≥ 90% full`));
  return parts;
}

export function render(container) {
  let size = pageSize();
  const cursors = []; // the `from` of each earlier page
  let from = null;
  let gone = false;
  let asked = 0; // the latest load asked for; an older answer arriving late is dropped
  const rows = new Map(); // uuid -> { json, tr }

  const stateSelect = h("select", { id: "state-filter", "aria-label": "State" },
    h("option", { value: "" }, "all states"), STATES.map((s) => h("option", { value: s }, s)));
  const tagInput = h("input", { id: "tag-filter", type: "search", placeholder: "tag", "aria-label": "Tag" });
  const sizeSelect = h("select", { id: "page-size", "aria-label": "Page size" },
    SIZES.map((n) => h("option", { value: n, selected: n === size }, `${n} per page`)));
  const prev = h("button", { type: "button", class: "secondary", disabled: true }, "← Previous");
  const next = h("button", { type: "button", class: "secondary", disabled: true }, "Next →");
  const info = h("span", { class: "muted", id: "page-info" });
  const counts = h("div", { class: "counts", id: "counts" });
  const tbody = h("tbody", { id: "volume-rows" });
  const controls = h("form", { class: "filters", onsubmit: (e) => e.preventDefault() },
    stateSelect, tagInput, sizeSelect, prev, next, info);
  replace(container,
    h("h1", {}, "Volumes"),
    controls,
    counts,
    h("table", { class: "volumes" },
      h("thead", {}, h("tr", {}, ["Name", "State", "Size", "Used", "Attached to", "Mounted by", "Tags", "Age"]
        .map((c) => h("th", {}, c)))),
      tbody),
  );

  // Only the rows in and near the viewport are in the document; spacer rows above and
  // below stand for the others. A page of 5,000 volumes costs the browser the layout of
  // a few dozen rows, on the first render and on every poll. Rows are made on first
  // sight and kept (by uuid) while their volume does not change.
  let latest = [];
  let shown = [];
  let rowPx = 31; // measured from the first row drawn
  const above = h("tr", { class: "spacer", "aria-hidden": "true" }, h("td", { colspan: 8 }));
  const below = h("tr", { class: "spacer", "aria-hidden": "true" }, h("td", { colspan: 8 }));
  function rowFor(volume, now) {
    const json = JSON.stringify(volume);
    let entry = rows.get(volume.uuid);
    if (!entry || entry.json !== json) {
      entry = { json, tr: row(volume, now) };
      rows.set(volume.uuid, entry);
    }
    return entry.tr;
  }
  function drawWindow(again = false) {
    const top = tbody.getBoundingClientRect().top;
    const first = Math.max(0, Math.floor(-top / rowPx) - BUFFER_ROWS);
    const last = Math.min(shown.length, first + Math.ceil(window.innerHeight / rowPx) + 2 * BUFFER_ROWS);
    const now = Date.now();
    const trs = [];
    for (let i = first; i < last; i++) trs.push(rowFor(shown[i], now));
    above.style.height = `${first * rowPx}px`;
    below.style.height = `${(shown.length - last) * rowPx}px`;
    const wanted = [above, ...trs, below];
    const current = tbody.children;
    if (current.length !== wanted.length || wanted.some((tr, i) => current[i] !== tr)) tbody.replaceChildren(...wanted);
    if (trs.length && !again) {
      const span = trs[trs.length - 1].getBoundingClientRect().bottom - trs[0].getBoundingClientRect().top;
      const measured = span / trs.length;
      if (Math.abs(measured - rowPx) > 0.1) {
        rowPx = measured;
        drawWindow(true);
      }
    }
  }
  let pending = false;
  function onScroll() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      drawWindow();
    });
  }
  window.addEventListener("scroll", onScroll, { passive: true });
  window.addEventListener("resize", onScroll);
  function draw() {
    const wanted = stateSelect.value;
    shown = wanted ? latest.filter((v) => v.state === wanted) : latest;
    replace(counts, summary(latest));
    info.textContent = `${latest.length} on this page${wanted ? `, ${shown.length} ${wanted}` : ""}`;
    const keep = new Set(shown.map((v) => v.uuid));
    for (const uuid of rows.keys()) if (!keep.has(uuid)) rows.delete(uuid);
    drawWindow();
  }

  async function load() {
    const turn = ++asked;
    // Newest first: what an operator just made or touched is at the top.
    const query = new URLSearchParams({ details: "true", order: "desc", count: String(from ? size + 1 : size) });
    if (from) query.set("from", from);
    if (tagInput.value.trim()) query.set("tags", tagInput.value.trim());
    try {
      const answer = await api.call("GET", `/v1/volumes?${query}`);
      if (gone || turn !== asked) return;
      performance.mark("volumes-listed"); // User Timing, read by bench/console.py
      let volumes = api.items(answer, "volumes");
      if (from && volumes.length && volumes[0].uuid === from) volumes = volumes.slice(1);
      latest = volumes.filter((v) => v.status !== "error" && v.state);
      showError(controls, null);
      draw();
      performance.mark("volumes-drawn");
      next.disabled = volumes.length < size;
      prev.disabled = cursors.length === 0;
    } catch (error) {
      if (gone || turn !== asked) return;
      showError(controls, error);
    }
  }

  let poller = null;
  function restart() {
    cursors.length = 0;
    from = null;
    poller.now();
  }

  stateSelect.addEventListener("change", draw);
  tagInput.addEventListener("change", restart);
  sizeSelect.addEventListener("change", () => {
    size = Number(sizeSelect.value);
    localStorage.setItem(SIZE_KEY, String(size));
    restart();
  });
  next.addEventListener("click", () => {
    if (!latest.length) return;
    cursors.push(from);
    from = latest[latest.length - 1].uuid;
    poller.now();
  });
  prev.addEventListener("click", () => {
    from = cursors.pop() ?? null;
    poller.now();
  });
  poller = every(POLL_MS, load);
  return () => {
    gone = true;
    poller.stop();
    window.removeEventListener("scroll", onScroll);
    window.removeEventListener("resize", onScroll);
  };
}
