// Ringway developer portal: moving between pages without reloading.
//
// Links are real `<a href="/portal/...">` elements that onLinkClick intercepts, so each page also
// works when it is opened directly. navigate() changes the address and asks the renderer that
// app.js registers with onNavigate() to draw the new page.

import { API } from './api.js';

export const BASE = '/portal/';

let renderPage = () => {};

/** Registers the function that draws the page for the current address. */
export function onNavigate(render) {
  renderPage = render;
}

function isAppPath(pathname) {
  return (pathname === '/portal' || pathname.startsWith(BASE))
    && !pathname.startsWith(API) && !pathname.startsWith('/portal/assets/');
}

export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  renderPage({ moved: true });
}

/** Where to go after signing in: only paths inside the portal. */
export function safeNext(next) {
  if (typeof next === 'string' && next.startsWith(BASE) && !next.startsWith('//') && !next.includes('\\')) return next;
  return `${BASE}account`;
}

export function currentPath() {
  return location.pathname + location.search;
}

export function onLinkClick(event) {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const a = event.target.closest('a[href]');
  if (!a || (a.target && a.target !== '_self') || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !isAppPath(url.pathname)) return;
  // An in-page anchor: let the browser scroll and move focus.
  if (url.pathname === location.pathname && url.search === location.search && url.hash) return;
  event.preventDefault();
  navigate(url.pathname + url.search + url.hash);
}

export function redirect(path) {
  // Replace, so Back does not return to a page that only bounces the user again.
  setTimeout(() => navigate(path, { replace: true }), 0);
  return null;
}
