// Reads a JSON file the daemon rewrites (status.json, health.json) again and again, never from
// a cache, and hands each new document to a callback; stops once the callback returns false.
export function pollJson(url, intervalMs, onDocument, onError = () => {}) {
  let stopped = false;
  async function once() {
    if (stopped) return;
    try {
      const response = await fetch(url, { cache: "no-store" });
      if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
      if (onDocument(await response.json()) === false) stopped = true;
    } catch (error) {
      onError(error);
    }
    if (!stopped) setTimeout(once, document.hidden ? intervalMs * 4 : intervalMs);
  }
  once();
  return () => { stopped = true; };
}

export const ACTIVE_STATES = new Set(["waiting", "queued", "running"]);

// The page was built while the job was active and now it is not: the daemon rebuilds the page
// when a job ends, so load it again (a few times at most, in case the rebuild lags behind).
export function reloadForNewState(key) {
  const tries = Number(sessionStorage.getItem(key) || 0);
  if (tries >= 5) return;
  sessionStorage.setItem(key, String(tries + 1));
  setTimeout(() => location.reload(), 1500 * (tries + 1));
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${String(Math.round(seconds % 60)).padStart(2, "0")} s`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
}
