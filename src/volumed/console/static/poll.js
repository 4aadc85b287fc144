// Repeats `refresh` every `ms` while the tab is visible (and at once on now()), until the
// returned stop function is called (when the page is left).
export function every(ms, refresh) {
  let timer = null;
  let stopped = false;
  async function tick(force = false) {
    clearTimeout(timer);
    if (force === true || document.visibilityState === "visible") {
      try {
        await refresh();
      } catch {
        // each page shows its own errors; polling goes on
      }
    }
    if (stopped) return;
    clearTimeout(timer); // a tick asked for meanwhile (now()) must not leave a second loop
    timer = setTimeout(tick, ms);
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
