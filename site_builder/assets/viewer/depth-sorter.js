// depth-sorter.js: the main thread's side of the sort worker: one sort in flight, only the newest request waiting, stale ones dropped.

export class DepthSorter {
  /** onOrder({ order, count, key }) receives each finished sort; onError(error) a worker failure. */
  constructor(onOrder, onError) {
    this.worker = new Worker(new URL('./sort-worker.js', import.meta.url));
    this.worker.onmessage = (event) => this.finished(event.data);
    this.worker.onerror = (event) => { event.preventDefault(); onError(new Error(event.message || 'the sort worker failed')); };
    this.onOrder = onOrder;
    this.busy = null;
    this.waiting = null;
    this.nextId = 1;
    this.lastMs = 0;
  }

  /** Hand the worker positions of splats start, start + 1, ... (a copy is transferred). */
  addPositions(start, positions) {
    const copy = positions.slice();
    this.worker.postMessage({ positions: copy, start }, [copy.buffer]);
  }

  /** Ask for the order of the first `count` splats seen through the z row `row`; `key` comes back with it. */
  request(row, count, key) {
    this.waiting = { row: Array.from(row), count, key };
    if (!this.busy) this.send();
  }

  send() {
    const job = this.waiting;
    this.waiting = null;
    if (!job) return;
    this.busy = { ...job, id: this.nextId++ };
    this.worker.postMessage({ sort: job.row, count: job.count, id: this.busy.id });
  }

  finished(message) {
    const job = this.busy;
    this.busy = null;
    this.lastMs = message.ms;
    if (job && message.id === job.id) this.onOrder({ order: message.order, count: message.count, key: job.key });
    this.send();
  }

  terminate() {
    this.worker.terminate();
  }
}
