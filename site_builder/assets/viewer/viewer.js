// viewer.js: one viewer's wiring: cameras, streaming, uploads, sorts, frames, controls, the link and the readiness signal.

import {
  copyView, frameFit, intrinsics, interpolateView, length, orbitUp, parseCameras, sameView, sub, trainingCamera, viewFromCamera,
  worldToCamera,
} from './camera.js';
import { DepthSorter } from './depth-sorter.js';
import { OrbitControls } from './orbit-controls.js';
import { SamplingRates } from './sampling-rates.js';
import { SplatStore, TEXELS_PER_SPLAT } from './splat-data.js';
import { loadSog } from './sog-loader.js';
import { loadSplats } from './splat-loader.js';
import { SplatRenderer } from './splat-renderer.js';
import { formatCount } from './viewer-ui.js';
import { encodeView, hashWith, parseViewHash, writeHash } from './view-link.js';

const SETTLE_MS = 350; // the camera counts as settled (and the link is written) this long after the last change
const STEP_MS = 450; // camera-to-camera transitions
const UNKNOWN_CAPACITY = 1 << 16; // first allocation when the file's size is unknown (it grows)
const TRAINER_BLUR = 0.3; // pixels^2 the trainer adds to each splat's screen covariance (gsplat's classic mode)

/**
 * data-state on the container: "loading" (the scene is still streaming), "rendering" (all of it is in, a frame of
 * the current, settled view is on its way), "ready" (the last frame shows the whole scene, sorted for the current
 * camera, each splat blurred by its sampling rate, and the URL's fragment is up to date), "error" (data-error says which: webgl2, cameras, scene, context).
 */
export class SplatViewer {
  constructor({ container, canvas, gl, ui, options }) {
    Object.assign(this, { container, canvas, gl, ui, options });
    this.poster = container.querySelector('.viewer-poster');
    this.renderer = new SplatRenderer(gl);
    this.sorter = new DepthSorter((result) => this.sorted(result), (error) => this.fail('scene', error));
    this.sampling = new SamplingRates((result) => this.rated(result), (error) => this.fail('scene', error));
    this.ratedSplats = 0;
    this.poseVersion = 0;
    this.requestedSort = '';
    this.order = null; // { order, count, pose } of the last finished sort
    this.drawn = null; // { pose, orderPose, orderCount } of the last frame
    this.needsDraw = true;
    this.settled = true;
    this.atHome = true; // on the start camera: no fragment is written
    this.pointerActive = false;
    this.animation = null;
    this.loadDone = false;
    this.failed = false;
    this.lost = false;
    this.store = null;
    this.palette = null;
    this.sentPositions = 0;
    const maxTexture = gl.getParameter(gl.MAX_TEXTURE_SIZE);
    this.textureWidth = Math.min(4096, maxTexture);
    const gpuCapacity = Math.floor(this.textureWidth / TEXELS_PER_SPLAT) * maxTexture;
    this.maxSplats = Math.min(options.maxSplats, gpuCapacity);
  }

  /** Fetch the cameras and the scene at once; frames start when both the view and some splats are in. */
  async start() {
    this.setState('loading');
    this.abort = new AbortController();
    const scene = this.loadScene();
    scene.catch(() => {}); // reported below, once the cameras are in (or not)
    try {
      await this.loadCameras();
    } catch (error) {
      this.fail('cameras', error, 'The camera list of this scene could not be loaded.');
      return;
    }
    this.attach();
    this.requestSort();
    try {
      this.finishLoading(await scene);
    } catch (error) {
      if (error.name !== 'AbortError') this.fail('scene', error, 'The scene could not be loaded.');
    }
  }

  /**
   * The biggest .sog level the device can hold (all SH bands, a third of the .splat's size; a coarser level keeps
   * the whole scene with fewer, merged splats); else, or where the .sog cannot be read, the .splat, streamed
   * biggest splats first and cut at the budget.
   */
  async loadScene() {
    const { levels, sceneUrl } = this.options;
    const level = levels.find((candidate) => candidate.splats <= this.maxSplats);
    if (level) {
      try {
        const loaded = await this.loadCompressed(level.url);
        return { ...loaded, total: Math.max(levels[0].splats, loaded.loaded) };
      } catch (error) {
        if (error.name === 'AbortError' || this.lost) throw error;
        console.warn(`viewer: ${level.url} could not be read (${error.message}); loading ${sceneUrl} instead`);
        this.store = null;
      }
    }
    return this.stream(sceneUrl);
  }

  async loadCompressed(url) {
    this.ui.setStatus('Loading…');
    const { store, palette, count } = await loadSog(url, {
      gl: this.gl,
      textureWidth: this.textureWidth,
      signal: this.abort.signal,
      progress: (fraction) => this.ui.setProgress(fraction === null ? null : 0.9 * fraction),
      begin: (total) => this.ui.setStatus(`Loading ${formatCount(total)} splats`),
    });
    this.total = count;
    this.store = store;
    this.palette = palette;
    this.renderer.setPalette(palette);
    this.flush({ loaded: count, fraction: 1 });
    return { loaded: count, total: count, truncated: false };
  }

  stream(url) {
    return loadSplats(url, {
      maxSplats: this.maxSplats,
      expectedSplats: this.options.expectedSplats,
      signal: this.abort.signal,
      begin: (info) => this.begin(info),
      rows: (bytes) => this.store.append(bytes),
      flush: (progress) => this.flush(progress),
    });
  }

  async loadCameras() {
    const response = await fetch(this.options.camerasUrl);
    if (!response.ok) throw new Error(`cameras: HTTP ${response.status}`);
    this.cameras = parseCameras(await response.json());
    if (!this.cameras.length) throw new Error('cameras.json lists no usable camera');
    this.cameraViews = this.cameras.map(viewFromCamera);
    // every placed photo's camera is a stop; only those training saw set how sharp a splat may be
    const training = this.cameras.filter((c) => c.held_out !== true);
    this.sampling.setCameras((training.length ? training : this.cameras).map(trainingCamera));
    const named = this.cameras.findIndex((c) => c.img_name === this.options.startCamera);
    this.homeIndex = this.cameraIndex = Math.max(0, named);
    this.homeView = this.cameraViews[this.homeIndex];
    this.worldUp = orbitUp(this.cameras, this.homeView.up);
    const distances = this.cameraViews.map((v) => length(sub(v.target, v.position)));
    this.sceneScale = Math.max(...distances, 1e-6);
    const linked = parseViewHash(window.location.hash);
    this.view = linked ? { ...linked, frame: this.homeView.frame } : copyView(this.homeView);
    this.atHome = !linked;
    this.showCamera(linked ? null : this.homeIndex);
  }

  attach() {
    this.controls = new OrbitControls({
      container: this.container,
      canvas: this.canvas,
      worldUp: this.worldUp,
      getView: () => this.view,
      setView: (view) => this.userView(view),
      focalCss: () => intrinsics(this.view, this.canvas.clientWidth || 1, this.canvas.clientHeight || 1).fy,
      distanceLimits: () => [1e-3 * this.sceneScale, 1e3 * this.sceneScale],
      interacting: (active) => {
        this.pointerActive = active;
        if (!active) this.scheduleSettle();
      },
      actions: this.actions(),
    });
    this.ui.connect(this.actions());
    window.addEventListener('hashchange', () => this.followHash());
    this.canvas.addEventListener('webglcontextlost', (event) => this.contextLost(event));
    this.canvas.addEventListener('webglcontextrestored', () => this.contextRestored());
    new ResizeObserver(() => this.resize()).observe(this.container);
    window.addEventListener('resize', () => this.resize()); // page zoom changes the pixel ratio, not the box
    this.watchPixelRatio();
    this.resize();
  }

  actions() {
    const fullscreen = document.fullscreenEnabled || document.webkitFullscreenEnabled;
    return {
      prev: () => this.stepCamera(-1),
      next: () => this.stepCamera(1),
      reset: () => this.goTo(this.homeView, this.homeIndex, true),
      fullscreen: fullscreen ? () => this.toggleFullscreen() : null,
      share: () => this.ui.share(this.viewLink()),
      help: () => this.ui.toggleHelp(),
    };
  }

  // ---- loading --------------------------------------------------------------------------------------------

  begin({ total }) {
    this.total = total;
    const capacity = total === null ? Math.min(UNKNOWN_CAPACITY, this.maxSplats) : Math.min(total, this.maxSplats);
    this.store = new SplatStore(capacity, this.textureWidth);
    this.ui.setProgress(total === null ? null : 0);
    this.ui.setStatus('Loading…');
  }

  flush({ loaded, fraction }) {
    const store = this.store;
    if (store.count > this.sentPositions) {
      const positions = store.positions.subarray(this.sentPositions * 3, store.count * 3);
      this.sorter.addPositions(this.sentPositions, positions);
      this.sampling.addPositions(this.sentPositions, positions);
      this.sentPositions = store.count;
    }
    this.renderer.sync(store);
    this.container.dataset.loadedSplats = String(loaded);
    if (!this.loadDone) {
      this.ui.setProgress(this.total === null ? null : fraction);
      const percent = this.total === null ? '' : `${Math.floor(fraction * 100)}% · `;
      this.ui.setStatus(`Loading ${percent}${formatCount(loaded)} splats`);
    }
    this.requestSort();
  }

  /** `total` is the full scene's count: more than `loaded` when a budget cut the stream or chose a coarser level. */
  finishLoading({ loaded, total, truncated }) {
    if (loaded === 0) {
      this.fail('scene', new Error('the scene holds no splats'), 'This scene is empty.');
      return;
    }
    this.loadDone = true;
    this.ui.finishProgress();
    this.container.dataset.totalSplats = String(total ?? '');
    if (truncated) {
      this.ui.setStatus(total ? `showing ${formatCount(loaded)} of ${formatCount(total)} splats`
        : `showing the first ${formatCount(loaded)} splats`);
      this.container.dataset.truncated = 'true';
    } else if (total > loaded) {
      this.ui.setStatus(`${formatCount(loaded)} splats, simplified from ${formatCount(total)} for this device`);
    } else {
      this.ui.setStatus(`${formatCount(loaded)} splats`);
    }
    this.requestSort();
    this.updateState();
  }

  // ---- sorting and drawing ----------------------------------------------------------------------------------

  /** Sort what has been flushed (uploaded and handed to the worker) for the current pose, unless asked already. */
  requestSort() {
    const count = this.sentPositions;
    if (count === 0 || !this.view) return;
    const key = `${this.poseVersion}:${count}`;
    if (key === this.requestedSort) return;
    this.requestedSort = key;
    const { rows, translation } = worldToCamera(this.view);
    this.sorter.request([...rows[2], translation[2]], count, this.poseVersion);
  }

  sorted({ order, count, key }) {
    this.order = { order, count, pose: key };
    this.renderer.setOrder(order, count);
    this.needsDraw = true;
    this.requestFrame();
  }

  rated({ rates, start }) {
    if (!this.store) return;
    this.store.setRates(start, rates);
    this.ratedSplats = start + rates.length;
    if (!this.lost) this.renderer.sync(this.store);
    this.needsDraw = true;
    this.requestFrame();
  }

  requestFrame() {
    if (this.frameRequested || this.failed) return;
    this.frameRequested = true;
    requestAnimationFrame((now) => this.frame(now));
  }

  frame(now) {
    this.frameRequested = false;
    if (this.animation) this.animate(now);
    if (this.needsDraw && !this.lost && this.order) {
      const { width, height } = this.canvas;
      const k = intrinsics(this.view, width, height);
      // the trainer's blur, and the least one on this screen (shaders.js): with k.fit pixels per photo pixel, as
      // wide an angle as the trainer's
      const blur = { trainer: TRAINER_BLUR, least: TRAINER_BLUR * Math.max(1, k.fit) ** 2 };
      this.renderer.draw(worldToCamera(this.view), k, width, height, this.store.splatsPerRow, this.view.position, blur);
      this.needsDraw = false;
      this.drawn = { pose: this.poseVersion, orderPose: this.order.pose, orderCount: this.order.count };
      if (this.poster && !this.poster.hidden) this.poster.hidden = true;
    }
    this.updateState();
    if (this.animation) this.requestFrame();
  }

  // ---- the camera -------------------------------------------------------------------------------------------

  /** Any camera change: a new pose to sort and draw. */
  setPose(view) {
    this.view = view;
    this.poseVersion += 1;
    this.needsDraw = true;
    this.requestSort();
    this.requestFrame();
  }

  /** A change the user made: the view is no longer settled, and the link follows once it is. */
  userView(view) {
    this.animation = null;
    this.atHome = false;
    this.showCamera(null);
    this.settled = false;
    this.setPose(view);
    this.scheduleSettle();
    this.updateState();
  }

  scheduleSettle() {
    clearTimeout(this.settleTimer);
    if (this.pointerActive || this.animation) return;
    this.settleTimer = setTimeout(() => this.settle(), SETTLE_MS);
  }

  settle() {
    if (this.pointerActive || this.animation) return;
    this.settled = true;
    if (this.atHome) {
      writeHash(hashWith(window.location.hash, null));
    } else {
      const value = encodeView(this.view);
      writeHash(hashWith(window.location.hash, value));
      // what the link reopens is what stays on screen: snap to its rounded numbers
      const linked = parseViewHash(`#camera=${value}`);
      const snapped = linked && { ...linked, frame: this.view.frame };
      if (snapped && !sameView(snapped, this.view)) this.setPose(snapped);
    }
    this.updateState();
  }

  followHash() {
    const linked = parseViewHash(window.location.hash);
    if (!linked) return;
    const view = { ...linked, frame: this.view.frame };
    if (!sameView(view, this.view)) this.userView(view);
  }

  stepCamera(direction) {
    const n = this.cameraViews.length;
    const index = (((this.cameraIndex + direction) % n) + n) % n;
    this.goTo(this.cameraViews[index], index, false);
  }

  /** Move to a photo's camera view (animated unless the user prefers reduced motion). */
  goTo(view, index, home) {
    this.cameraIndex = index;
    this.showCamera(index);
    const reduced = window.matchMedia?.('(prefers-reduced-motion: reduce)').matches;
    this.atHome = home;
    this.settled = false;
    clearTimeout(this.settleTimer);
    if (reduced || sameView(view, this.view)) {
      this.animation = null;
      this.setPose(copyView(view));
      this.scheduleSettle();
    } else {
      this.animation = { from: copyView(this.view), to: copyView(view), start: performance.now() };
      this.requestFrame();
    }
    this.updateState();
  }

  animate(now) {
    const { from, to, start } = this.animation;
    const s = Math.min(1, Math.max(0, (now - start) / STEP_MS));
    this.setPose(s >= 1 ? copyView(to) : interpolateView(from, to, s));
    if (s >= 1) {
      this.animation = null;
      this.scheduleSettle();
    }
  }

  /** "camera 3 of 24", "(held out)" where training never saw that photo; null: a view of the user's own. */
  showCamera(index) {
    const camera = index === null ? null : this.cameras[index];
    this.ui.setCamera(camera && { number: index + 1, count: this.cameras.length, heldOut: camera.held_out === true,
      name: camera.img_name });
  }

  /** The page's address with the current view in its fragment (none on the start camera), written or not yet. */
  viewLink() {
    const url = new URL(window.location.href);
    url.hash = hashWith(window.location.hash, this.atHome ? null : encodeView(this.view));
    return url.href;
  }

  // ---- the page ---------------------------------------------------------------------------------------------

  resize() {
    const ratio = Math.min(window.devicePixelRatio || 1, this.options.dprCap);
    const width = Math.max(1, Math.round(this.container.clientWidth * ratio));
    const height = Math.max(1, Math.round(this.container.clientHeight * ratio));
    if (width === this.canvas.width && height === this.canvas.height) return;
    this.canvas.width = width;
    this.canvas.height = height;
    this.placePoster();
    this.needsDraw = true;
    this.requestFrame();
    this.updateState();
  }

  /** The poster where the first frame will be: the start camera's frame, framed as intrinsics() frames it. */
  placePoster() {
    if (!this.poster || this.poster.hidden || !this.homeView) return;
    const { clientWidth: width, clientHeight: height } = this.container;
    const { frame } = this.homeView;
    const fit = frameFit(width, height, frame);
    Object.assign(this.poster.style, {
      width: `${frame.width * fit}px`, height: `${frame.height * fit}px`,
      left: `${(width - frame.width * fit) / 2}px`, top: `${(height - frame.height * fit) / 2}px`,
    });
  }

  watchPixelRatio() {
    const query = window.matchMedia?.(`(resolution: ${window.devicePixelRatio || 1}dppx)`);
    query?.addEventListener('change', () => {
      this.resize();
      this.watchPixelRatio();
    }, { once: true });
  }

  toggleFullscreen() {
    const doc = document;
    const exit = doc.exitFullscreen || doc.webkitExitFullscreen;
    const enter = this.container.requestFullscreen || this.container.webkitRequestFullscreen;
    const pending = doc.fullscreenElement || doc.webkitFullscreenElement ? exit?.call(doc) : enter?.call(this.container);
    pending?.catch?.(() => {}); // refused (no user gesture, iframe without allowfullscreen): nothing to do
  }

  contextLost(event) {
    event.preventDefault(); // lets the browser restore it
    this.lost = true;
    this.ui.showMessage('The graphics context was lost; trying to restore it…');
    this.setState('error', 'context');
  }

  contextRestored() {
    this.lost = false;
    try {
      this.renderer.init();
      if (this.palette) this.renderer.setPalette(this.palette);
      if (this.store) this.renderer.sync(this.store);
      if (this.order) this.renderer.setOrder(this.order.order, this.order.count);
    } catch (error) {
      this.fail('context', error, 'The graphics context could not be restored; reload the page.');
      return;
    }
    this.ui.hideMessage();
    this.container.removeAttribute('data-error');
    this.needsDraw = true;
    this.setState('loading');
    this.requestFrame();
    this.updateState();
  }

  fail(kind, error, message = 'The viewer stopped: reload the page to try again.') {
    if (this.failed) return;
    this.failed = true;
    this.abort?.abort();
    console.error(`viewer: ${error?.message || error}`);
    this.ui.showMessage(message);
    this.setState('error', kind);
  }

  updateState() {
    if (this.failed || this.lost) return;
    const d = this.drawn;
    const current = d && this.store && d.pose === this.poseVersion && d.orderPose === this.poseVersion
      && d.orderCount === this.store.count;
    const ready = this.loadDone && this.settled && !this.animation && !this.needsDraw && current
      && this.ratedSplats === this.store.count;
    this.setState(ready ? 'ready' : this.loadDone ? 'rendering' : 'loading');
  }

  setState(state, error) {
    if (this.container.dataset.state !== state) this.container.dataset.state = state;
    if (error) this.container.dataset.error = error;
  }
}
