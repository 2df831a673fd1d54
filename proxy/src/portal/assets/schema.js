// Ringway developer portal: reading an operation's parameters and schemas: their types,
// examples and serialization styles, and the collapsible tree that shows a schema.

import { h, joinNodes } from './dom.js';
import { badge } from './widgets.js';

export function paramStyle(p) {
  const style = p.style || (p.in === 'query' || p.in === 'cookie' ? 'form' : 'simple');
  const explode = p.explode === undefined || p.explode === null ? style === 'form' : p.explode;
  return { style, explode };
}

export function exampleOf(p) {
  if (p.example !== undefined && p.example !== null) return p.example;
  const sch = p.schema || {};
  if (sch.example !== undefined) return sch.example;
  if (sch.default !== undefined) return sch.default;
  return undefined;
}

export function exampleText(value) {
  if (value === undefined || value === null) return '';
  if (typeof value === 'string') return value;
  return JSON.stringify(value);
}

export function enumNote(schema) {
  if (!schema || !Array.isArray(schema.enum)) return null;
  return h('span', { class: 'enum' }, ' One of: ', joinNodes(schema.enum.map((v) => h('code', null, exampleText(v)))), '.');
}

function refName(ref) {
  return String(ref || '').split('/').pop();
}

export function typeLabel(schema) {
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

export function schemaTree(schema) {
  if (!schema || Object.keys(schema).length === 0) return null;
  return h('div', { class: 'schema' },
    h('p', { class: 'label' }, 'Schema'),
    h('ul', { class: 'schema-tree schema-root' }, schemaNode({ name: null, schema }, 0)));
}
