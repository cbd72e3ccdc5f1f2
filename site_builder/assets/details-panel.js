// The job's details start folded (as the page is built), so that a phone fetches nothing they hold (the
// held-out photos) before anyone opens them; on a screen with room beside the scene they unfold at once.
const panel = document.querySelector("details.job-panel.overlay");
if (panel && !matchMedia("(max-width: 40rem), (max-height: 30rem)").matches) panel.open = true;
