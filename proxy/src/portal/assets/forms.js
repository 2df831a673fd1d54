// Ringway developer portal: the sign-up and sign-in pages, with client checks that mirror the
// server's and its errors shown next to their fields.

import { announce, enc, h, link } from './dom.js';
import { developer, post, signupOpen } from './api.js';
import { BASE, navigate, redirect, safeNext } from './router.js';

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

export async function pageSignup(ctx) {
  ctx.title = 'Create an account';
  if (developer) return redirect(`${BASE}account`);
  if (!signupOpen) {
    return h('section', { class: 'auth' },
      h('h1', null, 'Create an account'),
      h('p', null, 'This portal does not take sign-ups. Ask its owners for an account, then ',
        link(`${BASE}signin`, 'sign in'), '.'));
  }
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

export async function pageSignin(ctx) {
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
    signupOpen
      ? h('p', null, 'New here? ', link(`${BASE}signup${ctx.query.get('next') ? `?next=${enc(next)}` : ''}`, 'Create an account'), '.')
      : null);
}
