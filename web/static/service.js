// The per-Service view: a click on a Service's name in the services table
// opens it (the address is #service/NAMESPACE/NAME, so it can be linked
// and survives a reload). It shows the Service's state and why, which
// host owns each of its VIPs, its ports with their source ranges and
// backends (weight, health, admin state), and its recent Kubernetes
// Events (GET /api/v1/services/{namespace}/{name}/events). It follows
// the dashboard's refreshes: update() is called with each new state.
import { get } from './api.js';
import { $, fill, h } from './dom.js';

const PREFIX = '#service/';
const EVENTS_MS = 5000; // the Events are read again at most this often

let card = null;    // the view's <section>, made by initService
let hooks = {};     // {onAuth(err)}
let last = null;    // {services, vips} of the last update
let events = { key: '', at: 0, list: null, error: '', loading: false };

// serviceHref is the address of a Service's view.
export function serviceHref(s) {
  return PREFIX + encodeURIComponent(s.namespace) + '/' + encodeURIComponent(s.name);
}

// initService makes the view's card, after the services card, and follows
// the address. onAuth is told about a 401.
export function initService({ onAuth }) {
  hooks = { onAuth };
  card = h('section', { id: 'service-view', class: 'card', hidden: true, 'aria-live': 'polite' });
  const services = $('#services').closest('section');
  services.after(card);
  addEventListener('hashchange', () => {
    events = { key: '', at: 0, list: null, error: '', loading: false };
    render(true);
  });
}

// update renders the view again with the dashboard's latest state.
export function update(services, vips) {
  last = { services, vips };
  render(false);
}

// selected is the [namespace, name] in the address, or null.
function selected() {
  if (!location.hash.startsWith(PREFIX)) return null;
  const parts = location.hash.slice(PREFIX.length).split('/');
  if (parts.length !== 2) return null;
  try { return parts.map(decodeURIComponent); } catch { return null; }
}

function close() {
  history.replaceState(null, '', location.pathname + location.search);
  card.hidden = true;
}

function render(scroll) {
  const sel = selected();
  if (!card) return;
  if (!sel || !last) {
    card.hidden = true;
    return;
  }
  const [ns, name] = sel;
  const s = last.services.find(x => x.namespace === ns && x.name === name);
  card.hidden = false;
  card.dataset.service = `${ns}/${name}`;
  const label = ns === '_static' ? `${name} (static)` : `${ns}/${name}`;
  const header = h('div', { class: 'row' }, h('h2', {}, 'Service ', h('span', { class: 'mono' }, label)),
    h('button', { type: 'button', class: 'small ghost', id: 'service-close', onclick: close }, 'Close'));
  if (!s) {
    fill(card, header, h('p', { class: 'muted' }, 'edgelb is not responsible for this Service (any more): it is not in GET /api/v1/services.'));
    return;
  }
  fill(card, header, stateLine(s), owners(s, last.vips), ports(s), eventsBlock(s));
  if (scroll) card.scrollIntoView({ block: 'start' });
  loadEvents(s);
}

const STATE = {
  served: ['served', 'ok', 'every port is programmed on this host'],
  partial: ['partially served', 'warn', 'some port has a problem on this host'],
  pending: ['pending', 'warn', 'no address yet'],
};

function badge(text, kind) { return h('span', { class: 'badge ' + kind }, text); }

function stateLine(s) {
  const [text, kind, what] = STATE[s.state] || [s.state || 'unknown', 'warn', ''];
  const reasons = [s.problem, ...(s.ports || []).filter(p => p.problem).map(p => `${p.vip}:${p.port}/${p.protocol}: ${p.problem}`)].filter(Boolean);
  return h('div', { class: 'svc-state' },
    h('span', { class: 'svc-state-badge' }, badge(text, kind)), ' ', h('span', { class: 'muted' }, what),
    reasons.map(r => h('div', { class: 'detail problem svc-reason' }, r)));
}

// owners says which host announces each VIP of s.
function owners(s, vips) {
  const addrs = s.vips || [];
  if (!addrs.length) return null;
  return h('div', {}, h('h3', {}, 'Addresses'), h('table', { class: 'svc-owners' },
    h('thead', {}, h('tr', {}, h('th', {}, 'VIP'), h('th', {}, 'Owner'))),
    h('tbody', {}, addrs.map(a => {
      const v = (vips || []).find(x => x.address === a);
      let owner;
      if (!v) owner = h('span', { class: 'muted' }, 'unknown');
      else if (v.announce === 'bgp') owner = h('span', { title: 'announced over BGP by every serving host that holds it' }, 'every host (BGP)');
      else owner = h('span', { class: v.owner ? '' : 'bad' }, v.owner || 'nobody');
      return h('tr', { dataset: { vip: a } }, h('td', { class: 'mono' }, a),
        h('td', { class: 'svc-owner' }, owner, v?.local && h('span', { class: 'tag' }, 'this host'),
          v?.problem && h('div', { class: 'detail problem' }, v.problem)));
    }))));
}

function ports(s) {
  const ps = s.ports || [];
  if (!ps.length) return null;
  return h('div', {}, h('h3', {}, 'Ports and backends'), h('table', { class: 'svc-ports' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Port'), h('th', {}, 'Clients'), h('th', {}, 'Scheduling'), h('th', {}, 'Backends'))),
    h('tbody', {}, ps.map(p => h('tr', { dataset: { port: `${p.vip}:${p.port}/${p.protocol}` } },
      h('td', { class: 'mono' }, `${p.vip}:${p.port}/${p.protocol}`, p.name && h('div', { class: 'detail' }, p.name)),
      h('td', { class: 'svc-ranges' }, !p.sourceRanges ? h('span', { class: 'muted' }, 'everyone')
        : p.sourceRanges.length ? h('span', { class: 'mono' }, p.sourceRanges.join(', ')) : h('span', { class: 'bad' }, 'nobody')),
      h('td', {}, [p.scheduler, p.method, p.persistenceSeconds ? `sticky ${p.persistenceSeconds}s` : ''].filter(Boolean).join(' · ')),
      h('td', {}, backends(p, s)))))));
}

function backends(p, s) {
  const rows = (p.backends || []).map(b => h('tr', { dataset: { backend: b.address, health: b.health } },
    h('td', { class: 'mono' }, b.address, b.node && h('span', { class: 'muted' }, ' · ' + b.node)),
    h('td', { class: 'be-weight' }, String(b.weight)),
    h('td', { class: 'be-health' }, badge(b.health, b.health === 'up' ? 'ok' : b.health === 'down' ? 'bad' : 'warn'),
      b.terminating && h('span', { class: 'tag' }, 'terminating')),
    h('td', { class: 'be-admin' }, b.adminState === 'drain' ? badge('drained', 'warn') : 'enabled'),
    h('td', { class: 'num' }, `${b.stats.activeConnections} active`)));
  for (const a of s.disabledBackends || []) {
    rows.push(h('tr', { dataset: { backend: a, health: 'disabled' } }, h('td', { class: 'mono' }, a), h('td', {}, '—'),
      h('td', {}, '—'), h('td', { class: 'be-admin' }, badge('disabled', 'bad')), h('td', {})));
  }
  if (!rows.length) return h('span', { class: 'muted' }, 'none');
  return h('table', { class: 'svc-backends' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Address'), h('th', {}, 'Weight'), h('th', {}, 'Health'), h('th', {}, 'Admin'), h('th', {}))),
    h('tbody', {}, rows));
}

function eventsBlock(s) {
  const title = h('h3', {}, 'Kubernetes Events');
  if (s.static) return h('div', { class: 'svc-events' }, title, h('p', { class: 'muted' }, 'A static service has no Kubernetes Events.'));
  const e = events.key === `${s.namespace}/${s.name}` ? events : null;
  let body;
  if (e?.error) body = h('p', { class: 'error' }, 'Cannot read the Events: ' + e.error);
  else if (!e?.list) body = h('p', { class: 'muted' }, 'Reading the Events…');
  else if (!e.list.length) body = h('p', { class: 'muted' }, 'No Events (the API server keeps them for an hour by default).');
  else {
    body = h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Last seen'), h('th', {}, 'Type'), h('th', {}, 'Reason'),
      h('th', {}, 'Message'), h('th', {}, 'Count'), h('th', {}, 'From'))),
    h('tbody', {}, e.list.map(ev => h('tr', { dataset: { reason: ev.reason, type: ev.type } },
      h('td', { title: `first ${new Date(ev.firstTime).toLocaleString()}` }, new Date(ev.lastTime).toLocaleString()),
      h('td', {}, badge(ev.type, ev.type === 'Warning' ? 'warn' : 'ok')),
      h('td', { class: 'ev-reason' }, ev.reason),
      h('td', { class: 'ev-message' }, ev.message),
      h('td', { class: 'num' }, String(ev.count)),
      h('td', { class: 'muted' }, ev.from || '')))));
  }
  return h('div', { class: 'svc-events' }, title, body);
}

async function loadEvents(s) {
  if (s.static) return;
  const key = `${s.namespace}/${s.name}`;
  if (events.loading || (events.key === key && Date.now() - events.at < EVENTS_MS)) return;
  events = { ...events, key, loading: true };
  try {
    const list = await get(`/services/${encodeURIComponent(s.namespace)}/${encodeURIComponent(s.name)}/events`);
    if (events.key !== key) return;
    events = { key, at: Date.now(), list, error: '', loading: false };
  } catch (e) {
    if (events.key !== key) return;
    events = { key, at: Date.now(), list: null, error: e.message, loading: false };
    if (e.status === 401) hooks.onAuth?.(e);
  }
  const sel = selected();
  if (sel && `${sel[0]}/${sel[1]}` === key) render(false);
}
