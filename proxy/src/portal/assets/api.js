// Ringway developer portal: the client of the portal's JSON API (/portal/api/...), and the
// session it keeps in memory: the signed-in developer and the catalog.
//
// The invariant that matters: every POST carries the CSRF token from the latest session answer
// (`X-CSRF-Token`), kept only in memory. The token rotates on sign-in and sign-out (possibly in
// another tab), so a POST refused for its token fetches the session once and is sent again.

export const API = '/portal/api/';
export const DEFAULT_TITLE = 'Ringway Developer Portal';

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `The portal answered ${status}.`);
    this.status = status;
    this.code = (body && body.error) || 'http';
    this.field = (body && body.field) || null;
    this.retryAfter = body && body.retry_after;
  }
}

let csrf = null;
export let developer = null;
/** Whether the portal takes sign-ups (`portal.signup`); the session says. */
export let signupOpen = true;
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

export const get = (path) => call('GET', path);
export const post = (path, body) => call('POST', path, body);

export async function loadSession() {
  const data = await get('session');
  csrf = data.csrf;
  developer = data.developer || null;
  signupOpen = data.signup !== false;
  return data;
}

export function catalog() {
  if (!catalogPromise) {
    catalogPromise = get('catalog').catch((err) => {
      catalogPromise = null;
      throw err;
    });
  }
  return catalogPromise;
}

export async function siteTitle() {
  try {
    return (await catalog()).title || DEFAULT_TITLE;
  } catch {
    return DEFAULT_TITLE;
  }
}

/** The developer signed out, or the server says the session no longer has one. */
export function forgetDeveloper() {
  developer = null;
}

export async function mySubscriptions() {
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
