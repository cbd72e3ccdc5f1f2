// orbit-controls.js: mouse, touch and keyboard input turned into orbit, pan, dolly and move steps on the view.

import { add, cameraAxes, dot, length, normalize, rotate, scale, sub } from './camera.js';

const KEY_ANGLE = (5 * Math.PI) / 180;
const WHEEL_RATE = 0.0015; // dolly factor per wheel pixel, exponential
const MIN_PITCH_COS = 0.995; // never look straight along the orbit axis (the roll would flip)

/** The view orbited about its target: yaw about `worldUp`, then pitch about the camera's right axis. */
export function orbit(view, yaw, pitch, worldUp) {
  let offset = rotate(sub(view.position, view.target), worldUp, yaw);
  let up = rotate(view.up, worldUp, yaw);
  const turned = { ...view, position: add(view.target, offset), up };
  const right = cameraAxes(turned).right;
  const pitchedOffset = rotate(offset, right, pitch);
  if (Math.abs(dot(normalize(pitchedOffset), worldUp)) < MIN_PITCH_COS) {
    offset = pitchedOffset;
    up = rotate(up, right, pitch);
  }
  return { ...view, position: add(view.target, offset), up };
}

/** Both camera and target moved by `right` and `down` world units along the camera's axes. */
export function pan(view, right, down) {
  const axes = cameraAxes(view);
  const shift = add(scale(axes.right, right), scale(axes.down, down));
  return { ...view, position: add(view.position, shift), target: add(view.target, shift) };
}

/** The camera moved towards (factor < 1) or away from the target, the distance kept in [min, max]. */
export function dolly(view, factor, min, max) {
  const offset = sub(view.position, view.target);
  const distance = length(offset);
  const next = Math.min(max, Math.max(min, distance * factor));
  return { ...view, position: add(view.target, scale(offset, next / (distance || 1))) };
}

/** Camera and target moved forward and right by fractions of the orbit distance (the keyboard's WASD). */
export function move(view, forward, right) {
  const axes = cameraAxes(view);
  const distance = length(sub(view.target, view.position));
  const shift = add(scale(axes.forward, forward * distance), scale(axes.right, right * distance));
  return { ...view, position: add(view.position, shift), target: add(view.target, shift) };
}

export class OrbitControls {
  /**
   * host: { container, canvas, worldUp, getView(), setView(view), focalCss() (focal length in CSS pixels),
   * distanceLimits() -> [min, max], interacting(active), actions: { prev, next, reset, fullscreen, help } }.
   */
  constructor(host) {
    this.host = host;
    this.pointers = new Map();
    this.listeners = [];
    const canvas = host.canvas;
    this.listen(canvas, 'pointerdown', (e) => this.pointerDown(e));
    this.listen(canvas, 'pointermove', (e) => this.pointerMove(e));
    for (const type of ['pointerup', 'pointercancel', 'lostpointercapture']) this.listen(canvas, type, (e) => this.pointerUp(e));
    this.listen(canvas, 'wheel', (e) => this.wheel(e), { passive: false });
    this.listen(canvas, 'contextmenu', (e) => e.preventDefault());
    this.listen(window, 'keydown', (e) => this.keyDown(e));
  }

  listen(target, type, handler, options) {
    target.addEventListener(type, handler, options);
    this.listeners.push(() => target.removeEventListener(type, handler, options));
  }

  dispose() {
    for (const remove of this.listeners) remove();
  }

  change(update) {
    this.host.setView(update(this.host.getView()));
  }

  pointerDown(event) {
    if (this.pointers.size === 0) this.host.interacting(true);
    try {
      this.host.canvas.setPointerCapture(event.pointerId);
    } catch {
      // a pointer the browser no longer tracks: the drag still works while it stays over the canvas
    }
    const pan = event.button === 2 || event.button === 1 || event.shiftKey || event.ctrlKey || event.metaKey;
    this.pointers.set(event.pointerId, { x: event.clientX, y: event.clientY, pan });
    this.pinch = this.pinchState();
    event.preventDefault();
  }

  pointerMove(event) {
    const pointer = this.pointers.get(event.pointerId);
    if (!pointer) return;
    const dx = event.clientX - pointer.x, dy = event.clientY - pointer.y;
    pointer.x = event.clientX;
    pointer.y = event.clientY;
    if (this.pointers.size >= 2) {
      const pinch = this.pinchState();
      const before = this.pinch;
      this.pinch = pinch;
      if (!before || pinch.span < 1 || before.span < 1) return;
      const [min, max] = this.host.distanceLimits();
      this.change((view) => {
        const moved = this.panPixels(view, pinch.x - before.x, pinch.y - before.y);
        return dolly(moved, before.span / pinch.span, min, max);
      });
    } else if (pointer.pan || event.shiftKey) {
      this.change((view) => this.panPixels(view, dx, dy));
    } else {
      const size = this.host.container.clientHeight || 1;
      this.change((view) => orbit(view, (-dx / size) * Math.PI, (-dy / size) * Math.PI, this.host.worldUp));
    }
  }

  pointerUp(event) {
    if (!this.pointers.delete(event.pointerId)) return;
    this.pinch = this.pinchState();
    if (this.pointers.size === 0) this.host.interacting(false);
  }

  pinchState() {
    if (this.pointers.size < 2) return null;
    const [a, b] = [...this.pointers.values()];
    return { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2, span: Math.hypot(a.x - b.x, a.y - b.y) };
  }

  /** The scene follows the cursor: the target plane moves by dx, dy CSS pixels. */
  panPixels(view, dx, dy) {
    const perPixel = length(sub(view.target, view.position)) / this.host.focalCss();
    return pan(view, -dx * perPixel, -dy * perPixel);
  }

  wheel(event) {
    event.preventDefault();
    const unit = event.deltaMode === 1 ? 16 : event.deltaMode === 2 ? 400 : 1;
    const [min, max] = this.host.distanceLimits();
    this.change((view) => dolly(view, Math.exp(event.deltaY * unit * WHEEL_RATE), min, max));
  }

  keyDown(event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    // keys go to the viewer unless someone is typing or the focus is in another viewer on the same page
    const target = event.target instanceof Element ? event.target : document.body;
    const owner = target.closest('.viewer');
    if (owner && owner !== this.host.container) return;
    if (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName)) return;
    const { actions, worldUp } = this.host;
    const [min, max] = this.host.distanceLimits();
    const step = event.shiftKey ? 0.25 : 1;
    const byCode = {
      ArrowLeft: () => this.change((v) => (event.shiftKey ? pan(v, -0.05 * dist(v), 0) : orbit(v, -KEY_ANGLE, 0, worldUp))),
      ArrowRight: () => this.change((v) => (event.shiftKey ? pan(v, 0.05 * dist(v), 0) : orbit(v, KEY_ANGLE, 0, worldUp))),
      ArrowUp: () => this.change((v) => (event.shiftKey ? pan(v, 0, -0.05 * dist(v)) : orbit(v, 0, -KEY_ANGLE, worldUp))),
      ArrowDown: () => this.change((v) => (event.shiftKey ? pan(v, 0, 0.05 * dist(v)) : orbit(v, 0, KEY_ANGLE, worldUp))),
      KeyW: () => this.change((v) => move(v, 0.1 * step, 0)),
      KeyS: () => this.change((v) => move(v, -0.1 * step, 0)),
      KeyA: () => this.change((v) => move(v, 0, -0.05 * step)),
      KeyD: () => this.change((v) => move(v, 0, 0.05 * step)),
      PageUp: actions.prev,
      PageDown: actions.next,
      KeyR: actions.reset,
      KeyF: actions.fullscreen,
    };
    const byKey = {
      '+': () => this.change((v) => dolly(v, 0.85, min, max)),
      '=': () => this.change((v) => dolly(v, 0.85, min, max)),
      '-': () => this.change((v) => dolly(v, 1 / 0.85, min, max)),
      _: () => this.change((v) => dolly(v, 1 / 0.85, min, max)),
      '[': actions.prev,
      ']': actions.next,
      '?': actions.help,
    };
    const handler = byKey[event.key] || byCode[event.code] || (event.code === 'NumpadAdd' && byKey['+'])
      || (event.code === 'NumpadSubtract' && byKey['-']);
    if (!handler) return;
    if (target.tagName === 'BUTTON' && (event.key === 'Enter' || event.key === ' ')) return;
    event.preventDefault();
    handler();
  }
}

const dist = (view) => length(sub(view.target, view.position));
