// Ringway developer portal: the catalog's pages: home, products (with subscribing), the list of
// APIs, and the page for an address that has none.

import { enc, h, link, paragraphs } from './dom.js';
import { approvalBadge, badge, breadcrumbs, notice, STATE_LABELS } from './widgets.js';
import { catalog, DEFAULT_TITLE, developer, forgetDeveloper, mySubscriptions, post, signupOpen } from './api.js';
import { BASE, currentPath, navigate } from './router.js';

export function pageNotFound(ctx) {
  ctx.title = 'Page not found';
  return h('section', { class: 'page-message' },
    h('p', { class: 'eyebrow' }, '404'),
    h('h1', null, 'Page not found'),
    h('p', null, 'There is nothing at this address. It may have moved, or the link may be mistyped.'),
    h('p', { class: 'actions' }, link(BASE, 'Go to the portal home'), ' ', link(`${BASE}apis`, 'Browse the APIs')));
}

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

export async function pageHome(ctx) {
  const cat = await catalog();
  const cta = developer
    ? h('p', { class: 'actions' }, h('a', { href: `${BASE}account`, class: 'btn btn-primary' }, 'Go to your account'),
      h('a', { href: `${BASE}apis`, class: 'btn' }, 'Browse the APIs'))
    : h('p', { class: 'actions' },
      signupOpen ? h('a', { href: `${BASE}signup`, class: 'btn btn-primary' }, 'Create an account') : null,
      h('a', { href: `${BASE}signin`, class: signupOpen ? 'btn' : 'btn btn-primary' }, 'Sign in'));
  return h('div', null,
    h('section', { class: 'hero' },
      h('h1', null, cat.title || DEFAULT_TITLE),
      h('p', { class: 'lead' }, 'Browse the APIs, try every operation from your browser, and get a key in a minute.'),
      cta,
      h('ol', { class: 'steps' },
        h('li', null, h('strong', null, signupOpen ? 'Sign up' : 'Sign in'), signupOpen ? ' with your email address.' : ' with the account you were given.'),
        h('li', null, h('strong', null, 'Subscribe'), ' to a product to get two keys.'),
        h('li', null, h('strong', null, 'Call the API'), ' with your key in a header.'))),
    h('section', { 'aria-labelledby': 'home-products' },
      h('h2', { id: 'home-products' }, 'Products'),
      cat.products.length ? h('ul', { class: 'cards' }, cat.products.map(productCard)) : h('p', null, 'No products yet.')),
    h('section', { 'aria-labelledby': 'home-apis' },
      h('h2', { id: 'home-apis' }, 'APIs'),
      cat.apis.length ? h('ul', { class: 'cards' }, cat.apis.map(apiCard)) : h('p', null, 'No APIs yet.')));
}

export async function pageProducts(ctx) {
  const cat = await catalog();
  ctx.title = 'Products';
  return h('div', null,
    h('h1', null, 'Products'),
    h('p', { class: 'lead' }, 'A product bundles APIs with a usage plan. Subscribe to one to get your keys.'),
    h('ul', { class: 'cards' }, cat.products.map(productCard)));
}

export async function pageApis(ctx) {
  const cat = await catalog();
  ctx.title = 'APIs';
  return h('div', null,
    h('h1', null, 'APIs'),
    h('p', { class: 'lead' }, 'Every API you can call through the gateway. Open one to read its operations and try them.'),
    h('ul', { class: 'cards' }, cat.apis.map(apiCard)));
}

export async function pageProduct(ctx, name) {
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
      ...(signupOpen ? [' ', 'or ', link(`${BASE}signup`, 'create an account'), '.'] : []));
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
          forgetDeveloper();
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
