// splat-data.js: the texels the GPU reads for each splat (3D covariance precomputed once, float32; base colour and
// opacity as half floats; the index of its view-dependent colour) and the positions the sort reads.

export const ROW_BYTES = 32; // a .splat row
// RGBA32UI: [x, y, z, sh | half(rate) << 16] [s00, s01, s02, s11] [s12, s22, half(r, g), half(b, a)]: sh is the
// splat's entry in the palette of higher SH bands, rate its finest training sampling rate (sampling-worker.js)
export const TEXELS_PER_SPLAT = 3;
export const NO_SH = 0xffff; // the sh of a splat with base colour only

const halfBuffer = new Float32Array(1);
const halfBits = new Uint32Array(halfBuffer.buffer);

/** IEEE half-float bits of `value` (rounded to nearest, overflow to infinity, subnormals kept). */
export function toHalf(value) {
  halfBuffer[0] = value;
  const x = halfBits[0];
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  let mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0); // inf, NaN
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - e;
    const half = mantissa >>> shift;
    const rest = mantissa & ((1 << shift) - 1), midpoint = 1 << (shift - 1);
    return sign | (half + (rest > midpoint || (rest === midpoint && (half & 1)) ? 1 : 0));
  }
  const rest = mantissa & 0x1fff;
  let bits = sign | (e << 10) | (mantissa >>> 13);
  if (rest > 0x1000 || (rest === 0x1000 && (bits & 1))) bits += 1; // may carry into the exponent: still right
  return bits;
}

/** Loaded splats, growable: `words` (the texture's contents, whole rows) and `positions` (3 floats each). */
export class SplatStore {
  constructor(capacity, textureWidth) {
    this.textureWidth = textureWidth - (textureWidth % TEXELS_PER_SPLAT); // texels per row, a whole number of splats
    this.splatsPerRow = this.textureWidth / TEXELS_PER_SPLAT;
    this.count = 0;
    this.changedFrom = Infinity; // the first splat changed since the renderer last uploaded (setRates)
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

  /** Room for `n` more splats. */
  reserve(n) {
    if (this.count + n > this.capacity) this.allocate(Math.max(this.count + n, this.capacity * 2));
  }

  /**
   * Store splat `splat` (below capacity): centre, linear scales, unit quaternion (w, x, y, z), base colour
   * (0.5 + SH_C0 * dc, unclamped), opacity in [0, 1], and `sh`, its entry in the palette of higher SH bands or NO_SH.
   */
  set(splat, x, y, z, sx, sy, sz, qw, qx, qy, qz, r, g, b, a, sh) {
    // R from the unit quaternion, as the trainer's projection builds it; M = R S; cov = M M^T
    const r00 = 1 - 2 * (qy * qy + qz * qz), r01 = 2 * (qx * qy - qw * qz), r02 = 2 * (qx * qz + qw * qy);
    const r10 = 2 * (qx * qy + qw * qz), r11 = 1 - 2 * (qx * qx + qz * qz), r12 = 2 * (qy * qz - qw * qx);
    const r20 = 2 * (qx * qz - qw * qy), r21 = 2 * (qy * qz + qw * qx), r22 = 1 - 2 * (qx * qx + qy * qy);
    const m00 = r00 * sx, m01 = r01 * sy, m02 = r02 * sz;
    const m10 = r10 * sx, m11 = r11 * sy, m12 = r12 * sz;
    const m20 = r20 * sx, m21 = r21 * sy, m22 = r22 * sz;
    const c00 = m00 * m00 + m01 * m01 + m02 * m02, c01 = m00 * m10 + m01 * m11 + m02 * m12;
    const c02 = m00 * m20 + m01 * m21 + m02 * m22, c11 = m10 * m10 + m11 * m11 + m12 * m12;
    const c12 = m10 * m20 + m11 * m21 + m12 * m22, c22 = m20 * m20 + m21 * m21 + m22 * m22;
    if (!Number.isFinite(x + y + z + c00 + c01 + c02 + c11 + c12 + c22 + r + g + b)) { a = 0; x = y = z = 0; } // never drawn
    const out = this.floats, words = this.words, dst = splat * 12;
    out[dst] = x; out[dst + 1] = y; out[dst + 2] = z; words[dst + 3] = sh;
    out[dst + 4] = c00; out[dst + 5] = c01; out[dst + 6] = c02; out[dst + 7] = c11;
    out[dst + 8] = c12; out[dst + 9] = c22;
    words[dst + 10] = (toHalf(r) | (toHalf(g) << 16)) >>> 0;
    words[dst + 11] = (toHalf(b) | (toHalf(a) << 16)) >>> 0;
    const positions = this.positions;
    positions[splat * 3] = x; positions[splat * 3 + 1] = y; positions[splat * 3 + 2] = z;
  }

  /** The sampling rates of splats start, start + 1, ... (pixels per unit of length at the splat, 0: unknown). */
  setRates(start, rates) {
    const words = this.words;
    for (let i = 0; i < rates.length; i++) {
      const at = (start + i) * 12 + 3;
      words[at] = ((words[at] & 0xffff) | (toHalf(Math.min(rates[i], 65504)) << 16)) >>> 0;
    }
    this.changedFrom = Math.min(this.changedFrom, start);
  }

  /** Decode whole .splat rows; `bytes` starts on a 4-byte boundary of its buffer (the loader's staging buffer). */
  append(bytes) {
    const n = bytes.byteLength / ROW_BYTES;
    this.reserve(n);
    const f = new Float32Array(bytes.buffer, bytes.byteOffset, n * 8);
    for (let i = 0; i < n; i++) {
      const src = i * 8, b = i * ROW_BYTES;
      let qw = bytes[b + 28] - 128, qx = bytes[b + 29] - 128, qy = bytes[b + 30] - 128, qz = bytes[b + 31] - 128;
      const norm = Math.hypot(qw, qx, qy, qz);
      if (norm > 0) { qw /= norm; qx /= norm; qy /= norm; qz /= norm; } else { qw = 1; qx = qy = qz = 0; }
      this.set(this.count + i, f[src], f[src + 1], f[src + 2], f[src + 3], f[src + 4], f[src + 5], qw, qx, qy, qz,
        bytes[b + 24] / 255, bytes[b + 25] / 255, bytes[b + 26] / 255, bytes[b + 27] / 255, NO_SH);
    }
    this.count += n;
  }
}
