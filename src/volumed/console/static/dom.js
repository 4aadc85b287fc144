// Building the page. Every piece of text goes in through textContent or a text node,
// never as markup: a name or tag holding HTML shows as the characters it is.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "value") el.value = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const MB_UNITS = [["TiB", 1024 * 1024], ["GiB", 1024], ["MiB", 1]];

export function sizeText(mb) {
  if (mb === undefined || mb === null) return "–";
  for (const [unit, factor] of MB_UNITS) {
    if (mb >= factor && mb % factor === 0) return `${mb / factor} ${unit}`;
  }
  for (const [unit, factor] of MB_UNITS) {
    if (mb >= factor) return `${(mb / factor).toFixed(1)} ${unit}`;
  }
  return `${mb} MiB`;
}

export function ageText(iso, now = Date.now()) {
  const at = Date.parse(iso);
  if (Number.isNaN(at)) return "–";
  const s = Math.max(0, Math.round((now - at) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

export function stateBadge(state) {
  return h("span", { class: `state state-${state || "unknown"}` }, state || "unknown");
}

// Used space from free_mb: a bar and the percentage; nothing while the volume is not
// formatted. The bar is two spans sized by a class (w0 … w20, 5 % steps): no style
// attribute (the Content-Security-Policy allows none), and far cheaper to lay out by the
// thousand than <meter> elements.
export function usageBar(volume) {
  if (volume.free_mb === undefined || !volume.size_mb) return h("span", { class: "muted" }, "–");
  const used = Math.max(0, volume.size_mb - volume.free_mb);
  const percent = Math.min(100, Math.round((used / volume.size_mb) * 100));
  return h(
    "span",
    { class: "usage", title: `${used} MiB used of ${volume.size_mb} MiB` },
    bar(percent),
    ` ${percent}%`,
  );
}

export function bar(percent) {
  const level = percent >= 90 ? "full" : percent >= 75 ? "high" : "ok";
  return h("span", { class: "bar" }, h("span", { class: `fill ${level} w${Math.round(percent / 5)}` }));
}

// An error shown next to what caused it: `where` is the form or row the action came from.
export function showError(where, error) {
  const box = where.querySelector(":scope > .error") || h("p", { class: "error", role: "alert" });
  box.textContent = error ? String(error.message || error) : "";
  box.hidden = !error;
  if (!box.parentNode) where.append(box);
  return box;
}

export function showOk(where, text) {
  const box = where.querySelector(":scope > .ok") || h("p", { class: "ok", role: "status" });
  box.textContent = text || "";
  box.hidden = !text;
  if (!box.parentNode) where.append(box);
  return box;
}

export function link(href, text) {
  return h("a", { href }, text);
}

// Asks for a confirmation in a <dialog> of the page (window.confirm is not used: it
// blocks the page, and a test then could not tell it from an injected alert()).
export function confirmDialog(question, confirmLabel) {
  return new Promise((resolve) => {
    const dialog = h(
      "dialog",
      { class: "confirm" },
      h("p", {}, question),
      h(
        "form",
        { method: "dialog" },
        h("button", { value: "cancel", class: "secondary" }, "Cancel"),
        " ",
        h("button", { value: "confirm", class: "danger" }, confirmLabel),
      ),
    );
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "confirm");
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}
