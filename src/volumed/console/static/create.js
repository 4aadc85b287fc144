// Creating a volume: name, size with a unit, quota policy and access mode.
import * as api from "./api.js";
import { h, replace, showError } from "./dom.js";
import { sizeInput } from "./units.js";

export function render(container) {
  const size = sizeInput("create", 64);
  const form = h("form", { id: "create-form", class: "stacked" },
    h("label", {}, "Name", h("input", { name: "name", id: "create-name", required: true, maxlength: 63, autocomplete: "off", placeholder: "data" })),
    h("label", {}, "Size", h("span", { class: "inline" }, size.number, size.select)),
    h("label", {}, "Quota policy", h("select", { name: "policy", id: "create-policy" },
      h("option", { value: "static" }, "static — reserve the space now"),
      h("option", { value: "dynamic" }, "dynamic — take space as it is written"))),
    h("label", {}, "Access mode", h("select", { name: "mode", id: "create-mode" },
      h("option", { value: "rwo" }, "rwo — read-write, one instance"),
      h("option", { value: "rox" }, "rox — read-only, many instances"),
      h("option", { value: "rwx" }, "rwx — read-write, many instances"))),
    h("label", {}, "Tags (comma-separated)", h("input", { name: "tags", id: "create-tags", autocomplete: "off" })),
    h("button", { type: "submit" }, "Create volume"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(form, null);
    const tags = form.tags.value.split(",").map((t) => t.trim()).filter(Boolean);
    const body = {
      name: form.name.value.trim(),
      size_mb: size.mb(),
      quota_policy: form.policy.value,
      access_mode: form.mode.value,
      ...(tags.length ? { tags } : {}),
    };
    try {
      const created = await api.one("POST", "/v1/volumes", "volumes", body);
      location.hash = `#/volume/${encodeURIComponent(created.uuid)}`;
    } catch (error) {
      showError(form, error);
    }
  });
  replace(container, h("h1", {}, "Create a volume"), form);
}
