// Files into and out of a volume: a tar archive (chosen as a file, or built here from a
// directory chosen in the browser) uploaded to the import endpoint with progress, and
// the export downloaded.
import * as api from "./api.js";

const BLOCK = 512;
const encoder = new TextEncoder();

function octal(value, width) {
  return value.toString(8).padStart(width - 1, "0") + "\0";
}

function header(name, size, type, mode, mtime) {
  const block = new Uint8Array(BLOCK);
  const put = (text, offset, length) => block.set(encoder.encode(text).subarray(0, length), offset);
  put(name, 0, 100);
  put(octal(mode, 8), 100, 8);
  put(octal(0, 8), 108, 8);
  put(octal(0, 8), 116, 8);
  put(octal(size, 12), 124, 12);
  put(octal(mtime, 12), 136, 12);
  put("        ", 148, 8);
  put(type, 156, 1);
  put("ustar\0" + "00", 257, 8);
  let sum = 0;
  for (const byte of block) sum += byte;
  put(octal(sum, 7) + " ", 148, 8);
  return block;
}

function padding(size) {
  const rest = size % BLOCK;
  return rest ? new Uint8Array(BLOCK - rest) : null;
}

// A name longer than the header holds goes in a PAX extended header before the entry.
function entry(parts, name, size, type, mode, mtime) {
  const bytes = encoder.encode(name);
  if (bytes.length > 99) {
    const record = (len) => `${len} path=${name}\n`;
    let length = encoder.encode(record(0)).length;
    while (encoder.encode(record(length)).length !== length) length = encoder.encode(record(length)).length;
    const pax = encoder.encode(record(length));
    parts.push(header("././@PaxHeader", pax.length, "x", 0o644, mtime), pax);
    const pad = padding(pax.length);
    if (pad) parts.push(pad);
  }
  parts.push(header(name, size, type, mode, mtime));
}

// A tar archive of the files of a directory chosen with <input webkitdirectory>: paths
// relative to the chosen directory, parent directories first. A Blob of the parts: the
// files are read only as the upload sends them.
export function tarOfDirectory(files) {
  const parts = [];
  const dirs = new Set();
  const now = Math.floor(Date.now() / 1000);
  for (const file of files) {
    const path = (file.webkitRelativePath || file.name).split("/").slice(1);
    if (!path.length) path.push(file.name);
    for (let i = 1; i < path.length; i++) {
      const dir = path.slice(0, i).join("/") + "/";
      if (!dirs.has(dir)) {
        dirs.add(dir);
        entry(parts, dir, 0, "5", 0o755, now);
      }
    }
    entry(parts, path.join("/"), file.size, "0", 0o644, Math.floor(file.lastModified / 1000) || now);
    parts.push(file);
    const pad = padding(file.size);
    if (pad) parts.push(pad);
  }
  parts.push(new Uint8Array(2 * BLOCK));
  return new Blob(parts, { type: "application/x-tar" });
}

// Uploads `archive` (a Blob) as the volume's new contents; `progress(sent, total)`.
export function importArchive(uuid, archive, progress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", `/volumed/v1/volumes/${encodeURIComponent(uuid)}/import`);
    for (const [key, value] of Object.entries(api.headers({ "Content-Type": "application/x-tar" }))) {
      xhr.setRequestHeader(key, value);
    }
    xhr.upload.addEventListener("progress", (event) => progress(event.loaded, event.total || archive.size));
    xhr.addEventListener("error", () => reject(new api.ApiError("The upload failed: the connection was lost", 0)));
    xhr.addEventListener("load", () => {
      const response = new Response(xhr.responseText, { status: xhr.status, statusText: xhr.statusText });
      api.envelope(response).then((answer) => resolve(api.firstItem(answer, "volumes")), reject);
    });
    xhr.send(archive);
  });
}

// Downloads the volume's export as NAME.tar. The archive is fetched with the token in a
// header (a plain link would need it in the URL), then handed to the browser to save.
export async function exportArchive(uuid, name) {
  let response;
  try {
    response = await fetch(`/volumed/v1/volumes/${encodeURIComponent(uuid)}/export`, {
      headers: api.headers(),
      cache: "no-store",
    });
  } catch (error) {
    throw new api.ApiError(`The server could not be reached (${error.message})`, 0);
  }
  if (!response.ok || !(response.headers.get("content-type") || "").startsWith("application/x-tar")) {
    api.firstItem(await api.envelope(response), "volumes");
    throw new api.ApiError("The server did not send an archive", response.status);
  }
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = `${name}.tar`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return blob.size;
}
