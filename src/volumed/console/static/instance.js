// One instance: state, volumes, start / stop / delete, and its console output when the
// runtime keeps one (GET /v1/instances/{uuid}/log; the record-only runtime has none).
import * as api from "./api.js";
import { confirmDialog, h, link, replace, showError, stateBadge } from "./dom.js";
import { every } from "./poll.js";

const POLL_MS = 2000;
const LOG_BYTES = 65536;

function decodeOutput(base64) {
  const bytes = Uint8Array.from(atob(base64 || ""), (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

export function render(container, uuid) {
  const path = `/v1/instances/${encodeURIComponent(uuid)}`;
  let gone = false;
  let instance = null;
  const title = h("h1", {}, "Instance");
  const facts = h("div", { id: "instance-facts" });
  const logs = h("pre", { id: "instance-log", class: "log" });
  const logNote = h("p", { class: "muted", id: "instance-log-note" });
  const actions = h("form", { id: "instance-actions", class: "action" });
  const button = (label, cls, run) => h("button", { type: "button", class: cls, onclick: async (event) => {
    event.target.disabled = true;
    showError(actions, null);
    try {
      await run();
      await refresh();
    } catch (error) {
      showError(actions, error);
    } finally {
      event.target.disabled = false;
    }
  } }, label);
  actions.append(
    button("Start", "", () => api.one("PUT", `${path}/start`, "instances", {})),
    " ",
    button("Stop", "secondary", () => api.one("PUT", `${path}/stop`, "instances", {})),
    " ",
    button("Delete…", "danger", async () => {
      if (!(await confirmDialog(`Delete instance ${instance?.name || uuid}?`, "Delete"))) return;
      await api.one("DELETE", path, "instances");
      location.hash = "#/instances";
    }));

  async function readLog() {
    try {
      const answer = await api.call("GET", `${path}/log?offset=-${LOG_BYTES}&limit=${LOG_BYTES}`);
      const item = api.firstItem(answer, "instances");
      logs.textContent = decodeOutput(item.output);
      logNote.textContent = logs.textContent ? "" : "No output yet.";
    } catch (error) {
      logs.textContent = "";
      logNote.textContent = error.status === 404 ? "This runtime keeps no logs." : `Logs: ${error.message}`;
    }
  }

  async function refresh() {
    try {
      const i = await api.one("GET", path, "instances");
      if (gone) return;
      instance = i;
      replace(title, `Instance ${i.name} `, stateBadge(i.state));
      replace(facts, h("dl", { class: "facts" },
        h("dt", {}, "UUID"), h("dd", {}, h("code", {}, i.uuid)),
        h("dt", {}, "Image"), h("dd", {}, i.image || ""),
        h("dt", {}, "Memory"), h("dd", {}, `${i.memory_mb} MiB, ${i.vcpus} vCPU`),
        h("dt", {}, "Created"), h("dd", {}, i.created_at),
        h("dt", {}, "Volumes"), h("dd", {}, (i.volumes || []).length
          ? h("ul", { id: "instance-volumes" }, i.volumes.map((v) => h("li", {},
            link(`#/volume/${encodeURIComponent(v.uuid)}`, v.name || v.uuid), ` at ${v.at}${v.readonly ? " (read-only)" : ""}`)))
          : "none")));
      await readLog();
      showError(container, null);
    } catch (error) {
      if (!gone) showError(container, error);
    }
  }

  replace(container, h("p", {}, link("#/instances", "← Instances")), title, facts, actions, h("h2", {}, "Logs"), logNote, logs);
  const poller = every(POLL_MS, refresh);
  return () => {
    gone = true;
    poller.stop();
  };
}
