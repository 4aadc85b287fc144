// The instances list, polled like the volumes page.
import * as api from "./api.js";
import { ageText, h, link, replace, showError, stateBadge } from "./dom.js";
import { every } from "./poll.js";

const POLL_MS = 2000;

export function render(container) {
  let gone = false;
  const tbody = h("tbody", { id: "instance-rows" });
  const problem = h("div", {});
  const create = h("form", { id: "instance-create", class: "filters" },
    h("input", { name: "name", placeholder: "name", required: true, "aria-label": "Instance name", autocomplete: "off" }),
    h("input", { name: "image", placeholder: "image", required: true, value: "nginx:latest", "aria-label": "Image" }),
    h("button", { type: "submit" }, "Create instance"));
  create.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(create, null);
    try {
      await api.one("POST", "/v1/instances", "instances", { name: create.name.value.trim(), image: create.image.value.trim() });
      create.name.value = "";
      poller.now();
    } catch (error) {
      showError(create, error);
    }
  });
  replace(container, h("h1", {}, "Instances"), create, problem,
    h("table", {}, h("thead", {}, h("tr", {}, ["Name", "State", "Image", "Volumes", "Age"].map((c) => h("th", {}, c)))), tbody));

  async function load() {
    try {
      const answer = await api.call("GET", "/v1/instances?details=true");
      if (gone) return;
      const now = Date.now();
      replace(tbody, api.items(answer, "instances").filter((i) => i.status !== "error").map((i) => h("tr", { dataset: { uuid: i.uuid } },
        h("td", {}, link(`#/instance/${encodeURIComponent(i.uuid)}`, i.name)),
        h("td", {}, stateBadge(i.state)),
        h("td", {}, i.image || ""),
        h("td", {}, (i.volumes || []).map((v) => `${v.name || v.uuid} at ${v.at}`).join(", ")),
        h("td", { class: "num" }, ageText(i.created_at, now)))));
      showError(problem, null);
    } catch (error) {
      if (!gone) showError(problem, error);
    }
  }
  const poller = every(POLL_MS, load);
  return () => {
    gone = true;
    poller.stop();
  };
}
