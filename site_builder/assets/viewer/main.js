// main.js: the module the page loads: for each .viewer[data-scene], build the overlay, check WebGL2 and start a viewer (no build step).

import { deviceProfile } from './device-profile.js';
import { CONTEXT_OPTIONS } from './splat-renderer.js';
import { SplatViewer } from './viewer.js';
import { ViewerUI } from './viewer-ui.js';

/** The page's .sog levels, biggest first, from data-levels: "file:splats" pairs (the whole scene, and the coarser
 * levels publish made for smaller budgets). */
function sceneLevels(container) {
  return (container.dataset.levels || '').split(/\s+/).filter(Boolean).map((pair) => {
    const at = pair.lastIndexOf(':');
    return { url: pair.slice(0, at), splats: Number(pair.slice(at + 1)) };
  }).filter((level) => level.url.endsWith('.sog') && Number.isInteger(level.splats) && level.splats > 0)
    .sort((a, b) => b.splats - a.splats);
}

function boot(container) {
  if (container.dataset.state) return; // started already
  container.dataset.state = 'loading';
  const ui = new ViewerUI(container);
  const canvas = document.createElement('canvas');
  canvas.className = 'viewer-canvas';
  canvas.tabIndex = -1;
  let gl = null;
  try {
    gl = canvas.getContext('webgl2', CONTEXT_OPTIONS);
  } catch {
    gl = null;
  }
  if (!gl) {
    ui.disable();
    ui.showMessage('This browser cannot show the 3D scene: it needs WebGL 2, which is missing or turned off. The picture is a still of the scene.');
    container.dataset.state = 'error';
    container.dataset.error = 'webgl2';
    return;
  }
  container.prepend(canvas);
  const profile = deviceProfile(container);
  const expected = Number(container.dataset.splats);
  const options = {
    sceneUrl: container.dataset.scene,
    levels: sceneLevels(container),
    camerasUrl: container.dataset.cameras || 'cameras.json',
    startCamera: container.dataset.startCamera || null,
    expectedSplats: Number.isInteger(expected) && expected > 0 ? expected : null,
    maxSplats: profile.maxSplats,
    dprCap: profile.dprCap,
  };
  try {
    new SplatViewer({ container, canvas, gl, ui, options }).start();
  } catch (error) {
    console.error(`viewer: ${error.message}`);
    ui.disable();
    ui.showMessage('The 3D viewer could not start on this device. The picture is a still of the scene.');
    container.dataset.state = 'error';
    container.dataset.error = 'webgl2';
  }
}

for (const container of document.querySelectorAll('.viewer[data-scene]')) boot(container);
