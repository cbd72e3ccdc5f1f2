// sort-worker.js: orders splats back to front off the main thread (a 16-bit counting sort on view depth); a classic worker, no imports.
// Messages in: { positions, start } appends positions (3 floats a splat); { sort: [r20, r21, r22, t2] (the camera's
// z row), count, id } sorts the first `count`. Out: { order: Uint32Array (transferred), count, id, ms }.
'use strict';

let positions = new Float32Array(0);
let depths = new Float32Array(0);
let keys = new Uint16Array(0);
const counts = new Uint32Array(65536);

function append(start, chunk) {
  const needed = (start + chunk.length / 3) * 3;
  if (needed > positions.length) {
    const grown = new Float32Array(Math.max(needed, positions.length * 2));
    grown.set(positions);
    positions = grown;
  }
  positions.set(chunk, start * 3);
}

function sort(row, count) {
  if (depths.length < count) {
    depths = new Float32Array(count);
    keys = new Uint16Array(count);
  }
  const [a, b, c, d] = row;
  let near = Infinity, far = -Infinity;
  for (let i = 0, j = 0; i < count; i++, j += 3) {
    const z = a * positions[j] + b * positions[j + 1] + c * positions[j + 2] + d;
    depths[i] = z;
    if (z < near) near = z;
    if (z > far) far = z;
  }
  const scale = far > near ? 65535 / (far - near) : 0;
  counts.fill(0);
  for (let i = 0; i < count; i++) {
    const key = ((far - depths[i]) * scale) | 0; // 0 = farthest
    keys[i] = key;
    counts[key]++;
  }
  for (let k = 0, sum = 0; k < 65536; k++) {
    const n = counts[k];
    counts[k] = sum;
    sum += n;
  }
  const order = new Uint32Array(count);
  for (let i = 0; i < count; i++) order[counts[keys[i]]++] = i;
  return order;
}

self.onmessage = (event) => {
  const message = event.data;
  if (message.positions) {
    append(message.start, message.positions);
  } else if (message.sort) {
    const started = performance.now();
    const order = sort(message.sort, message.count);
    self.postMessage({ order, count: message.count, id: message.id, ms: performance.now() - started }, [order.buffer]);
  }
};
