// Calls to the volumed API with the signed-in token.
//
// The token lives in sessionStorage: it survives a reload of the tab, is gone when the
// tab closes, is never put in a URL (so never in a server log or a Referer), and is sent
// only as "Authorization: Bearer". No cookie is used, so no request can carry the token
// without this page's script sending it (nothing for a cross-site request to forge).

const TOKEN_KEY = "volumed.token";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function signIn(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
}

// A request-level failure (HTTP 4xx/5xx, the network, a body that is not the envelope).
export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

const listeners = new Set();
// Called with the error when the server refuses the token (HTTP 401).
export function onUnauthorized(listener) {
  listeners.add(listener);
}

export function headers(extra) {
  const value = token();
  return { ...(value ? { Authorization: `Bearer ${value}` } : {}), ...extra };
}

export async function call(method, path, body) {
  const init = { method, headers: headers(), cache: "no-store" };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(`The server could not be reached (${error.message})`, 0);
  }
  return envelope(response);
}

export async function envelope(response) {
  let parsed = null;
  try {
    parsed = await response.json();
  } catch {
    // fall through: reported below with the HTTP status
  }
  if (!response.ok || !parsed) {
    const message = parsed?.message || `HTTP ${response.status} ${response.statusText}`;
    const error = new ApiError(message, response.status);
    if (response.status === 401) listeners.forEach((listener) => listener(error));
    throw error;
  }
  return parsed;
}

// The items of an envelope under data[key]; a failed item is an ApiError with its code,
// worded as the API words it.
export function items(answer, key) {
  return answer?.data?.[key] || [];
}

export function firstItem(answer, key) {
  const item = items(answer, key)[0];
  if (!item) throw new ApiError(answer?.message || "The server answered with no item", 200);
  if (item.status === "error") {
    throw new ApiError(`${item.message} (error ${item.error})`, 200);
  }
  return item;
}

export async function one(method, path, key, body) {
  return firstItem(await call(method, path, body), key);
}
