// The console's shell: sign-in, navigation by the URL fragment, and the pages.
import * as api from "./api.js";
import { h, replace, showError } from "./dom.js";

const pages = {
  volumes: () => import("./volumes.js"),
  volume: () => import("./volume.js"),
  create: () => import("./create.js"),
  instances: () => import("./instances.js"),
  instance: () => import("./instance.js"),
  quotas: () => import("./quotas.js"),
};

const signInSection = document.getElementById("sign-in");
const signInForm = document.getElementById("sign-in-form");
const nav = document.getElementById("nav");
const view = document.getElementById("view");
let leave = null; // stops the current page's polling
let shown = 0; // guards against a slow page load finishing after the next navigation
let signingIn = false; // a 401 then is the sign-in form's error, not a session that ended

function route() {
  const [page = "volumes", id] = location.hash.replace(/^#\/?/, "").split("/");
  return { page: pages[page] ? page : "volumes", id: id ? decodeURIComponent(id) : undefined };
}

async function show() {
  const turn = ++shown;
  if (leave) leave();
  leave = null;
  if (!api.token()) {
    nav.hidden = true;
    replace(view);
    signInSection.hidden = false;
    document.getElementById("token").focus();
    return;
  }
  signInSection.hidden = true;
  nav.hidden = false;
  const { page, id } = route();
  for (const a of nav.querySelectorAll("a[data-page]")) {
    a.classList.toggle("current", a.dataset.page === page || a.dataset.page + "s" === page);
  }
  try {
    const module = await pages[page]();
    if (turn !== shown) return;
    const container = h("div", { class: `page page-${page}` });
    replace(view, container);
    leave = module.render(container, id) || null;
  } catch (error) {
    if (turn === shown) replace(view, h("p", { class: "error", role: "alert" }, error.message));
  }
}

signInForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = document.getElementById("token");
  const value = input.value.trim();
  api.signIn(value);
  signingIn = true;
  try {
    // Checked before anything is shown, so a wrong token is an error on this form.
    await api.call("GET", "/v1/users/quotas");
  } catch (error) {
    api.signOut();
    showError(signInForm, error.status === 401 ? new Error(`Sign-in refused: ${error.message}`) : error);
    return;
  } finally {
    signingIn = false;
  }
  input.value = "";
  showError(signInForm, null);
  if (!location.hash) location.hash = "#/volumes";
  show();
});

document.getElementById("sign-out").addEventListener("click", () => {
  api.signOut();
  show();
});

api.onUnauthorized((error) => {
  if (signingIn) return;
  api.signOut();
  show().then(() => showError(signInForm, new Error(`Signed out: ${error.message}`)));
});

window.addEventListener("hashchange", show);
show();
