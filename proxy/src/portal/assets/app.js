// Ringway developer portal: the single-page front end's entry point: the routes, rendering a
// page into <main>, the header's navigation, and start-up.
//
// Every page is rendered from the portal's JSON API (api.js). The modules beside this one each
// hold one part: dom.js (building elements), widgets.js (shared pieces), router.js (moving between
// pages), catalog.js (home, products, APIs), reference.js with schema.js and try.js (an API's
// page and its try-it console), forms.js (sign up, sign in), account.js with chart.js (keys and
// usage). They are served from /portal/assets/ and import each other by relative path.

import { announce, enc, h, link } from './dom.js';
import { ApiError, developer, loadSession, signupOpen, siteTitle } from './api.js';
import { BASE, currentPath, onLinkClick, onNavigate } from './router.js';
import { pageApis, pageHome, pageNotFound, pageProduct, pageProducts } from './catalog.js';
import { pageApi } from './reference.js';
import { pageSignin, pageSignup } from './forms.js';
import { pageAccount, signOut } from './account.js';

const routes = [
  [/^\/portal\/?$/, pageHome],
  [/^\/portal\/products\/?$/, pageProducts],
  [/^\/portal\/products\/([^/]+)\/?$/, pageProduct],
  [/^\/portal\/apis\/?$/, pageApis],
  [/^\/portal\/apis\/([^/]+)\/?$/, pageApi],
  [/^\/portal\/signup\/?$/, pageSignup],
  [/^\/portal\/signin\/?$/, pageSignin],
  [/^\/portal\/account\/?$/, pageAccount],
];

let renderSeq = 0;

async function render({ moved = false } = {}) {
  const seq = ++renderSeq;
  const main = document.getElementById('main');
  const path = location.pathname;
  const ctx = {
    query: new URLSearchParams(location.search),
    title: null,
    stale: () => seq !== renderSeq,
  };
  main.setAttribute('aria-busy', 'true');
  let node;
  try {
    const route = routes.find(([re]) => re.test(path));
    if (!route) {
      node = pageNotFound(ctx);
    } else {
      const params = route[0].exec(path).slice(1).map(decodeURIComponent);
      node = await route[1](ctx, ...params);
    }
  } catch (err) {
    const missing = (err instanceof ApiError && err.status === 404) || err instanceof URIError;
    node = missing ? pageNotFound(ctx) : pageError(ctx, err);
  }
  if (ctx.stale() || node === null) return; // a newer navigation (or a redirect) took over
  main.replaceChildren(node);
  main.removeAttribute('aria-busy');
  renderNav();
  const title = await siteTitle();
  document.title = ctx.title ? `${ctx.title} · ${title}` : title;
  document.querySelectorAll('[data-brand]').forEach((el) => { el.textContent = title; });
  if (!moved) {
    if (location.hash) scrollToHash();
    return;
  }
  if (location.hash && scrollToHash()) return;
  window.scrollTo(0, 0);
  const heading = main.querySelector('h1');
  if (heading) {
    heading.setAttribute('tabindex', '-1');
    heading.focus({ preventScroll: true });
  }
  announce(ctx.title || title);
}

function scrollToHash() {
  let target = null;
  try { target = document.getElementById(decodeURIComponent(location.hash.slice(1))); } catch { /* bad escape */ }
  if (!target) return false;
  target.scrollIntoView();
  if (target.tabIndex < 0) target.setAttribute('tabindex', '-1');
  target.focus({ preventScroll: true });
  return true;
}

function renderNav() {
  const nav = document.getElementById('nav');
  const here = location.pathname.replace(/\/$/, '');
  const item = (path, text) => {
    const a = link(path, text);
    const target = path.replace(/\/$/, '');
    if (here === target || (target !== '/portal' && here.startsWith(`${target}/`))) a.setAttribute('aria-current', 'page');
    return h('li', null, a);
  };
  const items = [item(`${BASE}apis`, 'APIs'), item(`${BASE}products`, 'Products')];
  if (developer) {
    items.push(item(`${BASE}account`, 'Account'));
    items.push(h('li', null, h('button', { type: 'button', class: 'btn btn-quiet', 'data-test': 'signout', onclick: signOut }, 'Sign out')));
  } else {
    const next = location.pathname.startsWith(`${BASE}sign`) ? '' : `?next=${enc(currentPath())}`;
    items.push(item(`${BASE}signin${next}`, 'Sign in'));
    if (signupOpen) {
      const signup = link(`${BASE}signup`, 'Sign up');
      signup.className = 'btn btn-primary btn-small';
      items.push(h('li', null, signup));
    }
  }
  nav.replaceChildren(...items);
}

function pageError(ctx, err) {
  ctx.title = 'Something went wrong';
  return h('section', { class: 'page-message' },
    h('h1', null, 'Something went wrong'),
    h('p', null, err && err.message ? err.message : String(err)),
    h('p', null, h('button', { type: 'button', class: 'btn btn-primary', onclick: () => render() }, 'Try again')));
}

async function start() {
  document.addEventListener('click', onLinkClick);
  window.addEventListener('popstate', () => render({ moved: true }));
  if (location.pathname === '/portal') history.replaceState(null, '', BASE + location.search + location.hash);
  try {
    await loadSession();
  } catch {
    // Render anyway: public pages work without a session, and POSTs fetch it again.
  }
  renderNav();
  await render();
}

onNavigate(render);
start();
