// The daemon's heartbeat (health.json, rewritten by the daemon every interval_seconds): shown on
// the health page in full and as one line in the gallery's header. A heartbeat older than three
// intervals means the daemon is stopped, hung or cannot write the outbox.
import { formatDuration, pollJson } from "./live-json.js";

const fields = (name) => document.querySelectorAll(`[data-health-field="${name}"]`);
const put = (name, text) => fields(name).forEach((element) => { element.textContent = text; });

function describe(health, now) {
  const age = Math.max(0, (now - Date.parse(health.heartbeat_at)) / 1000);
  const stale = health.state === "stopped" || age > 3 * (health.interval_seconds || 30);
  const queue = health.queue || {};
  const running = health.current_job;
  let summary;
  if (health.state === "stopped") summary = `stopped ${formatDuration(age)} ago`;
  else if (stale) summary = `no heartbeat for ${formatDuration(age)}: the daemon may be down`;
  else summary = running ? `running ${running.name} (${running.stage || "starting"})` : "idle";
  if (!stale && queue.queued) summary += `, ${queue.queued} queued`;
  if (!stale && health.problems && health.problems.length) return { age, stale: true, summary: health.problems[0], queue, running };
  return { age, stale, summary, queue, running };
}

export function watchHealth(url = "health.json") {
  pollJson(url, 10000, (health) => {
    const { age, stale, summary, queue, running } = describe(health, Date.now());
    put("summary", summary);
    fields("summary").forEach((element) => element.classList.toggle("stale", stale));
    fields("summary").forEach((element) => element.classList.toggle("fresh", !stale));
    put("heartbeat_at", `${health.heartbeat_at} (${formatDuration(age)} ago)`);
    put("state", health.state);
    put("queue", `${queue.queued || 0} queued, ${queue.waiting || 0} waiting for READY or settling`);
    put("current_job", running ? `${running.name} (${running.job_id}): ${running.stage || "starting"}, ${Math.round(running.progress)}%` : "nothing");
    put("version", health.version);
    put("host", health.host || "–");
    put("started_at", health.started_at);
    return true;
  }, () => put("summary", "health.json cannot be read: the daemon has not written it yet, or the outbox is not served"));
}

if (document.body.classList.contains("health-page")) watchHealth();
