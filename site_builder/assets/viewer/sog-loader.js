// sog-loader.js: loads a .sog (PlayCanvas's SOG, version 2: WebP textures in a zip, k-means palettes) into a SplatStore
// and an SH palette, decoding as splat-transform's reader does (the publish stage writes it: sog_export.py).

import { imagePixels } from './image-pixels.js';
import { NO_SH, SplatStore } from './splat-data.js';
import { zipEntries } from './zip-reader.js';

const SH_C0 = 0.28209479177387814;
const SQRT2 = Math.sqrt(2);
const SH_COEFFICIENTS = [0, 3, 8, 15]; // per colour channel, for 0-3 higher bands
const CENTROIDS_PER_ROW = 64; // the .sog's palette texture: 64 entries a row

/** sign(v) * (exp(|v|) - 1): the inverse of the log transform the positions are quantised in. */
const fromLog = (v) => (v < 0 ? 1 - Math.exp(-v) : Math.exp(v) - 1);

/** Fetch `url` whole, reporting progress(fraction) as bytes arrive (fraction null while the size is unknown). */
async function download(url, signal, progress) {
  const response = await fetch(url, { signal });
  if (!response.ok) throw new Error(`could not load the scene (HTTP ${response.status})`);
  const encoding = (response.headers.get('Content-Encoding') || 'identity').toLowerCase();
  const length = Number(response.headers.get('Content-Length'));
  const total = encoding === 'identity' && Number.isInteger(length) && length > 0 ? length : null;
  const reader = response.body.getReader();
  const chunks = [];
  let received = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    received += value.length;
    progress(total ? Math.min(1, received / total) : null);
  }
  const bytes = new Uint8Array(received);
  let at = 0;
  for (const chunk of chunks) { bytes.set(chunk, at); at += chunk.length; }
  return bytes;
}

/**
 * Load the .sog at `url`: resolves to { store, palette, count } (palette null for a scene without higher SH bands).
 * `begin(count)` is called once the file's splat count is known, before the decoding.
 */
export async function loadSog(url, { gl, textureWidth, signal, progress, begin }) {
  const files = await zipEntries(await download(url, signal, progress));
  const file = (name) => {
    const bytes = files.get(name);
    if (!bytes) throw new Error(`the .sog has no ${name}`);
    return bytes;
  };
  const meta = JSON.parse(new TextDecoder().decode(file('meta.json')));
  if (meta.version !== 2) throw new Error(`unsupported .sog version ${meta.version}`);
  const count = meta.count;
  if (!Number.isInteger(count) || count < 0) throw new Error('the .sog gives no splat count');
  begin(count);
  const texture = async (name, what) => {
    const image = await imagePixels(gl, file(name), 'image/webp');
    if (image.width * image.height < count) throw new Error(`the .sog's ${what} texture is too small for ${count} splats`);
    return image.rgba;
  };
  const [lo, hi] = [await texture(meta.means.files[0], 'means'), await texture(meta.means.files[1], 'means')];
  const quats = await texture(meta.quats.files[0], 'quats');
  const scales = await texture(meta.scales.files[0], 'scales');
  const colours = await texture(meta.sh0.files[0], 'sh0');
  const labels = meta.shN ? await texture(meta.shN.files[1], 'shN labels') : null;
  const palette = meta.shN ? await shPalette(gl, meta.shN, file(meta.shN.files[0]), textureWidth) : null;

  const store = new SplatStore(count, textureWidth);
  const { mins, maxs } = meta.means;
  const span = [0, 1, 2].map((j) => (maxs[j] - mins[j]) / 65535);
  const scaleCode = meta.scales.codebook.map(Math.exp);
  const colourCode = meta.sh0.codebook.map((dc) => 0.5 + SH_C0 * dc);
  const comps = [0, 0, 0, 0];
  for (let i = 0; i < count; i++) {
    const o = i * 4;
    const x = fromLog(mins[0] + span[0] * (lo[o] | (hi[o] << 8)));
    const y = fromLog(mins[1] + span[1] * (lo[o + 1] | (hi[o + 1] << 8)));
    const z = fromLog(mins[2] + span[2] * (lo[o + 2] | (hi[o + 2] << 8)));
    // the three smallest quaternion components, scaled by sqrt(2); the tag says which one (w, x, y, z) is left out
    const largest = quats[o + 3] - 252;
    if (largest >= 0 && largest <= 3) {
      let k = 0, sum = 0;
      for (let j = 0; j < 4; j++) {
        if (j === largest) continue;
        comps[j] = (quats[o + k] / 255 * 2 - 1) / SQRT2;
        sum += comps[j] * comps[j];
        k += 1;
      }
      comps[largest] = Math.sqrt(Math.max(0, 1 - sum));
    } else {
      comps[0] = 1; comps[1] = comps[2] = comps[3] = 0;
    }
    const label = labels ? labels[o] | (labels[o + 1] << 8) : NO_SH;
    store.set(i, x, y, z, scaleCode[scales[o]], scaleCode[scales[o + 1]], scaleCode[scales[o + 2]],
      comps[0], comps[1], comps[2], comps[3], colourCode[colours[o]], colourCode[colours[o + 1]],
      colourCode[colours[o + 2]], colours[o + 3] / 255, labels && label < palette.count ? label : NO_SH);
  }
  store.count = count;
  return { store, palette, count };
}

/** The .sog's palette of SH bands 1-3 as the renderer's float texture: `perRow` entries of `coeffs` RGB texels a row. */
async function shPalette(gl, shN, bytes, textureWidth) {
  const coeffs = SH_COEFFICIENTS[shN.bands];
  if (!coeffs) throw new Error(`unsupported number of SH bands in the .sog: ${shN.bands}`);
  const { width, height, rgba } = await imagePixels(gl, bytes, 'image/webp');
  if (width !== CENTROIDS_PER_ROW * coeffs) throw new Error('the .sog\'s SH palette texture has the wrong width');
  const count = Math.min(shN.count, width / coeffs * height);
  const code = shN.codebook;
  const perRow = Math.floor(textureWidth / coeffs);
  const rows = Math.max(1, Math.ceil(count / perRow));
  const texels = new Float32Array(rows * perRow * coeffs * 3);
  for (let entry = 0; entry < count; entry++) {
    const from = ((entry >> 6) * width + (entry & 63) * coeffs) * 4;
    const to = ((Math.floor(entry / perRow) * perRow + (entry % perRow)) * coeffs) * 3;
    for (let k = 0; k < coeffs; k++) {
      texels[to + k * 3] = code[rgba[from + k * 4]];
      texels[to + k * 3 + 1] = code[rgba[from + k * 4 + 1]];
      texels[to + k * 3 + 2] = code[rgba[from + k * 4 + 2]];
    }
  }
  return { coeffs, count, perRow, rows, texels };
}
