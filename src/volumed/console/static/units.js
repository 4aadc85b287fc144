// Sizes typed with a unit, as MB (the API's unit, MiB in practice).
import { h } from "./dom.js";

const FACTORS = { MiB: 1, GiB: 1024, TiB: 1024 * 1024 };

export function sizeInput(prefix, value = 64, unit = "MiB") {
  const number = h("input", { id: `${prefix}-size`, name: "size", type: "number", min: 1, step: "any", required: true, value, "aria-label": "Size" });
  const select = h("select", { id: `${prefix}-unit`, name: "unit", "aria-label": "Unit" },
    Object.keys(FACTORS).map((u) => h("option", { value: u, selected: u === unit }, u)));
  return { number, select, mb: () => Math.round(Number(number.value) * FACTORS[select.value]) };
}
