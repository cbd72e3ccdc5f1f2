// device-profile.js: the splat budget and pixel-ratio cap this device can take (phones and low memory get less; page and user may override).

export const DESKTOP_SPLATS = 3_000_000;
export const MID_MEMORY_SPLATS = 1_500_000; // navigator.deviceMemory <= 4 GiB
export const PHONE_SPLATS = 600_000; // coarse pointer, mobile, or <= 2 GiB

function positiveInteger(text) {
  const value = Number(text);
  return Number.isInteger(value) && value > 0 ? value : null;
}

/** { maxSplats, dprCap, limitedDevice } for this device and page. */
export function deviceProfile(container) {
  const coarse = window.matchMedia?.('(pointer: coarse)').matches ?? false;
  const mobile = coarse || navigator.userAgentData?.mobile === true;
  const memory = navigator.deviceMemory; // GiB, Chromium only
  let maxSplats = DESKTOP_SPLATS;
  if (memory && memory <= 4) maxSplats = MID_MEMORY_SPLATS;
  if (mobile || (memory && memory <= 2)) maxSplats = PHONE_SPLATS;
  const limitedDevice = maxSplats < DESKTOP_SPLATS;
  const fromPage = positiveInteger(container.dataset.maxSplats);
  const fromUser = positiveInteger(new URLSearchParams(window.location.search).get('max-splats'));
  return { maxSplats: fromUser ?? fromPage ?? maxSplats, dprCap: mobile ? 1.5 : 2, limitedDevice };
}
