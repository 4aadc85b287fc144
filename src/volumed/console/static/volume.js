// One volume: what it is, where it is attached, its events, and what can be done to it.
import * as api from "./api.js";
import { importArchive, exportArchive, tarOfDirectory } from "./transfer.js";
import { ageText, confirmDialog, h, link, replace, showError, showOk, sizeText, stateBadge, usageBar } from "./dom.js";
import { every } from "./poll.js";
import { sizeInput } from "./units.js";

const POLL_MS = 2000;

function facts(v) {
  const rows = [
    ["State", stateBadge(v.state)],
    ["UUID", h("code", {}, v.uuid)],
    ["Size", sizeText(v.size_mb)],
    ["Used", usageBar(v)],
    ["Free", v.free_mb === undefined ? "–" : sizeText(v.free_mb)],
    ["Quota policy", v.quota_policy],
    ["Access mode", v.access_mode],
    ["Persistent", v.persistent ? "yes" : "no"],
    ["Delete lock", v.delete_lock ? "on" : "off"],
    ["Tags", (v.tags || []).map((t) => h("span", { class: "tag" }, t))],
    ["Created", `${v.created_at} (${ageText(v.created_at)} ago)`],
  ];
  if (v.message) rows.push(["Message", h("span", { class: "error-text" }, v.message)]);
  return h("dl", { class: "facts", id: "volume-facts" }, rows.map(([k, val]) => [h("dt", {}, k), h("dd", {}, val)]));
}

function attachments(v) {
  const attached = v.attached_to || [];
  if (!attached.length) return h("p", { class: "muted", id: "attachments" }, "Not attached.");
  const mounted = new Set((v.mounted_by || []).map((m) => m.uuid));
  return h("ul", { id: "attachments" }, attached.map((i) =>
    h("li", {}, link(`#/instance/${encodeURIComponent(i.uuid)}`, i.name || i.uuid), mounted.has(i.uuid) ? " (mounted)" : " (idle)")));
}

function events(list) {
  if (!list.length) return h("p", { class: "muted" }, "No events.");
  return h("table", { class: "events" },
    h("thead", {}, h("tr", {}, ["When", "Action", "Result", "State", "By", "Message"].map((c) => h("th", {}, c)))),
    h("tbody", {}, list.slice().reverse().map((e) => h("tr", {},
      h("td", { title: e.at }, e.at.replace("T", " ").slice(0, 19)),
      h("td", {}, e.action),
      h("td", { class: e.result === "ok" || e.result === "success" ? "" : "error-text" }, e.result),
      h("td", {}, e.state_from && e.state_to ? `${e.state_from} → ${e.state_to}` : e.state_to || ""),
      h("td", {}, e.actor || ""),
      h("td", {}, e.message || "")))));
}

// A form whose submit runs `action`; its error or success shows inside it.
function actionForm(id, title, fields, label, action, buttonClass = "") {
  const form = h("form", { id, class: "action" }, h("h3", {}, title), fields, h("button", { type: "submit", class: buttonClass }, label));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    showError(form, null);
    showOk(form, "");
    try {
      const done = await action(form);
      if (done) showOk(form, done);
    } catch (error) {
      showError(form, error);
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

export function render(container, uuid) {
  const path = `/v1/volumes/${encodeURIComponent(uuid)}`;
  let volume = null;
  let gone = false;
  const title = h("h1", {}, "Volume");
  const factsBox = h("div", {});
  const attachedBox = h("div", {});
  const eventsBox = h("div", { id: "events" });
  const problem = h("div", {});

  async function refresh() {
    try {
      const [item, answer] = await Promise.all([
        api.one("GET", path, "volumes"),
        api.call("GET", `/volumed/v1/volumes/${encodeURIComponent(uuid)}/events`),
      ]);
      if (gone) return;
      volume = item;
      replace(title, `Volume ${item.name} `, stateBadge(item.state));
      replace(factsBox, facts(item));
      replace(attachedBox, attachments(item));
      replace(eventsBox, events(api.items(answer, "events").filter((e) => e.status !== "error")));
      showError(problem, null);
    } catch (error) {
      if (!gone) showError(problem, error);
    }
  }
  const update = async (prop, value) => {
    await api.one("PATCH", path, "volumes", { prop, op: "set", value });
    await refresh();
  };

  const grow = sizeInput("grow", 128);
  const uploadBar = h("progress", { id: "import-progress", max: 100, value: 0, hidden: true });
  const tarInput = h("input", { id: "import-file", type: "file", accept: ".tar,application/x-tar" });
  const dirInput = h("input", { id: "import-dir", type: "file", webkitdirectory: true, multiple: true });

  const forms = [
    actionForm("grow-form", "Grow", [grow.number, grow.select], "Grow", async () => {
      await update("size_mb", grow.mb());
      return `Grown to ${sizeText(grow.mb())}.`;
    }),
    actionForm("attach-form", "Attach to an instance", [
      h("input", { name: "instance", placeholder: "instance name", required: true, "aria-label": "Instance" }),
      h("input", { name: "at", placeholder: "/data", required: true, value: "/data", "aria-label": "Mount path" }),
    ], "Attach", async (form) => {
      await api.one("PUT", `${path}/attach`, "volumes", { attach_to: { name: form.instance.value.trim() }, at: form.at.value.trim() });
      await refresh();
      return "Attached.";
    }),
    actionForm("detach-form", "Detach", [], "Detach", async () => {
      await api.one("PUT", `${path}/detach`, "volumes", {});
      await refresh();
      return "Detached.";
    }, "secondary"),
    actionForm("clone-form", "Clone", [h("input", { name: "clone", placeholder: "name of the copy", required: true, "aria-label": "Clone name" })], "Clone", async (form) => {
      const copy = await api.one("POST", `${path}/clone`, "volumes", { vol_name: form.clone.value.trim() });
      return `Cloning into ${copy.name || copy.uuid}.`;
    }),
    actionForm("template-form", "Make a template", [], "Make template", async () => {
      await api.one("POST", "/v1/volumes/templates", "volumes", { uuid });
      await refresh();
      return "Now a template.";
    }, "secondary"),
    actionForm("lock-form", "Delete lock", [], "Toggle delete lock", async () => {
      const on = !volume?.delete_lock;
      await update("delete_lock", on);
      return `Delete lock ${on ? "on" : "off"}.`;
    }, "secondary"),
    actionForm("import-form", "Fill from a tar or a directory", [
      h("label", {}, "Tar archive ", tarInput), h("label", {}, "or a directory ", dirInput), uploadBar,
    ], "Upload", async () => {
      const archive = tarInput.files.length ? tarInput.files[0] : dirInput.files.length ? tarOfDirectory(dirInput.files) : null;
      if (!archive) throw new Error("Choose a tar archive or a directory first.");
      uploadBar.hidden = false;
      uploadBar.value = 0;
      await importArchive(uuid, archive, (sent, total) => { uploadBar.value = total ? Math.round((sent / total) * 100) : 0; });
      uploadBar.value = 100;
      await refresh();
      return `Imported a ${archive.size}-byte archive.`;
    }),
    actionForm("export-form", "Download", [], "Download export (.tar)", async () => {
      const bytes = await exportArchive(uuid, volume?.name || uuid);
      return `Downloaded ${bytes} bytes.`;
    }, "secondary"),
    actionForm("delete-form", "Delete", [], "Delete volume…", async () => {
      const name = volume?.name || uuid;
      if (!(await confirmDialog(`Delete volume ${name} and its data? This cannot be undone.`, "Delete"))) return "";
      await api.one("DELETE", path, "volumes");
      location.hash = "#/volumes";
      return "";
    }, "danger"),
  ];

  replace(container,
    h("p", {}, link("#/volumes", "← Volumes")),
    title, problem,
    h("div", { class: "columns" },
      h("section", {}, factsBox, h("h2", {}, "Attachments"), attachedBox),
      h("section", { class: "actions" }, forms)),
    h("h2", {}, "Events"), eventsBox);
  const poller = every(POLL_MS, refresh);
  return () => {
    gone = true;
    poller.stop();
  };
}
