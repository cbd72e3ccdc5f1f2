// viewer-ui.js: the overlay (progress, splat count, camera buttons, messages), all inside .viewer-ui elements, text by textContent.

const SVG = 'http://www.w3.org/2000/svg';
const ICONS = {
  prev: 'M15 5 8 12l7 7',
  next: 'M9 5l7 7-7 7',
  reset: 'M4 12a8 8 0 1 0 2.3-5.6M4 4v5h5',
  fullscreen: 'M4 9V4h5M20 9V4h-5M4 15v5h5M20 15v5h-5',
};

function element(tag, className, parent) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (parent) parent.append(node);
  return node;
}

function icon(path) {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  const stroke = document.createElementNS(SVG, 'path');
  stroke.setAttribute('d', path);
  svg.append(stroke);
  return svg;
}

export const formatCount = (n) => Math.round(n).toLocaleString();

export class ViewerUI {
  constructor(container) {
    const top = element('div', 'viewer-ui viewer-ui-top', container);
    this.progress = element('div', 'viewer-progress', top);
    this.progress.setAttribute('role', 'progressbar');
    this.progress.setAttribute('aria-label', 'Loading the scene');
    this.progress.setAttribute('aria-valuemin', '0');
    this.progress.setAttribute('aria-valuemax', '100');
    this.progress.setAttribute('aria-valuenow', '0');
    this.fill = element('div', 'viewer-progress-fill', this.progress);

    const bottom = element('div', 'viewer-ui viewer-ui-bottom', container);
    this.status = element('p', 'viewer-status', bottom);
    this.status.setAttribute('aria-live', 'polite');
    const bar = element('div', 'viewer-buttons', bottom);
    bar.setAttribute('role', 'toolbar');
    bar.setAttribute('aria-label', 'Camera');
    this.buttons = {
      prev: this.button(bar, 'viewer-prev', 'Previous camera ( [ )', ICONS.prev),
      next: this.button(bar, 'viewer-next', 'Next camera ( ] )', ICONS.next),
      reset: this.button(bar, 'viewer-reset', 'Reset view (R)', ICONS.reset),
      fullscreen: this.button(bar, 'viewer-fullscreen', 'Full screen (F)', ICONS.fullscreen),
    };

    this.messageBox = element('div', 'viewer-ui viewer-ui-message', container);
    this.messageBox.hidden = true;
    this.message = element('p', 'viewer-message', this.messageBox);
    this.message.setAttribute('role', 'alert');
  }

  button(parent, className, label, path) {
    const button = element('button', `viewer-button ${className}`, parent);
    button.type = 'button';
    button.title = label;
    button.setAttribute('aria-label', label.replace(/ \(.*\)$/, ''));
    button.append(icon(path));
    button.disabled = true;
    return button;
  }

  /** Wire the buttons: `actions` maps prev, next, reset, fullscreen to functions; a missing one hides its button. */
  connect(actions) {
    for (const [name, button] of Object.entries(this.buttons)) {
      if (actions[name]) {
        button.disabled = false;
        button.addEventListener('click', () => actions[name]());
      } else {
        button.hidden = true;
      }
    }
  }

  /** fraction in [0, 1], or null while the total is unknown. */
  setProgress(fraction) {
    const percent = fraction === null ? 0 : Math.floor(fraction * 100);
    this.progress.classList.toggle('viewer-progress-unknown', fraction === null);
    this.progress.setAttribute('aria-valuenow', String(percent));
    this.fill.style.transform = `scaleX(${fraction === null ? 0 : fraction})`;
  }

  finishProgress() {
    this.setProgress(1);
    this.progress.classList.add('viewer-progress-done');
  }

  setStatus(text) {
    this.status.textContent = text;
  }

  showMessage(text) {
    this.message.textContent = text;
    this.messageBox.hidden = false;
  }

  hideMessage() {
    this.messageBox.hidden = true;
  }

  disable() {
    for (const button of Object.values(this.buttons)) button.hidden = true;
    this.progress.hidden = true;
  }
}
