// Ringway developer portal: the single-page front end.
//
// Every page is rendered here from the portal's JSON API (/portal/api/...). Links are real
// `<a href="/portal/...">` elements that the router intercepts, so each page also works when it
// is opened directly. The invariant that matters: every POST carries the CSRF token from the
// latest session answer (`X-CSRF-Token`), kept only in memory. The page never builds HTML from
// strings, so nothing from the catalog can inject markup, and it sets no inline styles, so it
// runs under the server's strict Content-Security-Policy.

const BASE = '/portal/';
const API = '/portal/api/';
const DEFAULT_TITLE = 'Ringway Developer Portal';
const MASK = '••••••••';
const METHODS_WITHOUT_BODY = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS']);

// ---------------------------------------------------------------------------------------------
// DOM building

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
function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** s('rect', {x, y}): an SVG element. */
function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function link(path, ...children) {
  return h('a', { href: path }, ...children);
}

function vh(text) {
  return h('span', { class: 'vh' }, text);
}

/** Plain text with blank lines as paragraph breaks (descriptions are not rendered as Markdown). */
function paragraphs(text, cls = 'prose') {
  if (!text) return null;
  const parts = String(text).split(/\n\s*\n/).map((p) => p.trim()).filter(Boolean);
  return h('div', { class: cls }, parts.map((p) => h('p', null, p)));
}

let idCounter = 0;
function uid(prefix) {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

function announce(text) {
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

function formatDay(day, opts = { month: 'short', day: 'numeric' }) {
  const d = new Date(`${day}T00:00:00Z`);
  if (Number.isNaN(d.getTime())) return day;
  return d.toLocaleDateString(undefined, { ...opts, timeZone: 'UTC' });
}

function timeEl(iso) {
  return h('time', { datetime: iso }, formatDate(iso));
}

function pretty(value) {
  return JSON.stringify(value, null, 2);
}

function enc(segment) {
  return encodeURIComponent(segment);
}

// ---------------------------------------------------------------------------------------------
// Portal API client

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `The portal answered ${status}.`);
    this.status = status;
    this.code = (body && body.error) || 'http';
    this.field = (body && body.field) || null;
    this.retryAfter = body && body.retry_after;
  }
}

let csrf = null;
let developer = null;
let catalogPromise = null;

async function call(method, path, body, retried = false) {
  const headers = { accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin' };
  if (method !== 'GET') {
    if (!csrf) await loadSession();
    headers['content-type'] = 'application/json';
    headers['x-csrf-token'] = csrf;
    init.body = JSON.stringify(body || {});
  }
  let response;
  try {
    response = await fetch(API + path, init);
  } catch (err) {
    throw new ApiError(0, { error: 'network', message: 'Could not reach the portal. Check your connection and try again.' });
  }
  let data = null;
  const text = await response.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!response.ok) {
    // The token rotates on sign-in and sign-out (possibly in another tab): fetch it once more.
    if (response.status === 403 && data && data.error === 'csrf' && !retried && method !== 'GET') {
      await loadSession();
      return call(method, path, body, true);
    }
    throw new ApiError(response.status, data);
  }
  if (data && typeof data.csrf === 'string') csrf = data.csrf;
  if (data && 'developer' in data) developer = data.developer;
  return data;
}

const get = (path) => call('GET', path);
const post = (path, body) => call('POST', path, body);

async function loadSession() {
  const data = await get('session');
  csrf = data.csrf;
  developer = data.developer || null;
  return data;
}

function catalog() {
  if (!catalogPromise) {
    catalogPromise = get('catalog').catch((err) => {
      catalogPromise = null;
      throw err;
    });
  }
  return catalogPromise;
}

async function siteTitle() {
  try {
    return (await catalog()).title || DEFAULT_TITLE;
  } catch {
    return DEFAULT_TITLE;
  }
}

// ---------------------------------------------------------------------------------------------
// Routing

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

function isAppPath(pathname) {
  return (pathname === '/portal' || pathname.startsWith(BASE))
    && !pathname.startsWith(API) && !pathname.startsWith('/portal/assets/');
}

function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  render({ moved: true });
}

/** Where to go after signing in: only paths inside the portal. */
function safeNext(next) {
  if (typeof next === 'string' && next.startsWith(BASE) && !next.startsWith('//') && !next.includes('\\')) return next;
  return `${BASE}account`;
}

function currentPath() {
  return location.pathname + location.search;
}

function onLinkClick(event) {
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

// ---------------------------------------------------------------------------------------------
// Header

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
    const signup = link(`${BASE}signup`, 'Sign up');
    signup.className = 'btn btn-primary btn-small';
    items.push(h('li', null, signup));
  }
  nav.replaceChildren(...items);
}

async function signOut() {
  try {
    await post('signout', {});
    developer = null;
    navigate(BASE);
    announce('Signed out.');
  } catch (err) {
    announce(`Could not sign out: ${err.message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Shared bits

function badge(text, kind) {
  return h('span', { class: `badge badge-${kind}` }, text);
}

function methodBadge(method) {
  const m = String(method || '').toUpperCase();
  return h('span', { class: `method method-${m.toLowerCase()}` }, m);
}

const STATE_LABELS = { active: 'Active', pending: 'Pending approval', suspended: 'Suspended', cancelled: 'Cancelled' };
function stateBadge(state) {
  return badge(STATE_LABELS[state] || state, `state-${state}`);
}

function approvalBadge(approval) {
  return approval === 'manual' ? badge('Requires approval', 'manual') : badge('Instant access', 'auto');
}

function notice(kind, ...children) {
  return h('div', { class: `notice notice-${kind}` }, ...children);
}

function breadcrumbs(...crumbs) {
  return h('nav', { class: 'breadcrumbs', 'aria-label': 'Breadcrumb' },
    h('ol', null, crumbs.map(([text, path], i) => h('li', null,
      i === crumbs.length - 1 ? h('span', { 'aria-current': 'page' }, text) : link(path, text)))));
}

function copyButton(getText, label, what) {
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
function confirmDialog({ title, body, confirm, danger = true }) {
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

function pageError(ctx, err) {
  ctx.title = 'Something went wrong';
  return h('section', { class: 'page-message' },
    h('h1', null, 'Something went wrong'),
    h('p', null, err && err.message ? err.message : String(err)),
    h('p', null, h('button', { type: 'button', class: 'btn btn-primary', onclick: () => render() }, 'Try again')));
}

function pageNotFound(ctx) {
  ctx.title = 'Page not found';
  return h('section', { class: 'page-message' },
    h('p', { class: 'eyebrow' }, '404'),
    h('h1', null, 'Page not found'),
    h('p', null, 'There is nothing at this address. It may have moved, or the link may be mistyped.'),
    h('p', { class: 'actions' }, link(BASE, 'Go to the portal home'), ' ', link(`${BASE}apis`, 'Browse the APIs')));
}

// ---------------------------------------------------------------------------------------------
// Home, products, APIs

function productCard(product) {
  return h('li', { class: 'card' },
    h('h3', null, link(`${BASE}products/${enc(product.name)}`, product.display_name || product.name)),
    h('p', { class: 'card-meta' }, approvalBadge(product.approval), ' ',
      `${product.apis.length} ${product.apis.length === 1 ? 'API' : 'APIs'}`),
    h('p', null, product.description));
}

function apiCard(api) {
  return h('li', { class: 'card' },
    h('h3', null, link(`${BASE}apis/${enc(api.name)}`, api.display_name || api.name),
      api.version ? [' ', badge(api.version, 'version')] : null),
    h('p', { class: 'card-meta' }, h('code', null, String(api.path || '').startsWith('/') ? api.path : `/${api.path}`)),
    h('p', null, api.description));
}

async function pageHome(ctx) {
  const cat = await catalog();
  const cta = developer
    ? h('p', { class: 'actions' }, h('a', { href: `${BASE}account`, class: 'btn btn-primary' }, 'Go to your account'),
      h('a', { href: `${BASE}apis`, class: 'btn' }, 'Browse the APIs'))
    : h('p', { class: 'actions' }, h('a', { href: `${BASE}signup`, class: 'btn btn-primary' }, 'Create an account'),
      h('a', { href: `${BASE}signin`, class: 'btn' }, 'Sign in'));
  return h('div', null,
    h('section', { class: 'hero' },
      h('h1', null, cat.title || DEFAULT_TITLE),
      h('p', { class: 'lead' }, 'Browse the APIs, try every operation from your browser, and get a key in a minute.'),
      cta,
      h('ol', { class: 'steps' },
        h('li', null, h('strong', null, 'Sign up'), ' with your email address.'),
        h('li', null, h('strong', null, 'Subscribe'), ' to a product to get two keys.'),
        h('li', null, h('strong', null, 'Call the API'), ' with your key in a header.'))),
    h('section', { 'aria-labelledby': 'home-products' },
      h('h2', { id: 'home-products' }, 'Products'),
      cat.products.length ? h('ul', { class: 'cards' }, cat.products.map(productCard)) : h('p', null, 'No products yet.')),
    h('section', { 'aria-labelledby': 'home-apis' },
      h('h2', { id: 'home-apis' }, 'APIs'),
      cat.apis.length ? h('ul', { class: 'cards' }, cat.apis.map(apiCard)) : h('p', null, 'No APIs yet.')));
}

async function pageProducts(ctx) {
  const cat = await catalog();
  ctx.title = 'Products';
  return h('div', null,
    h('h1', null, 'Products'),
    h('p', { class: 'lead' }, 'A product bundles APIs with a usage plan. Subscribe to one to get your keys.'),
    h('ul', { class: 'cards' }, cat.products.map(productCard)));
}

async function pageApis(ctx) {
  const cat = await catalog();
  ctx.title = 'APIs';
  return h('div', null,
    h('h1', null, 'APIs'),
    h('p', { class: 'lead' }, 'Every API you can call through the gateway. Open one to read its operations and try them.'),
    h('ul', { class: 'cards' }, cat.apis.map(apiCard)));
}

async function mySubscriptions() {
  if (!developer) return [];
  try {
    return (await get('subscriptions')).subscriptions;
  } catch (err) {
    if (err.status === 401) {
      developer = null;
      return [];
    }
    throw err;
  }
}

async function pageProduct(ctx, name) {
  const [cat, subs] = await Promise.all([catalog(), mySubscriptions()]);
  const product = cat.products.find((p) => p.name === name);
  if (!product) return pageNotFound(ctx);
  ctx.title = product.display_name || product.name;
  const apis = product.apis.map((n) => cat.apis.find((a) => a.name === n) || { name: n, display_name: n, path: n });
  const existing = subs.find((sub) => sub.product === product.name && sub.state !== 'cancelled');
  const result = h('div', { class: 'subscribe-result', 'aria-live': 'polite' });

  let action;
  if (!developer) {
    action = h('p', null, h('a', { class: 'btn btn-primary', href: `${BASE}signin?next=${enc(currentPath())}` }, 'Sign in to subscribe'),
      ' ', 'or ', link(`${BASE}signup`, 'create an account'), '.');
  } else if (existing) {
    action = null;
    result.append(subscriptionOutcome(existing, true));
  } else {
    const button = h('button', {
      type: 'button', class: 'btn btn-primary', 'data-test': `subscribe-${product.name}`,
    }, `Subscribe to ${product.display_name || product.name}`);
    button.addEventListener('click', async () => {
      button.disabled = true;
      button.setAttribute('aria-busy', 'true');
      result.replaceChildren();
      try {
        const { subscription } = await post('subscriptions', { product: product.name });
        button.remove();
        result.append(subscriptionOutcome(subscription, false));
        const next = result.querySelector('a');
        if (next) next.focus();
      } catch (err) {
        button.disabled = false;
        button.removeAttribute('aria-busy');
        if (err.status === 409) {
          result.append(notice('info', 'You already have a subscription to this product. ', link(`${BASE}account`, 'See it in your account'), '.'));
        } else if (err.status === 401) {
          developer = null;
          navigate(`${BASE}signin?next=${enc(currentPath())}`);
        } else {
          result.append(notice('error', `Could not subscribe: ${err.message}`));
        }
      }
    });
    action = h('p', null, button);
  }

  return h('article', null,
    breadcrumbs(['Products', `${BASE}products`], [ctx.title, null]),
    h('h1', null, ctx.title),
    h('p', { class: 'card-meta' }, approvalBadge(product.approval)),
    paragraphs(product.description, 'prose lead'),
    h('section', { class: 'panel', 'aria-labelledby': 'subscribe-heading' },
      h('h2', { id: 'subscribe-heading' }, 'Subscribe'),
      h('p', null, product.approval === 'manual'
        ? 'An administrator reviews each subscription. Your keys appear in your account once it is approved.'
        : 'Your keys are ready as soon as you subscribe.'),
      action, result),
    h('section', { 'aria-labelledby': 'product-apis' },
      h('h2', { id: 'product-apis' }, 'Included APIs'),
      apis.length ? h('ul', { class: 'cards' }, apis.map(apiCard)) : h('p', null, 'This product includes no APIs yet.')));
}

function subscriptionOutcome(sub, existed) {
  const keys = link(`${BASE}account`, 'See your keys');
  if (sub.state === 'active') {
    return notice('success', h('strong', null, existed ? 'You are subscribed.' : 'Subscription active.'), ' ', keys, '.');
  }
  if (sub.state === 'pending') {
    return notice('info', h('strong', null, existed ? 'Your subscription is waiting for approval.' : 'Requested: waiting for approval.'),
      ' You will find your keys in your ', link(`${BASE}account`, 'account'), ' once an administrator approves it.');
  }
  return notice('warning', `Your subscription is ${STATE_LABELS[sub.state] ? STATE_LABELS[sub.state].toLowerCase() : sub.state}. `,
    link(`${BASE}account`, 'See your account'), '.');
}

// ---------------------------------------------------------------------------------------------
// API reference

async function pageApi(ctx, name) {
  const rev = ctx.query.get('rev');
  const revQuery = rev && /^\d+$/.test(rev) ? `?rev=${rev}` : '';
  const [api, cat, subs] = await Promise.all([get(`apis/${enc(name)}${revQuery}`), catalog(), mySubscriptions()]);
  ctx.title = api.display_name || api.name;
  const current = (api.revisions || []).find((r) => r.current);
  const pinnedRev = revQuery && (!current || current.rev !== api.revision) ? api.revision : null;
  const usable = subs.filter((sub) => sub.state === 'active' && (sub.apis || []).includes(api.name));
  const baseUrl = `${api.gateway_url || ''}${api.request.prefix}`;
  // Fresh nodes on each call: the facts panel and every try-it panel show their own links.
  const productLinks = () => (api.products || []).map((p) => {
    const product = cat.products.find((x) => x.name === p);
    return link(`${BASE}products/${enc(p)}`, product ? product.display_name : p);
  });
  const extraHeaders = Object.entries(api.request.headers || {});
  const extraQuery = Object.entries(api.request.query || {});
  const tryEnv = { api, subs: usable, rev: pinnedRev, productLinks };
  const version = (api.versions || []).find((v) => v.api === api.name);

  return h('article', { class: 'api-page' },
    breadcrumbs(['APIs', `${BASE}apis`], [ctx.title, null]),
    h('header', { class: 'api-head' },
      h('h1', null, ctx.title, version ? [' ', badge(version.version, 'version')] : null),
      paragraphs(api.description, 'prose lead')),
    h('section', { class: 'panel api-facts', 'aria-label': 'How to call this API' },
      h('dl', { class: 'facts' },
        h('div', null, h('dt', null, 'Base URL'),
          h('dd', null, h('code', { class: 'base-url' }, baseUrl), ' ', copyButton(() => baseUrl, 'base URL', 'Base URL'))),
        h('div', null, h('dt', null, 'Key header'), h('dd', null, h('code', null, api.key_header), ': your subscription key')),
        extraHeaders.length ? h('div', null, h('dt', null, 'Also send'),
          h('dd', null, extraHeaders.map(([k, v]) => h('code', { class: 'pill' }, `${k}: ${v}`)))) : null,
        extraQuery.length ? h('div', null, h('dt', null, 'Query'),
          h('dd', null, extraQuery.map(([k, v]) => h('code', { class: 'pill' }, `${k}=${v}`)))) : null,
        h('div', null, h('dt', null, 'Products'), h('dd', null, (api.products || []).length ? joinNodes(productLinks()) : 'none'))),
      h('div', { class: 'selectors' }, versionSelect(api), revisionSelect(api))),
    operationIndex(api.operations),
    h('section', { 'aria-labelledby': 'ops-heading' },
      h('h2', { id: 'ops-heading', class: 'vh' }, 'Operations'),
      api.operations.length
        ? api.operations.map((op) => operation(op, tryEnv))
        : h('p', null, 'This API has no operations.')));
}

function joinNodes(nodes, sep = ', ') {
  return nodes.flatMap((n, i) => (i ? [sep, n] : [n]));
}

function versionSelect(api) {
  if (!api.versions || api.versions.length === 0) return null;
  const id = uid('version');
  const select = h('select', { id, 'data-test': 'version-select' },
    api.versions.map((v) => h('option', { value: v.api, selected: v.api === api.name },
      api.version_set && api.version_set.default === v.version ? `${v.version} (default)` : v.version)));
  select.addEventListener('change', () => navigate(`${BASE}apis/${enc(select.value)}`));
  return h('div', { class: 'field field-inline' }, h('label', { for: id }, 'Version'), select);
}

function revisionSelect(api) {
  const revisions = api.revisions || [];
  if (revisions.length === 0) return null;
  const id = uid('revision');
  const logId = uid('revision-log');
  const label = (r) => `rev ${r.rev}${r.current ? ' (current)' : ''}${r.online ? '' : ' · offline'}`;
  const log = h('p', { id: logId, class: 'hint' });
  const select = h('select', { id, 'data-test': 'revision-select', 'aria-describedby': logId },
    revisions.map((r) => h('option', { value: String(r.rev), selected: r.rev === api.revision }, label(r))));
  const showLog = () => {
    const r = revisions.find((x) => String(x.rev) === select.value);
    log.textContent = r && r.change_log ? r.change_log : 'No change log.';
  };
  showLog();
  select.addEventListener('change', () => {
    const r = revisions.find((x) => String(x.rev) === select.value);
    navigate(`${BASE}apis/${enc(api.name)}${r && r.current ? '' : `?rev=${enc(select.value)}`}`);
  });
  return h('div', { class: 'field field-inline' }, h('label', { for: id }, 'Revision'), select, log);
}

function operationIndex(ops) {
  if (ops.length < 2) return null;
  return h('nav', { class: 'op-index', 'aria-label': 'Operations' },
    h('ul', null, ops.map((op) => h('li', null,
      h('a', { href: `#op-${op.id}` }, methodBadge(op.method), ' ', h('span', null, op.summary || op.path))))));
}

function operation(op, env) {
  const headingId = `op-${op.id}-title`;
  return h('section', { class: `op${op.deprecated ? ' op-deprecated' : ''}`, id: `op-${op.id}`, 'aria-labelledby': headingId },
    h('h3', { class: 'op-head', id: headingId },
      methodBadge(op.method), ' ', h('code', { class: 'op-path' }, op.path),
      op.summary ? h('span', { class: 'op-summary' }, op.summary) : null,
      op.deprecated ? [' ', badge('Deprecated', 'deprecated')] : null),
    paragraphs(op.description),
    op.parameters.length ? parametersTable(op.parameters) : null,
    op.request_body ? requestBody(op.request_body) : null,
    op.responses.length ? responsesList(op.responses) : null,
    tryPanel(op, env));
}

function paramStyle(p) {
  const style = p.style || (p.in === 'query' || p.in === 'cookie' ? 'form' : 'simple');
  const explode = p.explode === undefined || p.explode === null ? style === 'form' : p.explode;
  return { style, explode };
}

function exampleOf(p) {
  if (p.example !== undefined && p.example !== null) return p.example;
  const sch = p.schema || {};
  if (sch.example !== undefined) return sch.example;
  if (sch.default !== undefined) return sch.default;
  return undefined;
}

function exampleText(value) {
  if (value === undefined || value === null) return '';
  if (typeof value === 'string') return value;
  return JSON.stringify(value);
}

function parametersTable(params) {
  return h('div', { class: 'op-block' },
    h('h4', null, 'Parameters'),
    h('div', { class: 'table-scroll', tabindex: '0', role: 'region', 'aria-label': 'Parameters' },
      h('table', { class: 'params' },
        h('thead', null, h('tr', null, ['Name', 'In', 'Required', 'Type', 'Style', 'Description', 'Example'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', null, params.map((p) => {
          const { style, explode } = paramStyle(p);
          const ex = exampleText(exampleOf(p));
          return h('tr', null,
            h('th', { scope: 'row' }, h('code', null, p.name)),
            h('td', null, p.in),
            h('td', null, p.required ? badge('required', 'required') : 'optional'),
            h('td', null, h('code', { class: 'type' }, typeLabel(p.schema))),
            h('td', null, `${style}${explode ? ', explode' : ''}`),
            h('td', null, p.description || '', enumNote(p.schema)),
            h('td', null, ex ? h('code', null, ex) : ''));
        })))));
}

function enumNote(schema) {
  if (!schema || !Array.isArray(schema.enum)) return null;
  return h('span', { class: 'enum' }, ' One of: ', joinNodes(schema.enum.map((v) => h('code', null, exampleText(v)))), '.');
}

function refName(ref) {
  return String(ref || '').split('/').pop();
}

function typeLabel(schema) {
  if (!schema || typeof schema !== 'object') return 'any';
  if (schema['x-circular'] || (schema.$ref && !schema.type)) return refName(schema.$ref) || 'object';
  let type = schema.type;
  if (Array.isArray(type)) type = type.join(' | ');
  if (!type) {
    if (schema.oneOf) return 'one of';
    if (schema.anyOf) return 'any of';
    if (schema.allOf) return 'object';
    if (schema.properties) type = 'object';
    else if (schema.enum) type = typeof schema.enum[0] === 'number' ? 'number' : 'string';
    else return 'any';
  }
  if (type === 'array') return `array of ${typeLabel(schema.items)}`;
  let label = schema.format ? `${type} (${schema.format})` : type;
  if (schema.nullable) label += ' | null';
  return label;
}

/** allOf parts merged into one object, which is how readers think of them. */
function mergeAllOf(schema) {
  if (!Array.isArray(schema.allOf)) return schema;
  const merged = { ...schema, properties: { ...(schema.properties || {}) }, required: [...(schema.required || [])] };
  delete merged.allOf;
  for (const part of schema.allOf) {
    const p = mergeAllOf(part || {});
    Object.assign(merged.properties, p.properties || {});
    merged.required.push(...(p.required || []));
    if (!merged.type && p.type) merged.type = p.type;
    if (!merged.description && p.description) merged.description = p.description;
  }
  return merged;
}

function schemaChildren(schema) {
  const sch = mergeAllOf(schema || {});
  if (sch['x-circular']) return [];
  if (sch.type === 'array' || (sch.items && !sch.type)) {
    const items = mergeAllOf(sch.items || {});
    if (items.type === 'array') return [{ name: 'items', schema: items }];
    return schemaChildren(items);
  }
  const required = new Set(sch.required || []);
  const out = Object.entries(sch.properties || {}).map(([name, child]) => ({ name, schema: child, required: required.has(name) }));
  if (sch.additionalProperties && typeof sch.additionalProperties === 'object') {
    out.push({ name: '{any key}', schema: sch.additionalProperties });
  }
  for (const key of ['oneOf', 'anyOf']) {
    if (Array.isArray(sch[key])) {
      sch[key].forEach((opt, i) => out.push({ name: (opt && opt.title) || `option ${i + 1}`, schema: opt, option: true }));
    }
  }
  return out;
}

function schemaLine(node) {
  const sch = mergeAllOf(node.schema || {});
  const bits = [];
  if (node.name) bits.push(h('code', { class: node.option ? 'schema-option' : 'schema-name' }, node.name));
  bits.push(h('span', { class: 'type' }, typeLabel(sch)));
  if (node.required) bits.push(badge('required', 'required'));
  if (sch.readOnly) bits.push(badge('read-only', 'muted'));
  if (sch.writeOnly) bits.push(badge('write-only', 'muted'));
  if (sch.deprecated) bits.push(badge('deprecated', 'deprecated'));
  if (sch['x-circular']) bits.push(h('span', { class: 'hint' }, `↻ recursive: see ${refName(sch.$ref)} above`));
  const notes = [];
  if (sch.description) notes.push(sch.description);
  if (Array.isArray(sch.enum)) notes.push(enumNote(sch));
  const limits = [];
  for (const [k, label] of [['minimum', 'min'], ['maximum', 'max'], ['minLength', 'min length'], ['maxLength', 'max length'], ['minItems', 'min items'], ['maxItems', 'max items'], ['pattern', 'pattern']]) {
    if (sch[k] !== undefined) limits.push(`${label} ${sch[k]}`);
  }
  if (sch.default !== undefined) limits.push(`default ${exampleText(sch.default)}`);
  if (limits.length) notes.push(h('span', { class: 'hint' }, ` (${limits.join(', ')})`));
  return h('span', { class: 'schema-line' }, bits, notes.length ? h('span', { class: 'schema-desc' }, notes) : null);
}

function schemaNode(node, depth) {
  const children = depth < 16 ? schemaChildren(node.schema) : [];
  if (children.length === 0) return h('li', null, h('div', { class: 'schema-leaf' }, schemaLine(node)));
  return h('li', null, h('details', { open: depth < 2 },
    h('summary', null, schemaLine(node)),
    h('ul', { class: 'schema-tree' }, children.map((c) => schemaNode(c, depth + 1)))));
}

function schemaTree(schema) {
  if (!schema || Object.keys(schema).length === 0) return null;
  return h('div', { class: 'schema' },
    h('p', { class: 'label' }, 'Schema'),
    h('ul', { class: 'schema-tree schema-root' }, schemaNode({ name: null, schema }, 0)));
}

function exampleBlock(media, value, label = 'Example') {
  if (value === undefined || value === null) return null;
  const text = typeof value === 'string' && !/json/.test(media) ? value : pretty(value);
  return h('div', { class: 'example' }, h('p', { class: 'label' }, label), h('pre', null, h('code', null, text)));
}

function mediaBlocks(content) {
  return Object.entries(content || {}).map(([media, m]) => h('div', { class: 'media' },
    h('p', { class: 'media-type' }, h('code', null, media)),
    schemaTree(m.schema),
    exampleBlock(media, m.example)));
}

function requestBody(body) {
  return h('div', { class: 'op-block' },
    h('h4', null, 'Request body ', body.required ? badge('required', 'required') : badge('optional', 'muted')),
    paragraphs(body.description),
    mediaBlocks(body.content));
}

function statusClass(status) {
  const c = String(status)[0];
  return ['2', '3', '4', '5'].includes(c) ? `status-${c}xx` : 'status-other';
}

function responsesList(responses) {
  return h('div', { class: 'op-block' },
    h('h4', null, 'Responses'),
    h('ul', { class: 'responses' }, responses.map((r) => h('li', { class: 'response' },
      h('p', { class: 'response-head' }, h('span', { class: `status ${statusClass(r.status)}` }, r.status), ' ', r.description || ''),
      mediaBlocks(r.content)))));
}

// ---------------------------------------------------------------------------------------------
// Try it

const REASONS = {
  200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content', 301: 'Moved Permanently', 302: 'Found',
  304: 'Not Modified', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found',
  405: 'Method Not Allowed', 409: 'Conflict', 413: 'Payload Too Large', 415: 'Unsupported Media Type',
  422: 'Unprocessable Content', 429: 'Too Many Requests', 500: 'Internal Server Error', 502: 'Bad Gateway',
  503: 'Service Unavailable', 504: 'Gateway Timeout',
};

function tryPanel(op, env) {
  const { api } = env;
  const panel = h('details', { class: 'try', 'data-test': `try-${op.id}` }, h('summary', null, 'Try it', vh(`: ${op.method} ${op.path}`)));
  if (!developer) {
    panel.append(h('div', { class: 'try-body' },
      h('p', null, h('a', { href: `${BASE}signin?next=${enc(currentPath())}` }, 'Sign in'), ' to try this operation with your key.')));
    return panel;
  }
  if (env.subs.length === 0) {
    const links = env.productLinks();
    panel.append(h('div', { class: 'try-body' },
      h('p', null, 'You need an active subscription that includes this API. ',
        links.length ? ['Subscribe to ', joinNodes(links, ' or '), '.'] : 'No product offers it yet.')));
    return panel;
  }

  const base = `try-${op.id}`.replace(/[^A-Za-z0-9_-]/g, '_');
  const fields = [];
  const subId = `${base}-sub`;
  const keyId = `${base}-key`;
  const subSelect = h('select', { id: subId, name: 'subscription' },
    env.subs.map((sub) => h('option', { value: sub.id }, `${sub.product_display_name || sub.product} (${sub.id})`)));
  const keySelect = h('select', { id: keyId, name: 'key' }, h('option', { value: 'primary' }, 'Primary key'), h('option', { value: 'secondary' }, 'Secondary key'));

  const paramInputs = op.parameters.map((p, i) => {
    const id = `${base}-p${i}`;
    const errId = `${id}-error`;
    const sch = p.schema || {};
    const ex = exampleOf(p);
    let input;
    if (Array.isArray(sch.enum) || sch.type === 'boolean') {
      const values = Array.isArray(sch.enum) ? sch.enum.map(exampleText) : ['true', 'false'];
      input = h('select', { id, name: p.name },
        p.required ? null : h('option', { value: '' }, '(not sent)'),
        values.map((v) => h('option', { value: v, selected: v === exampleText(ex) }, v)));
    } else {
      input = h('input', {
        id, name: p.name, type: 'text', autocomplete: 'off', spellcheck: 'false',
        inputmode: sch.type === 'integer' || sch.type === 'number' ? 'decimal' : null,
        value: Array.isArray(ex) ? ex.map(exampleText).join(',') : exampleText(ex),
        'aria-required': p.required ? 'true' : null,
      });
    }
    const error = h('p', { class: 'field-error', id: errId, hidden: true });
    input.setAttribute('aria-describedby', errId);
    fields.push({ p, input, error });
    return h('div', { class: 'field' },
      h('label', { for: id }, h('code', null, p.name), ` (${p.in}${p.required ? ', required' : ''})`),
      sch.type === 'array' ? h('span', { class: 'hint' }, 'Separate values with commas.') : null,
      input, error);
  });

  let bodyArea = null;
  let bodyMedia = null;
  let bodyError = null;
  if (op.request_body && !METHODS_WITHOUT_BODY.has(op.method.toUpperCase())) {
    const [media, m] = Object.entries(op.request_body.content || {})[0] || ['application/json', {}];
    bodyMedia = media;
    const id = `${base}-body`;
    bodyError = h('p', { class: 'field-error', id: `${id}-error`, hidden: true });
    bodyArea = h('textarea', { id, name: 'body', rows: '8', spellcheck: 'false', class: 'code', 'aria-describedby': `${id}-error` });
    bodyArea.value = m.example === undefined || m.example === null ? '' : (typeof m.example === 'string' ? m.example : pretty(m.example));
    paramInputs.push(h('div', { class: 'field' }, h('label', { for: id }, 'Request body ', h('code', null, media)), bodyArea, bodyError));
  }

  const result = h('div', { class: 'try-result', 'aria-live': 'polite' });
  const send = h('button', { type: 'submit', class: 'btn btn-primary', 'data-test': `try-send-${op.id}` }, 'Send');
  const form = h('form', { class: 'try-form', novalidate: true, 'aria-label': `Try ${op.method} ${op.path}` },
    h('div', { class: 'try-grid' },
      h('div', { class: 'field' }, h('label', { for: subId }, 'Subscription'), subSelect),
      h('div', { class: 'field' }, h('label', { for: keyId }, 'Key'), keySelect)),
    paramInputs,
    h('p', { class: 'actions' }, send));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const built = buildTryRequest(api, op, fields, bodyArea, bodyMedia, bodyError);
    if (!built) return;
    send.disabled = true;
    send.setAttribute('aria-busy', 'true');
    result.replaceChildren(h('p', { class: 'hint' }, 'Sending…'));
    try {
      const answer = await post('try', {
        api: api.name, rev: env.rev, subscription: subSelect.value, key: keySelect.value,
        method: op.method.toUpperCase(), path: built.path, headers: built.headers, body: built.body,
      });
      result.replaceChildren(tryAnswer(op, built, api, answer));
    } catch (err) {
      result.replaceChildren(notice('error', h('strong', { 'data-test': 'try-status' }, 'Not sent'), ': ', err.message));
    } finally {
      send.disabled = false;
      send.removeAttribute('aria-busy');
    }
  });

  panel.append(h('div', { class: 'try-body' }, form, result));
  return panel;
}

/** The request the form describes, or null (with errors shown) when it is not complete. */
function buildTryRequest(api, op, fields, bodyArea, bodyMedia, bodyError) {
  let firstBad = null;
  const fail = (input, error, message) => {
    error.textContent = message;
    error.hidden = false;
    input.setAttribute('aria-invalid', 'true');
    firstBad = firstBad || input;
  };
  let path = op.path;
  const query = new URLSearchParams();
  const headers = [];
  const cookies = [];
  for (const [k, v] of Object.entries(api.request.query || {})) query.append(k, v);
  for (const [k, v] of Object.entries(api.request.headers || {})) headers.push([k, String(v)]);
  for (const { p, input, error } of fields) {
    error.hidden = true;
    input.removeAttribute('aria-invalid');
    const value = input.value.trim();
    if (value === '') {
      if (p.required) fail(input, error, `Enter a value for ${p.name}.`);
      continue;
    }
    const isArray = p.schema && p.schema.type === 'array';
    const values = isArray ? value.split(',').map((v) => v.trim()).filter(Boolean) : [value];
    const { explode } = paramStyle(p);
    if (p.in === 'path') {
      path = path.split(`{${p.name}}`).join(values.map(enc).join(','));
    } else if (p.in === 'query') {
      if (isArray && explode) values.forEach((v) => query.append(p.name, v));
      else query.append(p.name, values.join(','));
    } else if (p.in === 'header') {
      headers.push([p.name, values.join(',')]);
    } else if (p.in === 'cookie') {
      cookies.push(`${p.name}=${enc(values.join(','))}`);
    }
  }
  if (cookies.length) headers.push(['Cookie', cookies.join('; ')]);
  let body = null;
  if (bodyArea) {
    bodyError.hidden = true;
    bodyArea.removeAttribute('aria-invalid');
    body = bodyArea.value;
    if (body.trim() === '') {
      body = null;
    } else {
      headers.push(['Content-Type', bodyMedia]);
      if (/json/.test(bodyMedia)) {
        try { JSON.parse(body); } catch (err) { fail(bodyArea, bodyError, `The body is not valid JSON: ${err.message}`); }
      }
    }
  }
  if (firstBad) {
    firstBad.focus();
    return null;
  }
  const qs = query.toString();
  return { path: `${api.request.prefix}${path}${qs ? `?${qs}` : ''}`, headers, body };
}

function tryAnswer(op, built, api, answer) {
  const reason = REASONS[answer.status] || '';
  const contentType = (answer.headers.find(([k]) => k.toLowerCase() === 'content-type') || [])[1] || '';
  let bodyText = answer.body || '';
  if (/json/i.test(contentType) || /^\s*[[{]/.test(bodyText)) {
    try { bodyText = pretty(JSON.parse(bodyText)); } catch { /* show as sent */ }
  }
  const curl = [`curl -X ${op.method.toUpperCase()} '${api.gateway_url}${built.path}'`,
    `  -H '${api.key_header}: <your key>'`,
    ...built.headers.map(([k, v]) => `  -H '${k}: ${v}'`),
    ...(built.body !== null ? [`  --data '${built.body.replace(/'/g, "'\\''")}'`] : [])].join(' \\\n');
  return h('div', { class: 'answer' },
    h('p', { class: 'answer-head' },
      h('span', { class: `status ${statusClass(answer.status)}`, 'data-test': 'try-status' }, `${answer.status}${reason ? ` ${reason}` : ''}`),
      h('span', { class: 'hint' }, ` in ${Number(answer.duration_ms).toFixed(1)} ms`)),
    h('details', null, h('summary', null, `Response headers (${answer.headers.length})`),
      h('div', { class: 'table-scroll', tabindex: '0', role: 'region', 'aria-label': 'Response headers' },
        h('table', { class: 'headers' }, h('tbody', null, answer.headers.map(([k, v]) => h('tr', null, h('th', { scope: 'row' }, k), h('td', null, v))))))),
    h('p', { class: 'label' }, 'Response body', answer.truncated ? ' (truncated)' : ''),
    h('pre', { class: 'answer-body', 'data-test': 'try-body', tabindex: '0' }, h('code', null, bodyText || '(empty)')),
    h('details', null, h('summary', null, 'Same request with curl'), h('pre', null, h('code', null, curl))));
}

// ---------------------------------------------------------------------------------------------
// Sign up and sign in

const FIELD_RULES = {
  name: (v) => (v.trim() ? null : 'Enter your name.'),
  email: (v) => (v.includes('@') ? null : 'Enter an email address like name@example.com.'),
  newPassword: (v) => (v.length >= 12 ? null : 'Use at least 12 characters.'),
  password: (v) => (v ? null : 'Enter your password.'),
};

/** A sign-up or sign-in form with client checks that mirror the server's, and server errors per field. */
function authForm({ kind, fields, submit, busy, send }) {
  const summary = h('div', { class: 'error-summary', 'aria-live': 'polite', tabindex: '-1', hidden: true });
  const controls = {};
  const rows = fields.map((f) => {
    const id = `${kind}-${f.name}`;
    const errId = `${id}-error`;
    const hintId = f.hint ? `${id}-hint` : null;
    const input = h('input', {
      id, name: f.name, type: f.type, autocomplete: f.autocomplete, required: true,
      'aria-describedby': [hintId, errId].filter(Boolean).join(' '),
      spellcheck: f.type === 'email' ? 'false' : null, autocapitalize: f.type === 'email' ? 'none' : null,
    });
    const error = h('p', { class: 'field-error', id: errId, hidden: true });
    controls[f.name] = { input, error, rule: f.rule };
    return h('div', { class: 'field' }, h('label', { for: id }, f.label),
      f.hint ? h('p', { class: 'hint', id: hintId }, f.hint) : null, input, error);
  });
  const button = h('button', { type: 'submit', class: 'btn btn-primary btn-block' }, submit);
  const form = h('form', { class: 'auth-form', 'data-test': `${kind}-form`, novalidate: true, 'aria-label': submit }, summary, rows, button);

  const showErrors = (errors) => {
    let first = null;
    for (const [name, c] of Object.entries(controls)) {
      const message = errors[name];
      c.error.textContent = message || '';
      c.error.hidden = !message;
      if (message) {
        c.input.setAttribute('aria-invalid', 'true');
        first = first || c.input;
      } else {
        c.input.removeAttribute('aria-invalid');
      }
    }
    const general = errors._;
    const listed = Object.entries(errors).filter(([, m]) => m);
    summary.hidden = listed.length === 0;
    summary.replaceChildren(
      h('p', { class: 'error-title' }, listed.length === 1 ? 'There is a problem' : `There are ${listed.length} problems`),
      h('ul', null, listed.map(([name, m]) => h('li', null, name === '_' ? m : h('a', { href: `#${kind}-${name}` }, m)))));
    if (first) first.focus();
    else if (general) summary.focus();
  };

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const values = Object.fromEntries(Object.entries(controls).map(([n, c]) => [n, c.input.value]));
    const errors = {};
    for (const [name, c] of Object.entries(controls)) {
      const message = c.rule(values[name]);
      if (message) errors[name] = message;
    }
    if (Object.keys(errors).length) {
      showErrors(errors);
      return;
    }
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
    button.textContent = busy;
    let retryAfter = 0;
    try {
      await send(values);
      return;
    } catch (err) {
      if (err.code === 'too_many_attempts' || err.status === 429) {
        retryAfter = Number(err.retryAfter) || 30;
        showErrors({ _: `Too many attempts. Try again in ${retryAfter} seconds.` });
      } else if (err.field && controls[err.field]) {
        showErrors({ [err.field]: err.message });
      } else {
        showErrors({ _: err.message });
      }
    } finally {
      button.textContent = submit;
      button.removeAttribute('aria-busy');
      button.disabled = false;
    }
    if (retryAfter > 0) {
      button.disabled = true;
      setTimeout(() => { button.disabled = false; }, retryAfter * 1000);
    }
  });
  return form;
}

async function pageSignup(ctx) {
  ctx.title = 'Create an account';
  if (developer) return redirect(`${BASE}account`);
  const next = safeNext(ctx.query.get('next'));
  const form = authForm({
    kind: 'signup',
    submit: 'Create account',
    busy: 'Creating account…',
    fields: [
      { name: 'name', label: 'Name', type: 'text', autocomplete: 'name', rule: FIELD_RULES.name },
      { name: 'email', label: 'Email', type: 'email', autocomplete: 'email', rule: FIELD_RULES.email },
      { name: 'password', label: 'Password', type: 'password', autocomplete: 'new-password', hint: 'At least 12 characters.', rule: FIELD_RULES.newPassword },
    ],
    send: async (v) => {
      await post('signup', { email: v.email.trim(), name: v.name.trim(), password: v.password });
      navigate(next);
      announce('Account created. You are signed in.');
    },
  });
  return h('section', { class: 'auth' },
    h('h1', null, 'Create an account'),
    h('p', { class: 'lead' }, 'Get keys for the APIs and try them from your browser.'),
    form,
    h('p', null, 'Already have an account? ', link(`${BASE}signin${ctx.query.get('next') ? `?next=${enc(next)}` : ''}`, 'Sign in'), '.'));
}

async function pageSignin(ctx) {
  ctx.title = 'Sign in';
  if (developer) return redirect(safeNext(ctx.query.get('next')));
  const next = safeNext(ctx.query.get('next'));
  const form = authForm({
    kind: 'signin',
    submit: 'Sign in',
    busy: 'Signing in…',
    fields: [
      { name: 'email', label: 'Email', type: 'email', autocomplete: 'email', rule: FIELD_RULES.email },
      { name: 'password', label: 'Password', type: 'password', autocomplete: 'current-password', rule: FIELD_RULES.password },
    ],
    send: async (v) => {
      await post('signin', { email: v.email.trim(), password: v.password });
      navigate(next);
      announce('Signed in.');
    },
  });
  return h('section', { class: 'auth' },
    h('h1', null, 'Sign in'),
    form,
    h('p', null, 'New here? ', link(`${BASE}signup${ctx.query.get('next') ? `?next=${enc(next)}` : ''}`, 'Create an account'), '.'));
}

function redirect(path) {
  // Replace, so Back does not return to a page that only bounces the user again.
  setTimeout(() => navigate(path, { replace: true }), 0);
  return null;
}

// ---------------------------------------------------------------------------------------------
// Account

async function pageAccount(ctx) {
  ctx.title = 'Your account';
  if (!developer) return redirect(`${BASE}signin?next=${enc(`${BASE}account`)}`);
  let subs;
  try {
    subs = await mySubscriptions();
  } catch (err) {
    if (err.status === 401) return redirect(`${BASE}signin?next=${enc(`${BASE}account`)}`);
    throw err;
  }
  if (!developer) return redirect(`${BASE}signin?next=${enc(`${BASE}account`)}`);
  const usage = usageSection();
  const me = developer;
  return h('div', { class: 'account' },
    h('h1', null, 'Your account'),
    h('p', { class: 'lead' }, 'Signed in as ', h('strong', null, me.name), ` (${me.email})`,
      me.created ? [', member since ', timeEl(me.created)] : null, '.'),
    h('section', { 'aria-labelledby': 'subs-heading' },
      h('h2', { id: 'subs-heading' }, 'Subscriptions'),
      subs.length
        ? h('ul', { class: 'subs' }, subs.map(subscriptionRow))
        : notice('info', 'You have no subscriptions yet. ', link(`${BASE}products`, 'Choose a product'), ' to get your keys.')),
    usage.node,
    h('section', { 'aria-labelledby': 'session-heading', class: 'panel' },
      h('h2', { id: 'session-heading' }, 'Session'),
      h('p', null, 'Signing out ends this browser session. Your keys keep working.'),
      h('button', { type: 'button', class: 'btn', 'data-test': 'account-signout', onclick: signOut }, 'Sign out')));
}

function subscriptionRow(sub) {
  const name = sub.product_display_name || sub.product;
  const headingId = uid('sub');
  const row = h('li', {
    class: 'sub card', 'data-test': 'subscription', 'data-id': sub.id, 'data-state': sub.state, 'data-product': sub.product,
    'aria-labelledby': headingId,
  },
  h('div', { class: 'sub-head' },
    h('h3', { id: headingId }, link(`${BASE}products/${enc(sub.product)}`, name)),
    stateBadge(sub.state),
    h('span', { class: 'hint' }, 'Created ', timeEl(sub.created))));
  if (sub.state === 'active') {
    const state = { sub };
    row.append(h('dl', { class: 'keys' }, keyRow(state, 'primary', name), keyRow(state, 'secondary', name)),
      h('p', { class: 'hint' }, 'APIs: ', joinNodes((sub.apis || []).map((a) => link(`${BASE}apis/${enc(a)}`, a)))));
  } else if (sub.state === 'pending') {
    row.append(h('p', null, 'Waiting for an administrator to approve it. Your keys appear here once it is active.'));
  } else {
    row.append(h('p', null, 'This subscription has no keys.'));
  }
  return row;
}

function maskKey(key) {
  return key ? `${MASK}${key.slice(-4)}` : '';
}

/** One key of an active subscription: masked by default, with Show/Hide, Copy and Regenerate. */
function keyRow(state, which, productName) {
  const title = which === 'primary' ? 'Primary key' : 'Secondary key';
  const field = `${which}_key`;
  let shown = false;
  const code = h('code', { class: 'key', 'data-test': `${which}-key`, id: uid(`${which}-key`) }, maskKey(state.sub[field]));
  const toggleLabel = h('span', null, 'Show');
  const toggle = h('button', {
    type: 'button', class: 'btn btn-small', 'data-test': `show-${which}`, 'aria-controls': code.id,
  }, toggleLabel, vh(` ${which} key for ${productName}`));
  const paint = () => {
    code.textContent = shown ? state.sub[field] : maskKey(state.sub[field]);
    toggleLabel.textContent = shown ? 'Hide' : 'Show';
  };
  toggle.addEventListener('click', () => {
    shown = !shown;
    paint();
  });
  const regenerate = h('button', { type: 'button', class: 'btn btn-small btn-danger-quiet', 'data-test': `regenerate-${which}` },
    `Regenerate ${which}`, vh(` key for ${productName}`));
  regenerate.addEventListener('click', async () => {
    const ok = await confirmDialog({
      title: `Regenerate the ${which} key?`,
      body: `The current ${which} key stops working right away. Move your clients to the ${which === 'primary' ? 'secondary' : 'primary'} key first if they must keep running.`,
      confirm: `Regenerate ${which} key`,
    });
    if (!ok) return;
    regenerate.disabled = true;
    try {
      const { subscription } = await post(`subscriptions/${enc(state.sub.id)}/regenerate`, { key: which });
      state.sub = subscription;
      paint();
      announce(`New ${which} key generated for ${productName}.`);
    } catch (err) {
      announce(`Could not regenerate the ${which} key: ${err.message}`);
      alertNear(regenerate, err.message);
    } finally {
      regenerate.disabled = false;
      regenerate.focus();
    }
  });
  return h('div', { class: 'key-row' },
    h('dt', null, title),
    h('dd', null, code,
      h('span', { class: 'key-actions' }, toggle, copyButton(() => state.sub[field], `${which} key for ${productName}`, title), regenerate)));
}

function alertNear(el, message) {
  const box = h('p', { class: 'field-error', role: 'alert' }, message);
  el.closest('dd').append(box);
  setTimeout(() => box.remove(), 8000);
}

// ---------------------------------------------------------------------------------------------
// Usage chart

function usageSection() {
  const chartBox = h('div', { class: 'chart-box' });
  const tableBox = h('div');
  const status = h('p', { class: 'hint', 'aria-live': 'polite' });
  const refresh = h('button', { type: 'button', class: 'btn btn-small', 'data-test': 'usage-refresh' }, 'Refresh', vh(' usage'));
  let days = null;
  let drawnWidth = 0;
  // The chart is drawn at the box's real width, so its text stays at the page's size.
  const draw = () => {
    if (!days) return;
    drawnWidth = chartBox.clientWidth || 720;
    chartBox.replaceChildren(usageChart(days, drawnWidth));
  };
  const load = async () => {
    refresh.disabled = true;
    refresh.setAttribute('aria-busy', 'true');
    try {
      ({ days } = await get('usage?days=14'));
      draw();
      tableBox.replaceChildren(usageTable(days));
      status.textContent = `Updated at ${new Date().toLocaleTimeString()}.`;
    } catch (err) {
      status.textContent = `Could not load usage: ${err.message}`;
    } finally {
      refresh.disabled = false;
      refresh.removeAttribute('aria-busy');
    }
  };
  refresh.addEventListener('click', load);
  if (window.ResizeObserver) {
    new ResizeObserver(() => {
      if (Math.abs((chartBox.clientWidth || 0) - drawnWidth) > 8) draw();
    }).observe(chartBox);
  }
  load();
  const node = h('section', { class: 'panel usage', 'aria-labelledby': 'usage-heading' },
    h('div', { class: 'section-head' }, h('h2', { id: 'usage-heading' }, 'Usage, last 14 days'), refresh),
    h('p', { class: 'hint' }, 'Requests with any of your keys, per day (UTC). New requests can take a minute to appear.'),
    chartBox, status, tableBox);
  return { node };
}

/** A round step (1, 2 or 5 times a power of ten) that splits max into about four intervals. */
function tickStep(max) {
  const raw = Math.max(1, max / 4);
  const pow = 10 ** Math.floor(Math.log10(raw));
  const m = [1, 2, 5, 10].find((x) => x * pow >= raw);
  return m * pow;
}

function usageChart(days, width) {
  const W = Math.max(280, Math.round(width));
  const H = 260;
  const m = { top: 34, right: 8, bottom: 52, left: 56 };
  const plotW = W - m.left - m.right;
  const plotH = H - m.top - m.bottom;
  const totalReq = days.reduce((a, d) => a + (d.requests || 0), 0);
  const totalErr = days.reduce((a, d) => a + (d.errors || 0), 0);
  const peak = Math.max(0, ...days.map((d) => Math.max(d.requests || 0, d.errors || 0)));
  const step = tickStep(peak);
  const top = Math.max(step * 4, Math.ceil(peak / step) * step);
  const y = (v) => m.top + plotH - (v / top) * plotH;
  const group = plotW / Math.max(1, days.length);
  const barW = Math.max(2, Math.min(22, group * 0.34));
  const labelEvery = group < 26 ? 2 : 1;
  const titleId = uid('chart-title');
  const descId = uid('chart-desc');

  const grid = [];
  for (let t = 0; t <= top; t += step) {
    grid.push(s('g', { class: 'tick' },
      s('line', { x1: m.left, x2: W - m.right, y1: y(t), y2: y(t), class: t === 0 ? 'axis' : 'grid' }),
      s('text', { x: m.left - 8, y: y(t) + 4, 'text-anchor': 'end' }, t.toLocaleString())));
  }

  const bars = days.map((d, i) => {
    const x0 = m.left + i * group;
    const mid = x0 + group / 2;
    const label = formatDay(d.day, { weekday: 'short', month: 'short', day: 'numeric' });
    const fromEnd = days.length - 1 - i; // label today, and every other day back from it
    return s('g', { class: 'day' },
      s('rect', { class: 'hit', x: x0, y: m.top, width: group, height: plotH },
        s('title', null, `${label}: ${d.requests} requests, ${d.errors} errors`)),
      s('rect', { class: 'bar-requests', x: mid - barW, y: y(d.requests), width: barW, height: y(0) - y(d.requests) },
        s('title', null, `${label}: ${d.requests} requests`)),
      s('rect', { class: 'bar-errors', x: mid, y: y(d.errors), width: barW, height: y(0) - y(d.errors) },
        s('title', null, `${label}: ${d.errors} errors`)),
      fromEnd % labelEvery === 0
        ? s('text', { class: 'x-label', x: mid, y: H - m.bottom + 16, 'text-anchor': 'middle' }, formatDay(d.day, { day: 'numeric' }))
        : null,
      i === 0 || d.day.slice(8) === '01'
        ? s('text', { class: 'x-label month', x: mid, y: H - m.bottom + 31, 'text-anchor': 'middle' }, formatDay(d.day, { month: 'short' }))
        : null);
  });

  return s('svg', {
    class: 'chart', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': `${titleId} ${descId}`,
    'data-test': 'usage-chart', 'data-requests-total': totalReq, 'data-errors-total': totalErr,
  },
  s('title', { id: titleId }, 'Requests and errors per day, last 14 days'),
  s('desc', { id: descId }, `${totalReq} requests and ${totalErr} errors in total. The table below lists each day.`),
  s('g', { class: 'legend', transform: `translate(${m.left}, 8)` },
    s('rect', { class: 'bar-requests', x: 0, y: 0, width: 12, height: 12, rx: 2 }),
    s('text', { x: 18, y: 11 }, `Requests (${totalReq.toLocaleString()})`),
    s('rect', { class: 'bar-errors', x: 150, y: 0, width: 12, height: 12, rx: 2 }),
    s('text', { x: 168, y: 11 }, `Errors (${totalErr.toLocaleString()})`)),
  grid, bars,
  s('text', { class: 'axis-title', x: m.left + plotW / 2, y: H - 4, 'text-anchor': 'middle' }, 'Day (UTC)'),
  s('text', { class: 'axis-title', transform: `translate(14, ${m.top + plotH / 2}) rotate(-90)`, 'text-anchor': 'middle' }, 'Count per day'));
}

function usageTable(days) {
  return h('details', { class: 'usage-table' },
    h('summary', null, 'Show the numbers as a table'),
    h('div', { class: 'table-scroll', tabindex: '0', role: 'region', 'aria-label': 'Usage per day' },
      h('table', null,
        h('caption', { class: 'vh' }, 'Requests and errors per day'),
        h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Day'), h('th', { scope: 'col', class: 'num' }, 'Requests'), h('th', { scope: 'col', class: 'num' }, 'Errors'))),
        h('tbody', null, days.map((d) => h('tr', null,
          h('th', { scope: 'row' }, h('time', { datetime: d.day }, formatDay(d.day, { weekday: 'short', month: 'short', day: 'numeric' }))),
          h('td', { class: 'num' }, d.requests.toLocaleString()),
          h('td', { class: 'num' }, d.errors.toLocaleString())))))));
}

// ---------------------------------------------------------------------------------------------
// Start

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

start();
