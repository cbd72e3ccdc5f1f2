// A job still in the queue or running: keep its page's facts in step with status.json.
import { ACTIVE_STATES, formatDuration, pollJson, reloadForNewState } from "./live-json.js";

const builtState = document.body.dataset.jobState;
const field = (name) => document.querySelector(`[data-field="${name}"]`);

function show(status) {
  field("state").textContent = status.state;
  field("state").className = `badge state-${status.state}`;
  field("message").textContent = status.message;
  const progress = field("progress");
  if (progress) progress.value = status.progress;
  const progressText = field("progress-text");
  if (progressText) progressText.textContent = `${Math.round(status.progress)}%`;
  const eta = field("eta");
  if (eta) eta.textContent = status.eta_seconds ? `about ${formatDuration(status.eta_seconds)} left in ${status.stage}` : "";
  showLogTail(status.log_tail);
  for (const [name, stage] of Object.entries(status.stages || {})) {
    const row = document.querySelector(`tr[data-stage="${CSS.escape(name)}"]`);
    if (!row) continue;
    row.querySelector('[data-field="stage-state"]').textContent = stage.state;
    row.querySelector('[data-field="stage-seconds"]').textContent = stage.seconds === null ? "–" : formatDuration(stage.seconds);
  }
  if (!ACTIVE_STATES.has(status.state) && status.state !== builtState) {
    reloadForNewState(`instarecon-reload-${status.job_id}`);
    return false;
  }
  sessionStorage.removeItem(`instarecon-reload-${status.job_id}`);
  return true;
}

// The log's last lines go in as text: a stage may print anything, markup included.
function showLogTail(lines) {
  const tail = field("log-tail");
  if (!tail || !Array.isArray(lines)) return;
  const text = lines.join("\n");
  if (tail.textContent !== text) {
    const following = tail.scrollTop + tail.clientHeight >= tail.scrollHeight - 4;  // not scrolled up to read
    tail.textContent = text;
    if (following) tail.scrollTop = tail.scrollHeight;
  }
  tail.closest("section").hidden = lines.length === 0;
}

pollJson("status.json", 2000, show);
