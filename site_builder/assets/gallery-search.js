// The gallery's search box: it searches every job in jobs.json (the gallery's pages hold 60 each), offline,
// and shows those that match as cards of their own in place of the page's; an empty box and "any" state
// give the page back as it was served. Each word typed must be in the set's name (any case), be its state
// ("failed"), or begin its creation date ("2026-11", "2026-11-27"); the whole text as one piece of the
// name matches too ("statue in the park"). Names are the inbox's, so they only ever go in as text.
const SHOWN_AT_MOST = 120; // cards built for one search; the count says how many more match
const PLAIN_FILE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/; // a file in the job's own folder, nothing else

export function setUpSearch(stageWords) {
  const box = document.querySelector("[data-gallery-search]");
  const results = document.querySelector("[data-search-results]");
  if (!box || !results) return;
  const text = box.querySelector("#search-text");
  const state = box.querySelector("#search-state");
  const count = box.querySelector("[data-search-count]");
  const served = [...document.querySelectorAll(".gallery:not([data-search-results]), .pages, .empty")];
  let everyJob = null; // the promise of jobs.json, fetched at the first search

  function jobs() {
    everyJob ??= fetch("jobs.json", { cache: "no-store" }).then((response) => {
      if (!response.ok) throw new Error(`jobs.json: HTTP ${response.status}`);
      return response.json();
    });
    return everyJob;
  }

  let searchNumber = 0;
  async function search() {
    const query = text.value.trim().toLowerCase();
    const wanted = state.value;
    const number = ++searchNumber;
    if (!query && !wanted) {
      results.replaceChildren();
      results.hidden = true;
      served.forEach((element) => { element.hidden = false; });
      count.textContent = "";
      return;
    }
    let listed;
    try {
      listed = await jobs();
    } catch (error) {
      everyJob = null; // try again at the next keystroke
      if (number === searchNumber) count.textContent = "The list of scenes could not be loaded; this page shows its own.";
      return;
    }
    if (number !== searchNumber) return; // a later keystroke has its own answer
    const matches = listed.filter(matcher(query, wanted));
    results.replaceChildren(...matches.slice(0, SHOWN_AT_MOST).map((job) => card(job, stageWords)));
    results.hidden = false;
    served.forEach((element) => { element.hidden = true; });
    const scenes = listed.length === 1 ? "scene" : "scenes";
    let said = `${matches.length} of ${listed.length} ${scenes} ${matches.length === 1 ? "matches" : "match"}`;
    if (matches.length > SHOWN_AT_MOST) said += `; the newest ${SHOWN_AT_MOST} are shown: add a word to narrow it`;
    count.textContent = `${said}.`;
  }

  text.addEventListener("input", search);
  state.addEventListener("change", search);
  // what the browser put back into the fields (the back button) is searched for at once
  window.addEventListener("pageshow", () => { if (text.value || state.value) search(); });
  box.hidden = false;
  if (text.value || state.value) search();
}

export function matcher(query, wanted) {
  const words = query.split(/\s+/).filter(Boolean);
  return (job) => {
    if (wanted && job.state !== wanted) return false;
    const name = String(job.name ?? "").toLowerCase();
    const created = String(job.created_at ?? "");
    return !query || name.includes(query)
      || words.every((word) => name.includes(word) || job.state === word || created.startsWith(word));
  };
}

function element(tag, className, text) {
  const made = document.createElement(tag);
  if (className) made.className = className;
  if (text !== undefined) made.textContent = text;
  return made;
}

// The card the page would have for the job, from what jobs.json says of it (no live progress: a snapshot).
function card(job, stageWords) {
  const id = String(job.job_id);
  const folder = encodeURIComponent(id);
  const item = element("li", "card");
  item.dataset.jobId = id;
  item.dataset.jobState = job.state;
  const link = element("a", "card-link");
  link.href = `${folder}/index.html`;
  const picture = [job.thumbnail, job.cover].find((path) => typeof path === "string");
  const file = picture && picture.slice(picture.lastIndexOf("/") + 1);
  if (file && PLAIN_FILE.test(file)) {
    const image = element("img", job.thumbnail ? "thumb" : "thumb cover");
    image.alt = "";
    image.loading = "lazy";
    image.src = `${folder}/${file}`;
    link.append(image);
  } else {
    link.append(element("span", "thumb no-thumb", job.state));
  }
  link.append(element("span", "name", String(job.name ?? "")));
  item.append(link);

  const line = element("p", "card-state");
  line.append(element("span", `badge state-${job.state}`, job.state));
  if (job.verdict) line.append(element("span", `verdict verdict-${job.verdict.replace(/ /g, "-")}`, job.verdict));
  item.append(line);
  if (job.state === "running" && job.stage) item.append(element("p", "card-stage", stageWords[job.stage] || job.stage));
  if (job.error) {
    const error = element("p", "card-error", job.error);
    error.title = job.error;
    item.append(error);
  }
  if (job.psnr != null || job.gaussians != null) {
    const metrics = element("dl", "card-metrics");
    const row = (term, value, className) => metrics.append(element("dt", className, term), element("dd", "", value));
    if (job.scored_on && job.scored_on !== "held-out photos") row("Scored on", "training photos", "training-views");
    row("PSNR", job.psnr == null ? "–" : `${job.psnr.toFixed(2)} dB`);
    row("SSIM", job.ssim == null ? "–" : job.ssim.toFixed(3));
    row("LPIPS", job.lpips == null ? "–" : job.lpips.toFixed(3));
    row("Gaussians", job.gaussians == null ? "–" : job.gaussians.toLocaleString("en-US"));
    item.append(metrics);
  }
  const date = element("p", "card-date");
  const time = element("time", "", moment(job.created_at));
  time.dateTime = job.created_at || "";
  date.append(time);
  item.append(date);
  return item;
}

// "2026-11-27T10:00:00Z" as the page says it: "2026-11-27 10:00 UTC"
function moment(stamp) {
  const parts = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d)/.exec(stamp || "");
  return parts ? `${parts[1]} ${parts[2]} UTC` : stamp || "–";
}
