// The caller's usage against its limits.
import * as api from "./api.js";
import { bar as usage, h, replace, showError, sizeText } from "./dom.js";

function bar(label, used, limit, text) {
  const percent = limit ? Math.min(100, Math.round((used / limit) * 100)) : 0;
  return h("tr", {},
    h("th", {}, label),
    h("td", {}, usage(percent)),
    h("td", { class: "num" }, text(used), " of ", text(limit), ` (${percent}%)`));
}

export function render(container) {
  const box = h("div", { id: "quotas" });
  replace(container, h("h1", {}, "Quotas"), box);
  api.one("GET", "/v1/users/quotas", "quotas").then((q) => {
    replace(box,
      h("table", { class: "quotas" }, h("tbody", {},
        bar("Volumes", q.used.volumes, q.hard.volumes, String),
        bar("Total size", q.used.total_volume_mb, q.hard.total_volume_mb, sizeText))),
      h("p", {}, `Each volume from ${sizeText(q.limits.min_volume_mb)} to ${sizeText(q.limits.max_volume_mb)}. `,
        `Instances: ${q.used.instances} (${q.used.live_instances} running).`));
  }, (error) => showError(box, error));
}
