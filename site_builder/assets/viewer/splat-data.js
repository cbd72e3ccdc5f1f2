// splat-data.js: decodes .splat rows into the texels the GPU reads (3D covariance precomputed once, float32) and the sort's positions.

export const ROW_BYTES = 32;
export const TEXELS_PER_SPLAT = 3; // RGBA32UI: [x, y, z, rgba] [s00, s01, s02, s11] [s12, s22, 0, 0]

/** Loaded splats, growable: `texels` (the texture's contents, whole rows) and `positions` (3 floats each). */
export class SplatStore {
  constructor(capacity, textureWidth) {
    this.textureWidth = textureWidth - (textureWidth % TEXELS_PER_SPLAT); // texels per row, a whole number of splats
    this.splatsPerRow = this.textureWidth / TEXELS_PER_SPLAT;
    this.count = 0;
    this.allocate(Math.max(1, capacity));
  }

  allocate(capacity) {
    const rows = Math.ceil(capacity / this.splatsPerRow);
    const words = new Uint32Array(rows * this.textureWidth * 4);
    const positions = new Float32Array(rows * this.splatsPerRow * 3);
    if (this.words) {
      words.set(this.words.subarray(0, this.count * TEXELS_PER_SPLAT * 4));
      positions.set(this.positions.subarray(0, this.count * 3));
    }
    this.rows = rows;
    this.capacity = rows * this.splatsPerRow;
    this.words = words;
    this.floats = new Float32Array(words.buffer);
    this.positions = positions;
  }

  /** Decode whole rows; `bytes` starts on a 4-byte boundary of its buffer (the loader's staging buffer). */
  append(bytes) {
    const n = bytes.byteLength / ROW_BYTES;
    if (this.count + n > this.capacity) this.allocate(Math.max(this.count + n, this.capacity * 2));
    const f = new Float32Array(bytes.buffer, bytes.byteOffset, n * 8);
    const u = new Uint32Array(bytes.buffer, bytes.byteOffset, n * 8);
    const out = this.floats, words = this.words, positions = this.positions;
    for (let i = 0; i < n; i++) {
      const src = i * 8, b = i * ROW_BYTES;
      const splat = this.count + i, dst = splat * 12;
      let x = f[src], y = f[src + 1], z = f[src + 2];
      const sx = f[src + 3], sy = f[src + 4], sz = f[src + 5];
      let rgba = u[src + 6];
      let qw = bytes[b + 28] - 128, qx = bytes[b + 29] - 128, qy = bytes[b + 30] - 128, qz = bytes[b + 31] - 128;
      const norm = Math.hypot(qw, qx, qy, qz);
      if (norm > 0) { qw /= norm; qx /= norm; qy /= norm; qz /= norm; } else { qw = 1; qx = qy = qz = 0; }
      // R from the unit quaternion (w, x, y, z), as the trainer's projection builds it; M = R S; cov = M M^T
      const r00 = 1 - 2 * (qy * qy + qz * qz), r01 = 2 * (qx * qy - qw * qz), r02 = 2 * (qx * qz + qw * qy);
      const r10 = 2 * (qx * qy + qw * qz), r11 = 1 - 2 * (qx * qx + qz * qz), r12 = 2 * (qy * qz - qw * qx);
      const r20 = 2 * (qx * qz - qw * qy), r21 = 2 * (qy * qz + qw * qx), r22 = 1 - 2 * (qx * qx + qy * qy);
      const m00 = r00 * sx, m01 = r01 * sy, m02 = r02 * sz;
      const m10 = r10 * sx, m11 = r11 * sy, m12 = r12 * sz;
      const m20 = r20 * sx, m21 = r21 * sy, m22 = r22 * sz;
      const c00 = m00 * m00 + m01 * m01 + m02 * m02, c01 = m00 * m10 + m01 * m11 + m02 * m12;
      const c02 = m00 * m20 + m01 * m21 + m02 * m22, c11 = m10 * m10 + m11 * m11 + m12 * m12;
      const c12 = m10 * m20 + m11 * m21 + m12 * m22, c22 = m20 * m20 + m21 * m21 + m22 * m22;
      if (!Number.isFinite(x + y + z + c00 + c01 + c02 + c11 + c12 + c22)) { rgba = 0; x = y = z = 0; } // never drawn
      out[dst] = x; out[dst + 1] = y; out[dst + 2] = z; words[dst + 3] = rgba;
      out[dst + 4] = c00; out[dst + 5] = c01; out[dst + 6] = c02; out[dst + 7] = c11;
      out[dst + 8] = c12; out[dst + 9] = c22; words[dst + 10] = 0; words[dst + 11] = 0;
      positions[splat * 3] = x; positions[splat * 3 + 1] = y; positions[splat * 3 + 2] = z;
    }
    this.count += n;
  }
}
