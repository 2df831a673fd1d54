// Ringway developer portal: the account's usage panel: requests and errors per day as an SVG bar
// chart drawn at the box's width, and the same numbers as a table.

import { formatDay, h, s, uid, vh } from './dom.js';
import { get } from './api.js';

export function usageSection() {
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
