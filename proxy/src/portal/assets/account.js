// Ringway developer portal: the account page: subscriptions with their keys (masked, shown,
// copied, regenerated), usage, and signing out.

import { announce, enc, h, joinNodes, link, timeEl, uid, vh } from './dom.js';
import { confirmDialog, copyButton, notice, stateBadge } from './widgets.js';
import { developer, forgetDeveloper, mySubscriptions, post } from './api.js';
import { BASE, navigate, redirect } from './router.js';
import { usageSection } from './chart.js';

const MASK = '••••••••';

export async function pageAccount(ctx) {
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

export async function signOut() {
  try {
    await post('signout', {});
    forgetDeveloper();
    navigate(BASE);
    announce('Signed out.');
  } catch (err) {
    announce(`Could not sign out: ${err.message}`);
  }
}
