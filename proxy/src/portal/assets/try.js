// Ringway developer portal: the try-it console: a form per operation that builds the request
// from its parameters, has the portal send it through the gateway with the developer's key, and
// shows the answer with the same request as a curl command.

import { enc, h, joinNodes, pretty, vh } from './dom.js';
import { notice, statusClass } from './widgets.js';
import { developer, post } from './api.js';
import { BASE, currentPath } from './router.js';
import { exampleOf, exampleText, paramStyle } from './schema.js';

const METHODS_WITHOUT_BODY = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS']);

const REASONS = {
  200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content', 301: 'Moved Permanently', 302: 'Found',
  304: 'Not Modified', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found',
  405: 'Method Not Allowed', 409: 'Conflict', 413: 'Payload Too Large', 415: 'Unsupported Media Type',
  422: 'Unprocessable Content', 429: 'Too Many Requests', 500: 'Internal Server Error', 502: 'Bad Gateway',
  503: 'Service Unavailable', 504: 'Gateway Timeout',
};

export function tryPanel(op, env) {
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
