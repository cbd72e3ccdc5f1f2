// view-link.js: the shareable view in the URL fragment (#camera=px,py,pz,tx,ty,tz,ux,uy,uz,fov), read and written.
// Fields: position, target, up, vertical field of view in degrees; written with history.replaceState; invalid ones are ignored.

import { cross, length, normalize, sub } from './camera.js';

const KEY = 'camera';

/** The fragment value for `view`, with decimals suited to its orbit distance. */
export function encodeView(view) {
  const distance = length(sub(view.target, view.position));
  const digits = Math.min(8, Math.max(2, 4 - Math.floor(Math.log10(distance || 1))));
  const fixed = (x, n) => String(Number(x.toFixed(n)));
  const up = normalize(view.up);
  return [...view.position.map((x) => fixed(x, digits)), ...view.target.map((x) => fixed(x, digits)),
    ...up.map((x) => fixed(x, 4)), fixed((view.fovY * 180) / Math.PI, 3)].join(',');
}

/** { position, target, up, fovY } from a location hash, or null when it holds no valid camera. */
export function parseViewHash(hash) {
  const part = (hash || '').replace(/^#/, '').split('&').find((p) => p.startsWith(`${KEY}=`));
  if (!part) return null;
  const text = decodeURIComponent(part.slice(KEY.length + 1));
  const values = text.split(',').map((s) => (/^\s*-?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?\s*$/i.test(s) ? Number(s) : NaN));
  if (values.length !== 10 || !values.every(Number.isFinite)) return null;
  const position = values.slice(0, 3), target = values.slice(3, 6), up = values.slice(6, 9), fov = values[9];
  const forward = sub(target, position);
  if (!(length(forward) > 1e-9 && length(up) > 1e-9 && fov > 0.5 && fov < 179)) return null;
  if (length(cross(normalize(forward), normalize(up))) < 1e-3) return null; // up along the view: no roll defined
  return { position, target, up: normalize(up), fovY: (fov * Math.PI) / 180 };
}

/** The hash with our camera in it (other fragment parts kept), or without it when `value` is null. */
export function hashWith(hash, value) {
  const parts = (hash || '').replace(/^#/, '').split('&').filter((p) => p && !p.startsWith(`${KEY}=`));
  if (value !== null) parts.unshift(`${KEY}=${value}`);
  return parts.length ? `#${parts.join('&')}` : '';
}

/** Replace the current history entry's fragment; quietly does nothing where the browser refuses. */
export function writeHash(hash) {
  if (hash === window.location.hash || (hash === '' && !window.location.hash)) return;
  try {
    const url = new URL(window.location.href);
    url.hash = hash;
    window.history.replaceState(window.history.state, '', url.href);
  } catch {
    // replaceState can throw when called too often (Safari) or on opaque origins; the link is a convenience
  }
}
