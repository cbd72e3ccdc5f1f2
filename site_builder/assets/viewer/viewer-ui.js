// viewer-ui.js: the overlay (progress, splat count, which camera, buttons, help, share, messages), all inside .viewer-ui
// elements, text by textContent.

const SVG = 'http://www.w3.org/2000/svg';
const ICONS = {
  prev: 'M15 5 8 12l7 7',
  next: 'M9 5l7 7-7 7',
  reset: 'M4 12a8 8 0 1 0 2.3-5.6M4 4v5h5',
  fullscreen: 'M4 9V4h5M20 9V4h-5M4 15v5h5M20 15v5h-5',
  share: 'M10 14a4 4 0 0 0 6 .5l3-3a4 4 0 0 0-5.7-5.7l-1.7 1.7M14 10a4 4 0 0 0-6-.5l-3 3a4 4 0 0 0 5.7 5.7l1.7-1.7',
  help: 'M9.1 9a3 3 0 0 1 5.8 1c0 2-3 3-3 3M12 17h.01M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18',
};
const NOTE_MS = 3000; // "link copied" shows this long

// What orbit-controls.js does with each input, for the help panel: [heading, [keys or gesture, what it does]...].
const CONTROLS = [
  ['Mouse', [['drag', 'turn around the scene'], ['right-drag or Shift+drag', 'move sideways'], ['wheel', 'zoom']]],
  ['Touch', [['one finger', 'turn around the scene'], ['two fingers', 'pinch to zoom, drag to move sideways']]],
  ['Keys', [['← → ↑ ↓', 'turn around the scene'], ['Shift + arrows', 'move sideways'],
    ['W S, A D', 'walk forward and back, sideways (Shift: smaller steps)'], ['+ −', 'zoom'],
    ['[ ] or Page Up/Down', 'previous, next photo\'s camera'], ['R', 'back to the start'], ['F', 'full screen'],
    ['?', 'this help'], ['Esc', 'close it']]],
];

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
    this.camera = element('p', 'viewer-camera', top);
    this.camera.setAttribute('aria-live', 'polite');

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
      share: this.button(bar, 'viewer-share', 'Copy a link to this view', ICONS.share),
      help: this.button(bar, 'viewer-help-button', 'Controls (?)', ICONS.help),
    };
    const id = container.id || 'viewer';
    this.help = this.helpPanel(container, `${id}-help`);
    this.buttons.help.setAttribute('aria-controls', this.help.id);
    this.buttons.help.setAttribute('aria-expanded', 'false');
    this.sharePanel = this.linkPanel(container, `${id}-share`);
    this.buttons.share.setAttribute('aria-controls', this.sharePanel.id);
    document.addEventListener('keydown', (event) => {
      if (event.key !== 'Escape' || event.defaultPrevented) return;
      if (!this.help.hidden || !this.sharePanel.hidden) event.preventDefault();
      this.closeHelp(true);
      this.closeShare(true);
    });

    this.messageBox = element('div', 'viewer-ui viewer-ui-message', container);
    this.messageBox.hidden = true;
    this.message = element('p', 'viewer-message', this.messageBox);
    this.message.setAttribute('role', 'alert');
  }

  helpPanel(container, id) {
    const panel = element('section', 'viewer-ui viewer-panel viewer-help', container);
    panel.id = id;
    panel.hidden = true;
    panel.tabIndex = -1;
    panel.setAttribute('aria-labelledby', `${id}-title`);
    const title = element('h2', 'viewer-panel-title', panel);
    title.id = `${id}-title`;
    title.textContent = 'Controls';
    for (const [heading, rows] of CONTROLS) {
      element('h3', null, panel).textContent = heading;
      const list = element('dl', null, panel);
      for (const [input, effect] of rows) {
        element('dt', null, list).textContent = input;
        element('dd', null, list).textContent = effect;
      }
    }
    return panel;
  }

  /** Where the clipboard is refused: the link, selected, to copy by hand. */
  linkPanel(container, id) {
    const panel = element('section', 'viewer-ui viewer-panel viewer-share-panel', container);
    panel.id = id;
    panel.hidden = true;
    const label = element('label', null, panel);
    label.htmlFor = `${id}-link`;
    label.textContent = 'Copy this link to share the view:';
    this.linkField = element('input', 'viewer-link', panel);
    this.linkField.id = `${id}-link`;
    this.linkField.type = 'url';
    this.linkField.readOnly = true;
    this.note = element('p', 'viewer-ui viewer-note', container);
    this.note.setAttribute('role', 'status');
    return panel;
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

  /** Wire the buttons: `actions` maps prev, next, reset, fullscreen, share, help to functions; a missing one hides its
   * button. */
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

  /** { number, count, heldOut, name } of the photo's camera the view is on, or null once the user moves away. */
  setCamera(camera) {
    this.camera.textContent = camera ? `camera ${camera.number} of ${camera.count}${camera.heldOut ? ' (held out)' : ''}` : '';
    this.camera.title = camera ? `${camera.name}${camera.heldOut ? ': a photo kept out of training, to score the model' : ''}` : '';
  }

  toggleHelp() {
    if (this.help.hidden) {
      this.closeShare(false);
      this.help.hidden = false;
      this.buttons.help.setAttribute('aria-expanded', 'true');
      this.help.focus();
    } else {
      this.closeHelp(true);
    }
  }

  /** Close the help; `refocus`: give the focus back to its button if it was inside. */
  closeHelp(refocus) {
    if (this.help.hidden) return;
    const inside = this.help.contains(document.activeElement);
    this.help.hidden = true;
    this.buttons.help.setAttribute('aria-expanded', 'false');
    if (refocus && inside) this.buttons.help.focus();
  }

  closeShare(refocus) {
    if (this.sharePanel.hidden) return;
    const inside = this.sharePanel.contains(document.activeElement);
    this.sharePanel.hidden = true;
    if (refocus && inside) this.buttons.share.focus();
  }

  /** Copy `url` and say so; where the browser has no clipboard for the page (plain http on another host) or refuses,
   * show it to copy by hand. */
  async share(url) {
    this.closeHelp(false);
    try {
      if (!navigator.clipboard?.writeText) throw new Error('no clipboard');
      await navigator.clipboard.writeText(url);
    } catch {
      this.linkField.value = url;
      this.sharePanel.hidden = false;
      this.linkField.focus();
      this.linkField.select();
      return;
    }
    this.closeShare(false);
    this.note.textContent = 'link copied';
    clearTimeout(this.noteTimer);
    this.noteTimer = setTimeout(() => { this.note.textContent = ''; }, NOTE_MS);
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
    this.help.hidden = true;
    this.sharePanel.hidden = true;
    this.progress.hidden = true;
  }
}
