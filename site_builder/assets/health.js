// The daemons' heartbeat (health.json, rewritten by every daemon every interval_seconds): shown on
// the health page in full and as one line in the gallery's header. A file older than three
// intervals means no daemon is left writing it: stopped, hung, or unable to write the outbox.
// With several daemons on one job store, the file lists them all; one that has gone silent
// (no heartbeat in the store for three of its intervals) is named in the summary.
import { formatDuration, pollJson } from "./live-json.js";

const fields = (name) => document.querySelectorAll(`[data-health-field="${name}"]`);
const put = (name, text) => fields(name).forEach((element) => { element.textContent = text; });

function describe(health, now) {
  const age = Math.max(0, (now - Date.parse(health.heartbeat_at)) / 1000);
  const stale = health.state === "stopped" || age > 3 * (health.interval_seconds || 30);
  const queue = health.queue || {};
  const running = health.current_job;
  const daemons = health.daemons || [];
  const alive = daemons.filter((daemon) => daemon.alive);
  const silent = daemons.filter((daemon) => daemon.state !== "stopped" && !daemon.alive);
  let summary;
  if (health.state === "stopped") summary = `stopped ${formatDuration(age)} ago`;
  else if (stale) summary = `no heartbeat for ${formatDuration(age)}: the daemon may be down`;
  else summary = running ? `running ${running.private ? "a private scene" : running.name} (${running.stage || "starting"})` : "idle";
  if (!stale && daemons.length > 1) summary += `, ${alive.length} of ${daemons.length} daemons alive`;
  if (!stale && queue.queued) summary += `, ${queue.queued} queued`;
  if (!stale && health.problems && health.problems.length) return { age, stale: true, summary: health.problems[0], queue, running };
  if (!stale && silent.length) {
    return { age, stale: true, summary: `${summary}; no heartbeat from ${silent.map((daemon) => daemon.host).join(", ")}`, queue, running };
  }
  return { age, stale, summary, queue, running };
}

// a private job comes without its id and name (daemon/report/heartbeat.py)
const jobWords = (job) => (job.private ? "a private scene" : `${job.name} (${job.job_id})`);

function doing(daemon) {
  const job = daemon.current_job;
  const text = daemon.state === "running" && job
    ? `${jobWords(job)}: ${job.stage || "starting"}, ${Math.round(job.progress)}%`
    : daemon.state;
  return daemon.problems && daemon.problems.length ? `${text}; ${daemon.problems.join("; ")}` : text;
}

function showDaemons(health, fileAge) {
  const body = document.querySelector("[data-health-daemons]");
  if (!body) return;
  const labels = [...body.closest("table").querySelectorAll("thead th")].map((heading) => heading.textContent);
  const rows = (health.daemons || []).map((daemon) => {
    const condition = daemon.state === "stopped" ? "stopped" : daemon.alive ? "alive" : "silent";
    // the writer measured each daemon's silence when it wrote the file; the file has aged since
    const since = (daemon.seconds_since_heartbeat || 0) + fileAge;
    const row = document.createElement("tr");
    row.className = `daemon-${condition}`;
    // the GPU it was given (instarecon@N.service: N); "any" where it was given none in particular
    const texts = [daemon.host, daemon.gpu ?? "any", condition, `${formatDuration(since)} ago`, doing(daemon), daemon.version];
    texts.forEach((text, index) => {
      const cell = document.createElement("td");
      cell.textContent = text;
      cell.dataset.label = labels[index] || ""; // the column's name, where narrow screens stack the cells
      row.append(cell);
    });
    return row;
  });
  body.replaceChildren(...rows);
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
    put("current_job", running ? `${jobWords(running)}: ${running.stage || "starting"}, ${Math.round(running.progress)}%` : "nothing");
    put("version", health.version);
    put("host", health.host || "–");
    put("started_at", health.started_at);
    showDaemons(health, age);
    return true;
  }, () => put("summary", "health.json cannot be read: the daemon has not written it yet, or the outbox is not served"));
}

if (document.body.classList.contains("health-page")) watchHealth();
