// Ringway developer portal: building elements, and the formatting the pages share.
//
// Every node on every page is made here with h() (HTML) or s() (SVG): attributes and text are
// set through the DOM, never parsed from strings, so nothing from the catalog can inject markup,
// and no inline styles are set, so the page runs under the server's strict Content-Security-Policy.

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'value' || name === 'checked' || name === 'selected' || name === 'open') {
      el[name] = value;
      if (name !== 'value') el.setAttribute(name, '');
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** h('a', {href}, 'text', child...): an HTML element. */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** s('rect', {x, y}): an SVG element. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function link(path, ...children) {
  return h('a', { href: path }, ...children);
}

export function vh(text) {
  return h('span', { class: 'vh' }, text);
}

/** Plain text with blank lines as paragraph breaks (descriptions are not rendered as Markdown). */
export function paragraphs(text, cls = 'prose') {
  if (!text) return null;
  const parts = String(text).split(/\n\s*\n/).map((p) => p.trim()).filter(Boolean);
  return h('div', { class: cls }, parts.map((p) => h('p', null, p)));
}

let idCounter = 0;
export function uid(prefix) {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

export function announce(text) {
  const el = document.getElementById('announcer');
  el.textContent = '';
  // A fresh text node after a tick makes screen readers read repeated messages again.
  setTimeout(() => { el.textContent = text; }, 50);
}

function formatDate(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso || '';
  return d.toLocaleDateString(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
}

export function formatDay(day, opts = { month: 'short', day: 'numeric' }) {
  const d = new Date(`${day}T00:00:00Z`);
  if (Number.isNaN(d.getTime())) return day;
  return d.toLocaleDateString(undefined, { ...opts, timeZone: 'UTC' });
}

export function timeEl(iso) {
  return h('time', { datetime: iso }, formatDate(iso));
}

export function pretty(value) {
  return JSON.stringify(value, null, 2);
}

export function enc(segment) {
  return encodeURIComponent(segment);
}

export function joinNodes(nodes, sep = ', ') {
  return nodes.flatMap((n, i) => (i ? [sep, n] : [n]));
}
