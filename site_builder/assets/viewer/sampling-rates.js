// sampling-rates.js: the main thread's side of the sampling worker: hands it the training cameras and the splats'
// positions, and passes each stretch of rates on.

export class SamplingRates {
  /** onRates({ rates, start }) receives each stretch of rates; onError(error) a worker failure. */
  constructor(onRates, onError) {
    this.worker = new Worker(new URL('./sampling-worker.js', import.meta.url));
    this.worker.onmessage = (event) => onRates(event.data);
    this.worker.onerror = (event) => { event.preventDefault(); onError(new Error(event.message || 'the sampling worker failed')); };
  }

  /** The training cameras: { rows, translation } (world to camera) and the intrinsics of each photo. */
  setCameras(cameras) {
    this.worker.postMessage({ cameras });
  }

  /** Positions of splats start, start + 1, ... (a copy is transferred). */
  addPositions(start, positions) {
    const copy = positions.slice();
    this.worker.postMessage({ positions: copy, start }, [copy.buffer]);
  }
}
