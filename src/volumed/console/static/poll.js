// Repeats `refresh` every `ms` while the tab is visible (and at once on now()), until
// stop() is called (when the page is left). A refresh that took long (a page of thousands
// of volumes on a busy server) stretches the wait after it to BACKOFF times its own
// duration, so an open tab keeps the server at most about a fifth busy.
const BACKOFF = 5;

export function every(ms, refresh) {
  let timer = null;
  let stopped = false;
  async function tick(force = false) {
    clearTimeout(timer);
    let took = 0;
    if (force === true || document.visibilityState === "visible") {
      const began = performance.now();
      try {
        await refresh();
      } catch {
        // each page shows its own errors; polling goes on
      }
      took = performance.now() - began;
    }
    if (stopped) return;
    clearTimeout(timer); // a tick asked for meanwhile (now()) must not leave a second loop
    timer = setTimeout(tick, Math.max(ms, BACKOFF * took));
  }
  tick(true);
  return {
    now: () => tick(true),
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
