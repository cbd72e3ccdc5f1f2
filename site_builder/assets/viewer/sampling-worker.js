// sampling-worker.js: each splat's finest training sampling rate, f / z of the training camera that saw it largest
// (Mip-Splatting's 3D filter rate), off the main thread; a classic worker, no imports.
// Messages in: { cameras: [{ rows: [[...], [...], [...]], translation, fx, fy, cx, cy, width, height }] } once;
// { positions, start } appends positions (3 floats a splat). Out: { rates: Float32Array (transferred), start } for
// every stretch of splats once both their positions and the cameras are in; 0 where no training camera saw it.
'use strict';

const MARGIN = 0.15; // a centre this far outside a frame (as a share of its size) still counts as seen, as in Mip-Splatting

let cameras = null;
let positions = new Float32Array(0);
let count = 0;
let done = 0;

function append(start, chunk) {
  const needed = (start + chunk.length / 3) * 3;
  if (needed > positions.length) {
    const grown = new Float32Array(Math.max(needed, positions.length * 2));
    grown.set(positions.subarray(0, count * 3));
    positions = grown;
  }
  positions.set(chunk, start * 3);
  count = Math.max(count, start + chunk.length / 3);
}

function rates(start, end) {
  const out = new Float32Array(end - start);
  for (const c of cameras) {
    const [r0, r1, r2] = c.rows, [t0, t1, t2] = c.translation;
    const focal = Math.max(c.fx, c.fy);
    const left = -MARGIN * c.width, right = (1 + MARGIN) * c.width;
    const top = -MARGIN * c.height, bottom = (1 + MARGIN) * c.height;
    for (let i = start, j = start * 3; i < end; i++, j += 3) {
      const x = positions[j], y = positions[j + 1], z = positions[j + 2];
      const depth = r2[0] * x + r2[1] * y + r2[2] * z + t2;
      if (!(depth > 0.01)) continue;
      const u = c.fx * (r0[0] * x + r0[1] * y + r0[2] * z + t0) / depth + c.cx;
      const v = c.fy * (r1[0] * x + r1[1] * y + r1[2] * z + t1) / depth + c.cy;
      if (u < left || u > right || v < top || v > bottom) continue;
      const rate = focal / depth;
      if (rate > out[i - start]) out[i - start] = rate;
    }
  }
  return out;
}

function catchUp() {
  if (!cameras || done >= count) return;
  const start = done;
  done = count;
  const out = rates(start, count);
  self.postMessage({ rates: out, start }, [out.buffer]);
}

self.onmessage = (event) => {
  const message = event.data;
  if (message.cameras) cameras = message.cameras;
  else if (message.positions) append(message.start, message.positions);
  catchUp();
};
