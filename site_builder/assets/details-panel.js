// On a small screen the job's details would hide the scene: start with them folded away.
const panel = document.querySelector("details.job-panel.overlay");
if (panel && matchMedia("(max-width: 40rem), (max-height: 30rem)").matches) panel.open = false;
