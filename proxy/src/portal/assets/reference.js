// Ringway developer portal: an API's reference page: how to call it, its version and revision
// selectors, and each operation's parameters, request body and responses, with a try-it panel.

import { enc, h, joinNodes, link, paragraphs, pretty, uid } from './dom.js';
import { badge, breadcrumbs, copyButton, methodBadge, statusClass } from './widgets.js';
import { catalog, get, mySubscriptions } from './api.js';
import { BASE, navigate } from './router.js';
import { enumNote, exampleOf, exampleText, paramStyle, schemaTree, typeLabel } from './schema.js';
import { tryPanel } from './try.js';

export async function pageApi(ctx, name) {
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

function responsesList(responses) {
  return h('div', { class: 'op-block' },
    h('h4', null, 'Responses'),
    h('ul', { class: 'responses' }, responses.map((r) => h('li', { class: 'response' },
      h('p', { class: 'response-head' }, h('span', { class: `status ${statusClass(r.status)}` }, r.status), ' ', r.description || ''),
      mediaBlocks(r.content)))));
}
