// camera.js: the pinhole camera in the trainer's conventions (OpenCV axes), so a training camera's view renders as the trainer rendered it.

export const add = (a, b) => [a[0] + b[0], a[1] + b[1], a[2] + b[2]];
export const sub = (a, b) => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
export const scale = (a, s) => [a[0] * s, a[1] * s, a[2] * s];
export const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
export const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
export const length = (a) => Math.hypot(a[0], a[1], a[2]);
export const normalize = (a) => scale(a, 1 / (length(a) || 1));
export const lerp = (a, b, s) => add(a, scale(sub(b, a), s));

/** `v` rotated by `angle` radians about the unit vector `axis` (Rodrigues). */
export function rotate(v, axis, angle) {
  const c = Math.cos(angle), s = Math.sin(angle);
  return add(add(scale(v, c), scale(cross(axis, v), s)), scale(axis, dot(axis, v) * (1 - c)));
}

const finite = (x) => typeof x === 'number' && Number.isFinite(x);
const finiteVector = (v, n) => Array.isArray(v) && v.length === n && v.every(finite);

/**
 * A view is { position, target, up, fovY, frame }: the camera centre, the point it orbits (it looks at it), its
 * up direction (-y of OpenCV's camera axes, so it carries the roll) and the vertical field of view of `frame`,
 * the training image it is shown as: { width, height, pixelAspect (fx / fy), offset ([cx - w/2, cy - h/2]) }.
 * The canvas shows that frame centred in it, scaled by frameFit, with more scene around it.
 */
export function cameraAxes(view) {
  const forward = normalize(sub(view.target, view.position));
  const right = normalize(cross(forward, view.up));
  const down = cross(forward, right);
  return { right, down, forward };
}

/** World-to-camera rotation rows (right, down, forward) and translation -R * position. */
export function worldToCamera(view) {
  const { right, down, forward } = cameraAxes(view);
  const p = view.position;
  return { rows: [right, down, forward], translation: [-dot(right, p), -dot(down, p), -dot(forward, p)] };
}

// On a screen much taller than the photos the frame still fills this much of its height (a landscape photo fitted
// inside a portrait phone, "contain", filled a third of it).
export const PORTRAIT_FILL = 0.75;

/**
 * Canvas pixels per frame pixel: the whole frame fitted inside the canvas ("contain"), as on any landscape screen
 * (the first frame is then the trainer's picture of the photo), but never less than PORTRAIT_FILL of the canvas's
 * height, cropping the frame's sides: a 4:3 photo on a 390x844 phone fills 75% of the height (not 35%) and shows
 * the middle 46% of its width, with the scene above and below it; filling all the height would show 35% of it.
 * Continuous in the canvas's shape (a resized window never jumps): for photos up to 4:3 only portrait canvases
 * change, for 16:9 photos canvases narrower than 4:3.
 */
export function frameFit(width, height, frame) {
  return Math.max(Math.min(width / frame.width, height / frame.height), (PORTRAIT_FILL * height) / frame.height);
}

/** Pinhole intrinsics in drawing-buffer pixels for a canvas of width x height, and `fit`, such pixels per frame pixel. */
export function intrinsics(view, width, height) {
  const frame = view.frame;
  const fit = frameFit(width, height, frame);
  const fy = (fit * frame.height) / (2 * Math.tan(view.fovY / 2));
  return {
    fx: fy * frame.pixelAspect,
    fy,
    cx: width / 2 + frame.offset[0] * fit,
    cy: height / 2 + frame.offset[1] * fit,
    fit,
  };
}

/** Valid cameras.json entries, in file order; anything malformed is left out. */
export function parseCameras(json) {
  if (!Array.isArray(json)) return [];
  return json.filter((entry) => entry && typeof entry === 'object'
    && finiteVector(entry.position, 3) && Array.isArray(entry.rotation) && entry.rotation.length === 3
    && entry.rotation.every((row) => finiteVector(row, 3))
    && [entry.width, entry.height, entry.fx, entry.fy].every((x) => finite(x) && x > 0));
}

/** A cameras.json entry as the sampling worker reads it: world-to-camera rows and translation, and intrinsics. */
export function trainingCamera(entry) {
  const rows = [0, 1, 2].map((j) => [entry.rotation[0][j], entry.rotation[1][j], entry.rotation[2][j]]);
  return {
    rows,
    translation: rows.map((row) => -dot(row, entry.position)),
    fx: entry.fx,
    fy: entry.fy,
    cx: finite(entry.cx) ? entry.cx : entry.width / 2,
    cy: finite(entry.cy) ? entry.cy : entry.height / 2,
    width: entry.width,
    height: entry.height,
  };
}

/** The view a training camera had, orbiting the point of its view ray nearest the origin (the scene's centre). */
export function viewFromCamera(entry) {
  const column = (j) => normalize([entry.rotation[0][j], entry.rotation[1][j], entry.rotation[2][j]]);
  const forward = column(2);
  const up = scale(column(1), -1);
  const position = entry.position.slice();
  const along = -dot(position, forward);
  const distance = along > 1e-6 * (length(position) || 1) ? along : length(position) || 1;
  const cx = finite(entry.cx) ? entry.cx : entry.width / 2;
  const cy = finite(entry.cy) ? entry.cy : entry.height / 2;
  return {
    position,
    target: add(position, scale(forward, distance)),
    up,
    fovY: 2 * Math.atan(entry.height / (2 * entry.fy)),
    frame: { width: entry.width, height: entry.height, pixelAspect: entry.fx / entry.fy, offset: [cx - entry.width / 2, cy - entry.height / 2] },
  };
}

/** The orbit's up axis: the mean up direction of the training cameras (COLMAP's world has no fixed up). */
export function orbitUp(entries, fallback) {
  let sum = [0, 0, 0];
  for (const entry of entries) sum = sub(sum, [entry.rotation[0][1], entry.rotation[1][1], entry.rotation[2][1]]);
  return length(sum) > 1e-6 * Math.max(1, entries.length) ? normalize(sum) : normalize(fallback);
}

export function copyView(view) {
  return { ...view, position: view.position.slice(), target: view.target.slice(), up: view.up.slice() };
}

export function sameView(a, b) {
  return ['position', 'target', 'up'].every((key) => a[key].every((x, i) => x === b[key][i])) && a.fovY === b.fovY;
}

/** In-between view for camera transitions (s in [0, 1]); the frame switches at the end. */
export function interpolateView(a, b, s) {
  const t = s * s * (3 - 2 * s);
  return {
    position: lerp(a.position, b.position, t),
    target: lerp(a.target, b.target, t),
    up: length(lerp(a.up, b.up, t)) > 1e-3 ? normalize(lerp(a.up, b.up, t)) : b.up.slice(),
    fovY: a.fovY + (b.fovY - a.fovY) * t,
    frame: s >= 1 ? b.frame : a.frame,
  };
}
