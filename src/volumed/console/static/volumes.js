// The volumes page: one page of the listing as a table, filtered by state (here) and by
// tag (by the server), kept current by polling while the tab is visible. Rows whose
// volume did not change are kept as they are, so a poll over thousands of volumes
// touches only the rows that moved.
import * as api from "./api.js";
import { ageText, h, link, replace, showError, sizeText, stateBadge, usageBar } from "./dom.js";
import { every } from "./poll.js";

const POLL_MS = 2000;
const SIZES = [100, 500, 1000, 2000, 5000];
const SIZE_KEY = "volumed.pageSize";
const STATES = ["uninitialized", "initializing", "available", "idle", "mounted", "busy", "error"];

function pageSize() {
  const stored = Number(localStorage.getItem(SIZE_KEY));
  return SIZES.includes(stored) ? stored : 1000;
}

function names(list) {
  return (list || []).map((ref) => ref.name || ref.uuid).join(", ");
}

function row(volume, now) {
  return h(
    "tr",
    { dataset: { uuid: volume.uuid, state: volume.state } },
    h("td", {}, link(`#/volume/${encodeURIComponent(volume.uuid)}`, volume.name)),
    h("td", {}, stateBadge(volume.state)),
    h("td", { class: "num" }, sizeText(volume.size_mb)),
    h("td", {}, usageBar(volume)),
    h("td", {}, names(volume.attached_to)),
    h("td", {}, names(volume.mounted_by)),
    h("td", {}, (volume.tags || []).map((tag) => h("span", { class: "tag" }, tag))),
    h("td", { class: "num", title: volume.created_at }, ageText(volume.created_at, now)),
  );
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

  let latest = [];
  function draw() {
    const now = Date.now();
    const wanted = stateSelect.value;
    const shown = wanted ? latest.filter((v) => v.state === wanted) : latest;
    const seen = new Set();
    const trs = shown.map((volume) => {
      const json = JSON.stringify(volume);
      let entry = rows.get(volume.uuid);
      if (!entry || entry.json !== json) {
        entry = { json, tr: row(volume, now) };
        rows.set(volume.uuid, entry);
      }
      seen.add(volume.uuid);
      return entry.tr;
    });
    for (const uuid of rows.keys()) if (!seen.has(uuid)) rows.delete(uuid);
    const current = tbody.children;
    if (current.length !== trs.length || trs.some((tr, i) => current[i] !== tr)) tbody.replaceChildren(...trs);
    replace(counts, summary(latest));
    info.textContent = `${latest.length} on this page${wanted ? `, ${shown.length} ${wanted}` : ""}`;
    tbody.parentNode.classList.toggle("empty", trs.length === 0);
  }

  async function load() {
    const turn = ++asked;
    const query = new URLSearchParams({ details: "true", count: String(from ? size + 1 : size) });
    if (from) query.set("from", from);
    if (tagInput.value.trim()) query.set("tags", tagInput.value.trim());
    try {
      const answer = await api.call("GET", `/v1/volumes?${query}`);
      if (gone || turn !== asked) return;
      let volumes = api.items(answer, "volumes");
      if (from && volumes.length && volumes[0].uuid === from) volumes = volumes.slice(1);
      latest = volumes.filter((v) => v.status !== "error" && v.state);
      showError(controls, null);
      draw();
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
  };
}
