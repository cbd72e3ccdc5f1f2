// splat-loader.js: streams scene.splat and hands rows over as they arrive, so the scene (big splats first) appears coarse to fine.

import { ROW_BYTES } from './splat-data.js';

const FLUSH_MS = 150;
const STAGING_BYTES = ROW_BYTES * 32768; // 1 MiB, aligned for the decoder's typed-array views

/**
 * Load up to `maxSplats` splats from `url`. Callbacks: begin({ total, exact }) once the headers are in (`total`
 * splats from Content-Length when the body is not compressed, else `expectedSplats`, else null); rows(Uint8Array)
 * with whole rows; flush({ loaded, fraction }) at most every FLUSH_MS and once at the end. Resolves to
 * { loaded, total, truncated }: truncated when the budget cut the download short (the rest is cancelled), total
 * the file's splat count where it is known (null where neither the headers nor `expectedSplats` can tell).
 */
export async function loadSplats(url, { maxSplats, expectedSplats, signal, begin, rows, flush }) {
  const response = await fetch(url, { signal });
  if (!response.ok) throw new Error(`could not load the scene (HTTP ${response.status})`);
  const encoding = (response.headers.get('Content-Encoding') || 'identity').toLowerCase();
  const bytes = Number(response.headers.get('Content-Length'));
  const exact = encoding === 'identity' && Number.isInteger(bytes) && bytes > 0;
  const total = exact ? Math.floor(bytes / ROW_BYTES) : expectedSplats > 0 ? expectedSplats : null;
  begin({ total, exact });
  const goal = total === null ? null : Math.min(total, maxSplats);
  const fraction = (loaded) => (goal ? Math.min(1, loaded / goal) : 0);

  const reader = response.body.getReader();
  const staging = new Uint8Array(STAGING_BYTES);
  let fill = 0, loaded = 0, truncated = false, lastFlush = performance.now();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    let offset = 0;
    while (offset < value.length && loaded < maxSplats) {
      const take = Math.min(value.length - offset, staging.length - fill);
      staging.set(value.subarray(offset, offset + take), fill);
      fill += take;
      offset += take;
      const whole = Math.min(Math.floor(fill / ROW_BYTES), maxSplats - loaded);
      if (whole > 0) {
        rows(staging.subarray(0, whole * ROW_BYTES));
        loaded += whole;
        staging.copyWithin(0, whole * ROW_BYTES, fill);
        fill -= whole * ROW_BYTES;
      }
    }
    if (loaded >= maxSplats) {
      // more bytes left in hand, or another read that is not the end: the budget cut the file short
      truncated = offset < value.length || fill > 0 || !(await reader.read()).done;
      if (truncated) await reader.cancel().catch(() => {});
      break;
    }
    const now = performance.now();
    if (now - lastFlush >= FLUSH_MS) {
      lastFlush = now;
      flush({ loaded, fraction: fraction(loaded) });
    }
  }
  flush({ loaded, fraction: 1 });
  const known = exact ? total : !truncated ? loaded : total > loaded ? total : null;
  return { loaded, total: known, truncated };
}
