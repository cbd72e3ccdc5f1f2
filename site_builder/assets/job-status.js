// A job still in the queue or running: keep its page's facts in step with status.json.
import { ACTIVE_STATES, formatDuration, pollJson, reloadForNewState } from "./live-json.js";

const builtState = document.body.dataset.jobState;
const field = (name) => document.querySelector(`[data-field="${name}"]`);

// A stage in the person's words, as the page's stages table says it (site_builder/job_view.py's STAGE_WORDS).
const stageRow = (name) => (name ? document.querySelector(`tr[data-stage="${CSS.escape(name)}"]`) : null);
const stageWords = (name) => stageRow(name)?.dataset.stageWords ?? name;

// "train: iteration 1400/2000" (or "sfm" alone), as the daemon writes it, with the stage in words.
function inWords(message) {
  const stage = message.split(": ", 1)[0];
  const row = stageRow(stage);
  return row ? row.dataset.stageWords + message.slice(stage.length) : message;
}

function show(status) {
  field("state").textContent = status.state;
  field("state").className = `badge state-${status.state}`;
  // "done after publish" adds nothing to a "done" badge; the page is rebuilt (and reloaded) with what does
  field("message").textContent = status.state === "done" ? "" : inWords(status.message || "");
  const progress = field("progress");
  if (progress) progress.value = status.progress;
  const progressText = field("progress-text");
  if (progressText) progressText.textContent = `${Math.round(status.progress)}%`;
  const eta = field("eta");
  if (eta) eta.textContent = status.eta_seconds ? `about ${formatDuration(status.eta_seconds)} left for ${stageWords(status.stage)}` : "";
  showLogTail(status.log_tail);
  for (const [name, stage] of Object.entries(status.stages || {})) {
    const row = stageRow(name);
    if (!row) continue;
    row.querySelector('[data-field="stage-state"]').textContent = stage.state;
    // a stage a retry took over from an earlier attempt did not run: it says whose result it is
    row.querySelector('[data-field="stage-seconds"]').textContent = stage.reused_from ? `reused from ${stage.reused_from}`
      : stage.seconds === null ? "–" : formatDuration(stage.seconds);
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
