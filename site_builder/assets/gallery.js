// The gallery: progress of the jobs on this page that are still running, from their status.json,
// and the daemon's heartbeat in the header. The page itself is rebuilt when a job changes state.
import { ACTIVE_STATES, pollJson, reloadForNewState } from "./live-json.js";
import { watchHealth } from "./health.js";

for (const card of document.querySelectorAll(".card")) {
  const builtState = card.dataset.jobState;
  if (!ACTIVE_STATES.has(builtState)) continue;
  const jobId = card.dataset.jobId;
  pollJson(`${encodeURIComponent(jobId)}/status.json`, 5000, (status) => {
    const badge = card.querySelector('[data-field="state"]');
    badge.textContent = status.state;
    badge.className = `badge state-${status.state}`;
    const progress = card.querySelector('[data-field="progress"]');
    if (progress) progress.value = status.progress;
    if (!ACTIVE_STATES.has(status.state)) {
      reloadForNewState("instarecon-reload-gallery");
      return false;
    }
    return true;
  });
}

watchHealth();
