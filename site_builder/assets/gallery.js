// The gallery: the jobs on this page that are still running follow their status.json (state, stage in words,
// progress, time left, and one of the set's photos once ingest has handed it to the outbox), and the daemon's
// heartbeat shows in the header, and the search box finds jobs on every page (gallery-search.js). The page itself
// is rebuilt when a job changes state.
import { ACTIVE_STATES, formatDuration, pollJson, reloadForNewState } from "./live-json.js";
import { watchHealth } from "./health.js";
import { setUpSearch } from "./gallery-search.js";

const gallery = document.querySelector(".gallery");
const stageWords = JSON.parse(gallery?.dataset.stageWords || "{}");
const PLAIN_FILE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/; // a file in the job's own folder, nothing else

function setText(element, text) {
  if (element && element.textContent !== text) element.textContent = text;
}

function show(card, status) {
  const field = (name) => card.querySelector(`[data-field="${name}"]`);
  const badge = field("state");
  badge.textContent = status.state;
  badge.className = `badge state-${status.state}`;
  const progress = field("progress");
  if (progress) progress.value = status.progress;
  const running = status.state === "running";
  setText(field("stage"), running && status.stage ? stageWords[status.stage] || status.stage : "");
  setText(field("progress-text"), running ? `${Math.round(status.progress)}%` : "");
  setText(field("eta"), running && status.eta_seconds ? `about ${formatDuration(status.eta_seconds)} left` : "");
  showCover(card, (status.outputs || {})["ingest.cover"]);
}

// The card was built before the photo was there: put it in (and take it out again if it cannot be loaded).
function showCover(card, file) {
  const placeholder = card.querySelector(".no-thumb");
  if (!placeholder || typeof file !== "string" || !PLAIN_FILE.test(file)) return;
  const image = document.createElement("img");
  image.className = "thumb cover";
  image.alt = "";
  image.addEventListener("error", () => image.replaceWith(placeholder), { once: true });
  image.src = `${encodeURIComponent(card.dataset.jobId)}/${file}`;
  placeholder.replaceWith(image);
}

for (const card of document.querySelectorAll(".card")) {
  if (!ACTIVE_STATES.has(card.dataset.jobState)) continue;
  pollJson(`${encodeURIComponent(card.dataset.jobId)}/status.json`, 5000, (status) => {
    show(card, status);
    if (!ACTIVE_STATES.has(status.state)) {
      reloadForNewState("instarecon-reload-gallery");
      return false;
    }
    return true;
  });
}

watchHealth();
setUpSearch(stageWords);
