// End-to-end check of the developer portal in a real headless Chromium, driven like a user.
//
//   PORTAL_URL=http://127.0.0.1:9901/portal/ GATEWAY_URL=http://127.0.0.1:8080 \
//   API=petstore PRODUCT=starter OPERATION=listPets SCREENSHOTS=/tmp/shots \
//   node tests/browser/portal.mjs
//
// Prints one `ok - ...` line per step; on the first failure prints `not ok - ...`, saves
// failure.png (in SCREENSHOTS, or the temp directory) and exits 1. PRODUCT must be a product
// with automatic approval that includes API; OPERATION must answer 200 to its examples.

import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';

const PORTAL_URL = withSlash(process.env.PORTAL_URL || 'http://127.0.0.1:9901/portal/');
const GATEWAY_URL = (process.env.GATEWAY_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
const API = process.env.API || 'petstore';
const PRODUCT = process.env.PRODUCT || 'starter';
const OPERATION = process.env.OPERATION || 'listPets';
const SCREENSHOTS = process.env.SCREENSHOTS || '';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const DESKTOP = { width: 1280, height: 800 };
const PORTAL_PATH = new URL(PORTAL_URL).pathname; // "/portal/"

const developer = {
  name: 'Browser Test',
  email: `browser-${Date.now()}-${randomBytes(3).toString('hex')}@example.test`,
  password: `pw-${randomBytes(12).toString('hex')}`,
};

function withSlash(url) {
  return url.endsWith('/') ? url : `${url}/`;
}

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

class Failure extends Error {}

function check(condition, message) {
  if (!condition) throw new Failure(message);
}

/** Polls fn until it returns something truthy; the last error or value explains a timeout. */
async function until(what, fn, { timeout = 10_000, interval = 250 } = {}) {
  const deadline = Date.now() + timeout;
  let last = '';
  for (;;) {
    try {
      const value = await fn();
      if (value) return value;
      last = value === undefined ? '' : ` (last: ${JSON.stringify(value)})`;
    } catch (err) {
      last = ` (last error: ${err.message.split('\n')[0]})`;
    }
    if (Date.now() > deadline) throw new Failure(`timed out after ${timeout / 1000} s waiting for ${what}${last}`);
    await sleep(interval);
  }
}

let page;
let context;
let current = 'start the browser';
let passed = 0;
const pageProblems = [];

async function step(name, fn) {
  current = name;
  await fn();
  check(pageProblems.length === 0, `the page reported: ${pageProblems.join(' | ')}`);
  passed += 1;
  console.log(`ok - ${name}`);
}

async function shot(file, { fullPage = false } = {}) {
  if (!SCREENSHOTS) return;
  await page.screenshot({ path: join(SCREENSHOTS, file), fullPage });
}

function watch(p) {
  p.on('crash', () => pageProblems.push('the page crashed'));
  p.on('pageerror', (err) => pageProblems.push(`uncaught ${err.message}`));
  p.on('console', (msg) => {
    // A CSP violation means an asset broke the policy (inline style or script, outside URL).
    if (msg.type() === 'error' && /Content Security Policy|Refused to/i.test(msg.text())) pageProblems.push(msg.text());
  });
}

// ------------------------------------------------------------------------------------------
// Page helpers

const hook = (name) => `[data-test="${name}"]`;
const mainNav = () => page.getByRole('navigation', { name: 'Main' });

async function heading(text) {
  const h1 = page.locator('main h1');
  await until(`the page heading "${text}"`, async () => {
    const got = (await h1.textContent({ timeout: 1000 })) || '';
    return text instanceof RegExp ? text.test(got) : got.includes(text);
  });
}

async function open(path) {
  await page.goto(new URL(path, PORTAL_URL).href);
  await page.locator('main:not([aria-busy]) h1').first().waitFor();
}

async function clickNav(name) {
  await mainNav().getByRole('link', { name, exact: true }).click();
}

async function unlabelled() {
  return page.evaluate(() => {
    const named = (el) => (el.labels && el.labels.length > 0 && [...el.labels].some((l) => l.textContent.trim()))
      || (el.getAttribute('aria-label') || '').trim() || el.getAttribute('aria-labelledby');
    const problems = [];
    for (const el of document.querySelectorAll('input, select, textarea')) {
      if (el.type === 'hidden' || el.closest('[aria-hidden="true"]')) continue;
      if (!named(el)) problems.push(`unlabelled ${el.outerHTML.slice(0, 100)}`);
    }
    for (const el of document.querySelectorAll('button')) {
      if (!(el.textContent.trim() || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby'))) problems.push(`unnamed ${el.outerHTML.slice(0, 100)}`);
    }
    for (const el of document.querySelectorAll('form:not([method="dialog"])')) {
      if (!(el.getAttribute('aria-label') || el.getAttribute('aria-labelledby'))) problems.push(`unnamed ${el.outerHTML.slice(0, 80)}`);
    }
    return problems;
  });
}

async function checkLabels(where) {
  const problems = await unlabelled();
  check(problems.length === 0, `${where}: ${problems.join('; ')}`);
}

async function subscriptionRow() {
  const row = page.locator(`${hook('subscription')}[data-product="${PRODUCT}"]`).first();
  await row.waitFor();
  return row;
}

async function shownPrimaryKey(row) {
  const code = row.locator(hook('primary-key'));
  if ((await code.textContent()).includes('•')) await row.locator(hook('show-primary')).click();
  return until('the primary key to be shown', async () => {
    const text = (await code.textContent()).trim();
    return text.includes('•') ? false : text;
  });
}

async function tryIt(subscriptionId) {
  await open(`apis/${encodeURIComponent(API)}`);
  const panel = page.locator(hook(`try-${OPERATION}`));
  await panel.waitFor();
  if (!(await panel.evaluate((el) => el.open === undefined || el.open))) await panel.locator(':scope > summary').click();
  await panel.getByLabel('Subscription', { exact: true }).selectOption(subscriptionId);
  await panel.getByLabel('Key', { exact: true }).selectOption('primary');
  const status = panel.locator(hook('try-status'));
  await panel.locator(hook(`try-send-${OPERATION}`)).click();
  const text = await until('the try-it answer', async () => (await status.count()) && (await status.textContent()).trim());
  const body = await panel.locator(hook('try-body')).textContent().catch(() => '');
  check(/^200\b/.test(text), `try-it answered "${text}", expected 200; body: ${String(body).slice(0, 300)}`);
  await panel.scrollIntoViewIfNeeded();
  return panel;
}

// ------------------------------------------------------------------------------------------
// Direct calls through the gateway, from node

let apiDetail;
async function gatewayRequest(key) {
  const op = apiDetail.operations.find((o) => o.id === OPERATION);
  check(op, `${API} has no operation ${OPERATION} (has: ${apiDetail.operations.map((o) => o.id).join(', ')})`);
  let path = op.path;
  const query = new URLSearchParams(apiDetail.request.query || {});
  const headers = { ...(apiDetail.request.headers || {}) };
  for (const p of op.parameters) {
    const ex = p.example ?? p.schema?.example ?? p.schema?.default;
    if (ex === undefined || ex === null) continue;
    const value = Array.isArray(ex) ? ex.join(',') : String(ex);
    if (p.in === 'path') path = path.split(`{${p.name}}`).join(encodeURIComponent(value));
    else if (p.in === 'query' && p.required) query.append(p.name, value);
    else if (p.in === 'header' && p.required) headers[p.name] = value;
  }
  if (key !== null) headers[apiDetail.key_header] = key;
  const qs = query.toString();
  const url = `${GATEWAY_URL}${apiDetail.request.prefix}${path}${qs ? `?${qs}` : ''}`;
  const res = await fetch(url, { method: op.method, headers, signal: AbortSignal.timeout(10_000) });
  await res.arrayBuffer();
  return { url, status: res.status };
}

async function expectGateway(key, want, label) {
  // A key change reaches the gateway through a configuration snapshot: allow it a few seconds.
  let last;
  await until(`${label} to answer ${want} from the gateway`, async () => {
    last = await gatewayRequest(key);
    return last.status === want ? true : `${last.status} from ${last.url}`;
  }, { timeout: 10_000, interval: 500 });
  return last;
}

// ------------------------------------------------------------------------------------------

async function main() {
  if (SCREENSHOTS) mkdirSync(SCREENSHOTS, { recursive: true });
  let browser;
  try {
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
    context = await browser.newContext({ viewport: DESKTOP });
    page = await context.newPage();
    page.setDefaultTimeout(15_000);
    watch(page);
    console.log(`# ${PORTAL_URL} with Chromium ${browser.version()}, gateway ${GATEWAY_URL}`);
    await run();
    console.log(`# all ${passed} steps passed`);
  } catch (err) {
    const where = SCREENSHOTS || tmpdir();
    if (page) await page.screenshot({ path: join(where, 'failure.png'), fullPage: true }).catch(() => {});
    // Playwright's messages carry a call log (useful) and colour codes (not).
    const message = err instanceof Failure ? err.message : String(err.message || err).replace(/\x1b\[[0-9;]*m/g, '');
    console.log(`not ok - ${current}: ${message}`);
    if (page) console.log(`# at ${page.url()}; screenshot ${join(where, 'failure.png')}`);
    process.exitCode = 1;
  } finally {
    // A browser in a bad state can hang on close; do not let it hide the verdict.
    if (browser) await Promise.race([browser.close(), sleep(10_000)]);
  }
}

async function run() {
  let subscriptionId;
  let primaryKey;

  await step('opened the home page', async () => {
    await open('');
    check((await page.locator('main h1').textContent()).trim() !== '', 'the home page has no heading');
    check(await page.locator(`main a[href="${PORTAL_PATH}products/${PRODUCT}"]`).count() > 0, `the home page does not list product ${PRODUCT}`);
    check(await page.locator(`main a[href="${PORTAL_PATH}apis/${API}"]`).count() > 0, `the home page does not list API ${API}`);
    await shot('portal-home.png', { fullPage: true });
  });

  await step('an unknown portal path shows the 404 page', async () => {
    await open('no-such-page-here');
    await heading('Page not found');
  });

  await step(`opened the APIs list and the ${API} reference`, async () => {
    await open('');
    await clickNav('APIs');
    await page.waitForURL(/\/apis\/?$/);
    await page.locator(`main a[href="${PORTAL_PATH}apis/${API}"]`).first().click();
    apiDetail = await page.evaluate(async ({ base, name }) => (await fetch(`${base}api/apis/${encodeURIComponent(name)}`)).json(), { base: PORTAL_PATH, name: API });
    check(apiDetail && Array.isArray(apiDetail.operations), `could not read the API detail: ${JSON.stringify(apiDetail).slice(0, 200)}`);
    check(apiDetail.operations.some((o) => o.id === OPERATION), `${API} has no operation ${OPERATION} (has: ${apiDetail.operations.map((o) => o.id).join(', ')})`);
    await page.locator(hook(`try-${OPERATION}`)).waitFor();
    const ops = await page.locator('main section.op').count();
    const paramRows = await page.locator('main table.params tbody tr').count();
    check(ops > 0, 'no operations rendered');
    check(paramRows > 0, 'no operation shows a parameters table');
    check(await page.locator(hook('revision-select')).count() === 1, 'no revision selector');
    await shot('portal-api.png');
  });

  await step('the revision and version selectors navigate', async () => {
    const select = page.locator(hook('revision-select'));
    const other = apiDetail.revisions.find((r) => !r.current);
    if (other) {
      await select.selectOption(String(other.rev));
      await page.waitForURL(new RegExp(`\\?rev=${other.rev}$`));
      await until(`the revision selector to show rev ${other.rev}`, async () => (await page.locator(hook('revision-select')).inputValue()) === String(other.rev));
      await page.goBack();
      await page.waitForURL((u) => !u.search.includes('rev='));
    }
    const cat = await page.evaluate(async (base) => (await fetch(`${base}api/catalog`)).json(), PORTAL_PATH);
    const versioned = cat.apis.filter((a) => a.version_set);
    if (versioned.length > 1) {
      const [a, b] = versioned.filter((x) => x.version_set === versioned[0].version_set);
      if (a && b) {
        await open(`apis/${encodeURIComponent(a.name)}`);
        await page.locator(hook('version-select')).selectOption(b.name);
        await page.waitForURL(new RegExp(`/apis/${b.name}$`));
        await until('the version selector to show the new version', async () => (await page.locator(hook('version-select')).inputValue()) === b.name);
      }
    }
  });

  await step('signed up', async () => {
    await open('');
    await clickNav('Sign up');
    const form = page.locator(hook('signup-form'));
    await form.waitFor();
    await checkLabels('sign-up page');
    await form.getByLabel('Name').fill(developer.name);
    await form.getByLabel('Email').fill(developer.email);
    await form.getByLabel('Password').fill('too-short');
    await form.getByRole('button', { name: 'Create account' }).click();
    await until('the too-short password error to take focus', () => page.evaluate(() => document.activeElement && document.activeElement.id === 'signup-password'));
    check(await form.locator('#signup-password-error').isVisible(), 'no error next to the password field');
    await form.getByLabel('Password').fill(developer.password);
    await shot('portal-signup.png');
    await form.getByRole('button', { name: 'Create account' }).click();
    await page.waitForURL(/\/account\/?$/);
    await mainNav().getByRole('link', { name: 'Account', exact: true }).waitFor();
  });

  await step(`subscribed to ${PRODUCT}`, async () => {
    await clickNav('Products');
    await page.locator(`main a[href="${PORTAL_PATH}products/${PRODUCT}"]`).first().click();
    await page.locator(hook(`subscribe-${PRODUCT}`)).click();
    const result = page.locator('.subscribe-result');
    const text = await until('the subscription result', async () => (await result.textContent()).trim() || false);
    check(!/approval/i.test(text), `${PRODUCT} needs approval ("${text}"); use a product with automatic approval`);
    await result.getByRole('link', { name: /see your keys/i }).waitFor();
    await shot('portal-product.png');
  });

  await step('the account shows the subscription active and its primary key', async () => {
    await page.locator('.subscribe-result').getByRole('link', { name: /see your keys/i }).click();
    await page.waitForURL(/\/account\/?$/);
    const row = await subscriptionRow();
    check(await row.getAttribute('data-state') === 'active', `subscription state is ${await row.getAttribute('data-state')}`);
    subscriptionId = await row.getAttribute('data-id');
    check((await row.locator(hook('primary-key')).textContent()).includes('•'), 'the primary key is not masked at first');
    primaryKey = await shownPrimaryKey(row);
    check(primaryKey.length >= 32, `the primary key is only ${primaryKey.length} characters`);
    await checkLabels('account page');
    await shot('portal-account.png');
  });

  await step(`try-it on ${OPERATION} answered 200`, async () => {
    const panel = await tryIt(subscriptionId);
    await checkLabels('API page (signed in)');
    await panel.locator(hook('try-status')).scrollIntoViewIfNeeded();
    await shot('portal-try-it.png');
  });

  await step('the gateway accepts the primary key', async () => {
    const res = await expectGateway(primaryKey, 200, 'the primary key');
    const none = await gatewayRequest(null);
    check(none.status === 401, `without a key the gateway answered ${none.status}, expected 401 (${none.url})`);
    console.log(`# GET ${res.url} -> 200`);
  });

  let newKey;
  await step('regenerated the primary key', async () => {
    await clickNav('Account');
    const row = await subscriptionRow();
    const old = await shownPrimaryKey(row);
    check(old === primaryKey, 'the account shows a different primary key than before');
    await row.locator(hook('regenerate-primary')).click();
    const dialog = page.getByRole('dialog');
    await dialog.waitFor();
    await dialog.getByRole('button', { name: /regenerate/i }).click();
    newKey = await until('the shown primary key to change', async () => {
      const text = (await row.locator(hook('primary-key')).textContent()).trim();
      return text !== old && !text.includes('•') ? text : false;
    });
    check(newKey.length >= 32, `the new primary key is only ${newKey.length} characters`);
  });

  await step('the old key is refused (401) and the new one accepted (200)', async () => {
    await expectGateway(primaryKey, 401, 'the old primary key');
    await expectGateway(newKey, 200, 'the new primary key');
  });

  await step('try-it still answers 200 after the key change', async () => {
    await tryIt(subscriptionId);
  });

  await step('the usage chart counts new requests', async () => {
    await clickNav('Account');
    const chart = page.locator(hook('usage-chart'));
    await chart.waitFor();
    const before = Number(await chart.getAttribute('data-requests-total'));
    check(Number.isFinite(before), 'the chart has no data-requests-total');
    await expectGateway(newKey, 200, 'the new primary key');
    const after = await until('data-requests-total to grow after Refresh', async () => {
      await page.locator(hook('usage-refresh')).click();
      await until('the refresh to finish', async () => (await page.locator(`${hook('usage-refresh')}[aria-busy]`).count()) === 0, { timeout: 5000, interval: 100 });
      const total = Number(await page.locator(hook('usage-chart')).getAttribute('data-requests-total'));
      return total > before ? total : false;
    }, { timeout: 30_000, interval: 2000 });
    console.log(`# requests total ${before} -> ${after}`);
    await page.locator('.usage').scrollIntoViewIfNeeded();
    await shot('portal-usage.png');
  });

  await step('signed out', async () => {
    await page.locator(hook('signout')).click();
    await mainNav().getByRole('link', { name: 'Sign in', exact: true }).waitFor();
    await open('account');
    await page.waitForURL(/\/signin\?next=/);
    await page.locator(hook('signin-form')).waitFor();
  });

  await step('signed in again', async () => {
    await page.goto(new URL('signin?next=' + encodeURIComponent(`${PORTAL_PATH}account`), PORTAL_URL).href);
    const form = page.locator(hook('signin-form'));
    await form.waitFor();
    await checkLabels('sign-in page');
    const submit = form.getByRole('button', { name: 'Sign in' });
    let reached = false;
    for (let i = 0; i < 30 && !reached; i += 1) {
      await page.keyboard.press('Tab');
      reached = await submit.evaluate((el) => el === document.activeElement);
    }
    check(reached, 'pressing Tab never reached the sign-in button');
    await form.getByLabel('Email').fill(developer.email);
    await form.getByLabel('Password').fill(`${developer.password}-wrong`);
    await submit.click();
    await until('the wrong-password message', async () => form.locator('.error-summary').isVisible());
    await form.getByLabel('Password').fill(developer.password);
    await shot('portal-signin.png');
    await submit.click();
    await page.waitForURL(/\/account\/?$/);
    await subscriptionRow();
  });

  await step('every link of the portal leads to a page', async () => {
    const origin = new URL(PORTAL_URL).origin;
    const seen = new Set();
    const queue = ['', 'apis', 'products', `apis/${API}`, `products/${PRODUCT}`, 'account'].map(
      (p) => new URL(p, PORTAL_URL).href,
    );
    while (queue.length > 0 && seen.size < 60) {
      const url = queue.shift();
      const key = url.split('#')[0];
      if (seen.has(key)) continue;
      seen.add(key);
      const response = await page.goto(key);
      if (!response || response.status() !== 200) {
        throw new Failure(`${key} answered ${response && response.status()}`);
      }
      await page.locator('main:not([aria-busy]) h1').first().waitFor();
      const title = (await page.locator('main h1').first().textContent()) || '';
      if (title.includes('Page not found')) throw new Failure(`${key} is a broken link`);
      const hrefs = await page.$$eval('a[href]', (as) => as.map((a) => a.href));
      for (const href of hrefs) {
        const u = new URL(href);
        if (u.origin !== origin) {
          throw new Failure(`${key} links outside the portal: ${href}`);
        }
        if (u.pathname.startsWith(PORTAL_PATH) && !seen.has(href.split('#')[0])) queue.push(href);
      }
    }
    console.log(`# ${seen.size} pages visited, none broken`);
  });

  await step('a POST without the CSRF token is refused (403)', async () => {
    const status = await page.evaluate(async ({ base, product }) => {
      const res = await fetch(`${base}api/subscriptions`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ product }),
      });
      return res.status;
    }, { base: PORTAL_PATH, product: PRODUCT });
    check(status === 403, `expected 403, got ${status}`);
  });

  await step('a cross-site form POST is refused', async () => {
    const count = async () => page.evaluate(async (base) => (await (await fetch(`${base}api/subscriptions`)).json()).subscriptions.length, PORTAL_PATH);
    const before = await count();
    // The form lives in an about:blank document (an opaque origin), as on another site.
    const target = `${PORTAL_URL}api/subscriptions`;
    await page.goto('about:blank');
    await page.setContent(`<form method="post" action="${target}" enctype="text/plain">
      <input name='{"product":"${PRODUCT}","x":"' value='"}'><button type="submit">Send</button></form>`);
    check(await page.evaluate(() => window.origin) === 'null', 'the attacker page is not cross-origin');
    const answer = page.waitForResponse((r) => r.url() === target && r.request().method() === 'POST');
    await page.getByRole('button', { name: 'Send' }).click();
    const response = await answer;
    const status = response.status();
    const setCookie = (await response.allHeaders())['set-cookie'];
    check(status < 200 || status >= 300, `the cross-site form was answered ${status}`);
    await open('account');
    // The refused answer must not replace the developer's session either.
    check(!/\/signin/.test(page.url()), `the cross-site form signed the developer out${setCookie ? ` (its ${status} answer set a cookie: ${setCookie.split(';')[0].split('=')[0]}=...)` : ''}`);
    check(await count() === before, 'the cross-site form created a subscription');
    console.log(`# cross-site form answered ${status}`);
  });

  await step('no horizontal overflow at 375 px', async () => {
    await page.setViewportSize({ width: 375, height: 812 });
    const pages = ['', 'apis', `apis/${encodeURIComponent(API)}`, `products/${encodeURIComponent(PRODUCT)}`, 'account'];
    for (const path of pages) {
      await open(path);
      if (path === 'account') await page.locator(hook('usage-chart')).waitFor();
      if (path.startsWith('apis/')) await page.locator(`${hook(`try-${OPERATION}`)} > summary`).click();
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      check(width <= 375, `${PORTAL_PATH}${path} is ${width} px wide at a 375 px viewport`);
      if (path.startsWith('apis/')) await shot('portal-mobile.png');
    }
    await page.setViewportSize(DESKTOP);
  });
}

await main();
process.exit(process.exitCode || 0);
