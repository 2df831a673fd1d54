// Ringway developer portal: the small pieces several pages share: badges, notices, breadcrumbs,
// the copy button and the confirmation dialog.

import { announce, h, link, uid, vh } from './dom.js';

export function badge(text, kind) {
  return h('span', { class: `badge badge-${kind}` }, text);
}

export function methodBadge(method) {
  const m = String(method || '').toUpperCase();
  return h('span', { class: `method method-${m.toLowerCase()}` }, m);
}

export const STATE_LABELS = { active: 'Active', pending: 'Pending approval', suspended: 'Suspended', cancelled: 'Cancelled' };
export function stateBadge(state) {
  return badge(STATE_LABELS[state] || state, `state-${state}`);
}

export function approvalBadge(approval) {
  return approval === 'manual' ? badge('Requires approval', 'manual') : badge('Instant access', 'auto');
}

export function notice(kind, ...children) {
  return h('div', { class: `notice notice-${kind}` }, ...children);
}

export function breadcrumbs(...crumbs) {
  return h('nav', { class: 'breadcrumbs', 'aria-label': 'Breadcrumb' },
    h('ol', null, crumbs.map(([text, path], i) => h('li', null,
      i === crumbs.length - 1 ? h('span', { 'aria-current': 'page' }, text) : link(path, text)))));
}

export function copyButton(getText, label, what) {
  return h('button', {
    type: 'button',
    class: 'btn btn-small',
    onclick: async (event) => {
      const ok = await copyText(getText());
      const button = event.currentTarget;
      announce(ok ? `${what} copied to the clipboard.` : `Could not copy the ${what.toLowerCase()}; select it and copy it yourself.`);
      if (ok) {
        button.classList.add('copied');
        setTimeout(() => button.classList.remove('copied'), 1500);
      }
    },
  }, 'Copy', vh(` ${label}`));
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = h('textarea', { class: 'vh', readonly: true, 'aria-hidden': 'true', tabindex: '-1' });
    area.value = text;
    document.body.append(area);
    area.select();
    let ok = false;
    try { ok = document.execCommand('copy'); } catch { ok = false; }
    area.remove();
    return ok;
  }
}

/** A modal confirmation with <dialog>; resolves true when the user confirms. */
export function confirmDialog({ title, body, confirm, danger = true }) {
  return new Promise((resolve) => {
    const titleId = uid('dialog-title');
    const dialog = h('dialog', { class: 'dialog', 'aria-labelledby': titleId },
      h('form', { method: 'dialog' },
        h('h2', { id: titleId }, title),
        h('p', null, body),
        h('div', { class: 'actions' },
          h('button', { value: 'cancel', class: 'btn', autofocus: true }, 'Cancel'),
          h('button', { value: 'confirm', class: danger ? 'btn btn-danger' : 'btn btn-primary' }, confirm))));
    const opener = document.activeElement;
    dialog.addEventListener('close', () => {
      resolve(dialog.returnValue === 'confirm');
      dialog.remove();
      if (opener && opener.isConnected) opener.focus();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

export function statusClass(status) {
  const c = String(status)[0];
  return ['2', '3', '4', '5'].includes(c) ? `status-${c}xx` : 'status-other';
}
