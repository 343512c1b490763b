// The dashboard: sign-in, rendering of the API's state, live events,
// traffic charts and drain/undrain. Everything comes from /api/v1.
import { del, get, post, postJSON, setToken, streamEvents, token } from './api.js';
import { $, fill, h } from './dom.js';
import { initConfig, loadConfig } from './config.js';
import { initService, serviceHref, update as updateService } from './service.js';
import { colorOf, lineChart, si } from './chart.js';

// The poll interval for the state and the counters: 5 s, or ?refresh=N seconds.
const REFRESH_MS = 1000 * Math.max(1, Number(new URLSearchParams(location.search).get('refresh')) || 5);
const SOON_MS = 150;            // coalesces a burst of events into one refresh
const SPAN_MS = 5 * 60 * 1000;  // the charts' time window
const MIN_SAMPLE_MS = 0.8 * REFRESH_MS; // shortest interval a rate is computed over
const MAX_EVENTS = 200;
const READONLY = 'edgelb.readonly'; // set once the API refused a drain with 403
// Event types after which the state is read again at once.
const CHANGES = new Set(['ownership', 'drain', 'member', 'health', 'allocation', 'audit']);

let live = null;   // {ac, timer, soon} while signed in
let data = null;   // {status, members, vips, services} of the last refresh
let shown = {};    // JSON of what each section shows, to skip unchanged renders
let samples = [];  // [{t, conns: {svc: rate}, bits: {svc: rate}}]
let prev = null;   // {t, totals} of the last sample

const readOnly = () => sessionStorage.getItem(READONLY) === '1';

function start() {
  $('#login-form').addEventListener('submit', e => {
    e.preventDefault();
    signIn($('#token').value.trim());
  });
  $('#login-none').addEventListener('click', () => signIn(''));
  $('#signout').addEventListener('click', () => signOut());
  $('#banner-close').addEventListener('click', hideBanner);
  $('#member-add').addEventListener('submit', e => {
    e.preventDefault();
    addMember($('#member-address').value.trim());
  });
  initConfig({
    banner: showBanner, confirm, readOnly,
    onAuth: e => {
      if (e.status === 401) return signOut(e.message);
      sessionStorage.setItem(READONLY, '1');
      showBanner('error', e.message);
      refresh();
    },
  });
  initService({ onAuth: e => signOut(e.message) });
  if (token() === null) showLogin();
  else open();
}

async function signIn(t) {
  setToken(t);
  sessionStorage.removeItem(READONLY);
  try {
    await get('/status');
  } catch (e) {
    setToken(null);
    showLogin(e.message);
    return;
  }
  open();
}

function signOut(message) {
  close();
  setToken(null);
  sessionStorage.removeItem(READONLY);
  showLogin(message);
}

function showLogin(message) {
  $('#app').hidden = true;
  $('#signout').hidden = true;
  $('#login').hidden = false;
  $('#node').textContent = '';
  $('#updated').textContent = '';
  const err = $('#login-error');
  err.hidden = !message;
  err.textContent = message || '';
  $('#token').value = '';
  $('#token').focus();
}

// open shows the dashboard and starts the refresh timer and the event stream.
function open() {
  data = null;
  shown = {};
  samples = [];
  prev = null;
  fill($('#events'));
  hideBanner();
  $('#login').hidden = true;
  $('#app').hidden = false;
  $('#signout').hidden = false;
  const ac = new AbortController();
  live = { ac, timer: setInterval(refresh, REFRESH_MS), soon: 0 };
  refresh();
  streamEvents({ signal: ac.signal, onEvent, onState: streamState });
}

function close() {
  if (!live) return;
  live.ac.abort();
  clearInterval(live.timer);
  clearTimeout(live.soon);
  live = null;
  streamState('off');
}

// refresh reads the state; calls while one is running make it run once more.
let running = null, again = false;
async function refresh() {
  if (running) {
    again = true;
    return running;
  }
  running = (async () => {
    do {
      again = false;
      await load();
    } while (again && live);
  })();
  try { await running; } finally { running = null; }
}

function refreshSoon() {
  if (!live) return;
  clearTimeout(live.soon);
  live.soon = setTimeout(refresh, SOON_MS);
}

async function load() {
  if (!live) return;
  const signal = live.ac.signal;
  const updated = $('#updated');
  try {
    const [status, members, vips, services, bgp] = await Promise.all(
      ['/status', '/members', '/vips', '/services', '/bgp'].map(p => get(p, signal)));
    if (!live || live.ac.signal !== signal) return; // signed out meanwhile
    data = { status, members, vips, services, bgp };
    sample(services);
    render();
    const self = members.find(m => m.self);
    await loadConfig(self ? self.configVersion : 0, false, signal);
    updated.className = 'muted';
    updated.textContent = 'updated ' + clock(new Date());
  } catch (e) {
    if (e.name === 'AbortError' || !live) return;
    if (e.status === 401) return signOut(e.message);
    updated.className = 'error';
    updated.textContent = 'update failed: ' + e.message;
  }
}

// ---- events ----

function streamState(state, message) {
  const el = $('#stream');
  el.dataset.state = state;
  el.title = message || 'Live event stream';
  el.textContent = {
    off: 'events: off', connecting: 'events: connecting…', live: 'events: live',
    error: 'events: reconnecting…', unauthorized: 'events: refused',
  }[state];
  if (state === 'unauthorized') signOut(message);
}

function onEvent(ev) {
  const e = typeof ev.data === 'object' && ev.data ? ev.data : { type: ev.type, message: String(ev.data) };
  const fields = Object.entries(e.fields || {}).filter(([, v]) => v !== '').map(([k, v]) => `${k}=${v}`).join(' ');
  const list = $('#events');
  list.prepend(h('li', { dataset: { type: ev.type, id: ev.id } },
    h('time', { datetime: e.time || '' }, clock(e.time ? new Date(e.time) : new Date())),
    h('span', { class: 'tag ev-' + ev.type }, ev.type),
    h('span', { class: 'msg' }, e.message),
    fields && h('span', { class: 'fields' }, fields)));
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
  if (CHANGES.has(ev.type)) refreshSoon();
}

// ---- rendering ----

// changed records what a section shows and says whether it differs from
// what it showed before, so unchanged sections keep their DOM.
function changed(key, value) {
  const j = JSON.stringify(value);
  if (shown[key] === j) return false;
  shown[key] = j;
  return true;
}

function render() {
  const { status, members, vips, services, bgp } = data;
  $('#node').textContent = `${status.node} · ${status.version}`;
  if (changed('summary', status)) renderSummary(status);
  if (changed('members', [members, readOnly()])) renderMembers(members);
  if (changed('vips', vips)) renderVIPs(vips);
  if (changed('pools', status.pools)) renderPools(status.pools || []);
  if (changed('bgp', bgp)) renderBGP(bgp);
  if (changed('services', [services, readOnly()])) renderServices(services);
  updateService(services, vips);
  renderCharts();
}

function card(label, value, detail, state) {
  return h('div', { class: 'card stat', dataset: { state: state || '' } },
    h('div', { class: 'label' }, label), h('div', { class: 'value' }, value),
    detail && h('div', { class: 'detail' }, detail));
}

function renderSummary(s) {
  const c = s.counts;
  const health = !s.healthy ? 'unhealthy' : s.draining ? 'draining' : s.ready ? 'healthy' : 'not ready';
  fill($('#summary'),
    card('This host', s.node, [s.leader ? 'Service status writer' : s.leaderName ? `writer: ${s.leaderName}` : 'not the writer',
      Date.parse(s.started) > 0 && ` · up since ${new Date(s.started).toLocaleString()}`]),
    card('Health', health, s.problem || `dataplane ${s.dataplane}`, health === 'healthy' ? 'ok' : health === 'unhealthy' ? 'bad' : 'warn'),
    card('Members', `${c.healthyMembers}/${c.members}`, 'healthy', c.healthyMembers === c.members ? 'ok' : 'warn'),
    card('VIPs', `${c.ownedVIPs}/${c.vips}`, 'owned by this host'),
    card('Services', String(c.services), `${c.healthyBackends}/${c.backends} backends healthy`,
      c.healthyBackends === c.backends ? 'ok' : 'warn'),
    s.dataPath && !s.dataPath.ok && card('Data path', 'failing',
      (s.dataPath.gaveUp ? 'owning no VIPs while another member\'s data path works: ' : 'keeping the VIPs, no other member has a working data path: ') + (s.dataPath.problem || ''), 'bad'),
    s.kubernetes && s.kubernetes.problem && card('Kubernetes', 'access problem', s.kubernetes.problem, 'bad'),
    s.configUnapplied && card('Cluster configuration', `cannot apply v${s.configUnapplied}`,
      'this host\'s config file refuses the committed version: it owns no VIPs until a version it fits is committed (see Health)', 'bad'),
    s.configFileDiffers && card('Config file', 'not used',
      "its pools, services, ... differ from the cluster configuration: `edgelb config diff -f FILE` shows how, `edgelb config apply -f FILE` makes them the next version", 'warn'));
}

function badge(text, kind) { return h('span', { class: 'badge ' + kind }, text); }

function renderMembers(members) {
  const ro = readOnly();
  $('#readonly').hidden = !ro;
  // The latest cluster configuration is the highest version a live
  // member has committed, named exactly (number and hash: two versions
  // of one number are not in sync); a member with another is behind, and
  // one that cannot apply it says so.
  const live = members.filter(m => m.alive && m.configVersion);
  // This host's, among members of the highest number.
  const top = live.reduce((a, m) => (!a || m.configVersion > a.configVersion || m.configVersion === a.configVersion && m.self ? m : a), null);
  const latest = top ? (top.configId || String(top.configVersion)) : '';
  const idOf = m => m.configId || String(m.configVersion);
  fill($('#members tbody'), members.map(m => {
    const verb = m.draining ? 'undrain' : 'drain';
    const cv = m.configVersion || 0;
    return h('tr', { dataset: { member: m.name } },
      h('td', { class: 'name' }, m.name, m.self && h('span', { class: 'tag' }, 'this host')),
      h('td', { class: 'mono' }, m.address),
      h('td', { class: 'state' },
        !m.alive ? (m.restarting ? badge('restarting', 'warn') : badge('dead', 'bad'))
          : m.witness ? h('span', { title: 'An edgelb witness: it votes for the quorum and the cluster configuration and never owns a VIP.' }, badge('witness', 'ok'))
            : m.healthy ? badge('healthy', 'ok') : badge('unhealthy', 'bad'),
        m.alive && m.restarting && badge('restarting', 'warn'),
        m.draining && badge('draining', 'warn'),
        m.configured === false && h('span', { title: 'Not in the configured cluster: it does not vote and owns no VIP. Add it, or stop it if it was removed.' }, badge('not configured', 'warn')),
        m.problem && h('div', { class: 'detail' }, m.problem)),
      h('td', { class: 'config', title: cv ? `version ${m.configId || cv} of the cluster configuration` : 'no cluster configuration reported' },
        !m.alive || !cv ? '—' : h('span', {}, `v${cv} `,
          m.unapplied ? badge(`cannot apply v${m.unapplied}`, 'bad')
            : idOf(m) === latest ? badge('in sync', 'ok')
              : cv === top.configVersion ? badge('differs', 'bad') : badge('behind', 'warn'))),
      h('td', { class: 'owned mono' }, (m.vips || []).join(', ') || '—'),
      h('td', { class: 'actions' },
        m.alive && !m.witness && h('button', {
          type: 'button', class: `${verb} small${verb === 'drain' ? ' danger' : ''}`, disabled: ro,
          title: ro ? 'A viewer token cannot change anything' : '',
          onclick: () => drain(m, verb),
        }, verb === 'drain' ? 'Drain' : 'Undrain'),
        m.configured && ' ',
        m.configured && h('button', {
          type: 'button', class: 'remove small danger', disabled: ro,
          title: ro ? 'A viewer token cannot change anything' : 'Remove from the configured cluster',
          onclick: () => removeMember(m),
        }, 'Remove')));
  }));
  $('#member-address').disabled = ro;
  $('#member-add-submit').disabled = ro;
}

function renderVIPs(vips) {
  fill($('#vips tbody'), vips.map(v => h('tr', { dataset: { vip: v.address } },
    h('td', { class: 'mono' }, v.address),
    h('td', {}, v.announce === 'bgp'
      ? h('span', { class: 'owner', title: 'announced over BGP by every serving host that holds it' }, 'every host (BGP)')
      : h('span', { class: 'owner' + (v.owner ? '' : ' bad') }, v.owner || 'nobody'),
      v.local && h('span', { class: 'tag' }, 'this host'),
      (v.refusedBy || []).length > 0 && badge('refused by ' + v.refusedBy.join(', '), 'warn'),
      v.problem && h('div', { class: 'detail' }, v.problem)),
    h('td', { class: 'mono' }, (v.services || []).map(serviceLabel).join(', ') || '—'))));
}

function renderPools(pools) {
  fill($('#pools'), pools.length ? pools.map(p => {
    const pct = p.size ? Math.min(100, 100 * p.used / p.size) : 0;
    return h('div', { class: 'pool', dataset: { pool: p.name } },
      h('div', { class: 'row' }, h('span', {}, p.name), h('span', { class: 'muted' }, `${p.used} of ${p.size} used`)),
      h('div', { class: 'bar', role: 'progressbar', 'aria-valuenow': Math.round(pct), 'aria-valuemin': 0, 'aria-valuemax': 100 },
        h('div', { style: `width:${pct}%`, class: pct > 90 ? 'full' : '' })));
  }) : h('p', { class: 'muted' }, 'No address pools are configured.'));
}

// renderBGP shows this host's BGP speaker (GET /api/v1/bgp): hidden when
// no bgp section is configured.
function renderBGP(b) {
  $('#bgp-card').hidden = !b?.enabled;
  if (!b?.enabled) return;
  const routes = b.advertised || [];
  $('#bgp-summary').textContent = `AS ${b.asn} · router ID ${b.routerID} · ` +
    (b.serving ? `advertising ${routes.length} route${routes.length === 1 ? '' : 's'}` :
      b.gracefulShutdown ? `draining: graceful-shutdown sent on ${routes.length} route${routes.length === 1 ? '' : 's'}, withdrawing` :
        'not serving: nothing advertised');
  fill($('#bgp tbody'), (b.peers || []).map(p => h('tr', { dataset: { peer: p.address } },
    h('td', { class: 'mono' }, p.address),
    h('td', {}, String(p.asn)),
    h('td', { class: 'state' }, badge(p.state, p.established ? 'ok' : 'bad'),
      p.established && p.uptimeSeconds ? h('span', { class: 'muted' }, ` ${Math.round(p.uptimeSeconds)}s`) : null),
    h('td', {}, p.bfd || '—'),
    h('td', {}, String(p.prefixesSent)))));
}

const serviceLabel = s => s.startsWith('_static/') ? s.slice('_static/'.length) + ' (static)' : s;
const serviceKey = s => s.static ? s.name : `${s.namespace}/${s.name}`;

function renderServices(services) {
  const rows = [];
  for (const s of services) {
    const ports = s.ports && s.ports.length ? s.ports : [null];
    ports.forEach((p, i) => {
      const tr = h('tr', { dataset: { service: `${s.namespace}/${s.name}` }, class: i === 0 ? 'first' : '' });
      if (i === 0) {
        tr.append(
          h('td', { rowspan: ports.length, class: 'name' },
            h('a', { href: serviceHref(s), class: 'svc-link', title: 'state, owner, backends and Events' }, serviceKey(s)),
            s.static && h('span', { class: 'tag' }, 'static')),
          h('td', { rowspan: ports.length, class: 'mono external-ip' }, (s.vips || []).join(', ') || h('span', { class: 'muted' }, 'pending')));
      }
      if (!p && s.state === 'pending') {
        tr.append(h('td', { colspan: 4, class: 'pending-why' }, badge('no address', 'warn'), h('div', { class: 'detail problem' }, s.problem || '')));
      } else if (!p) {
        tr.append(h('td', { colspan: 4, class: 'muted' }, 'no ports'));
      } else {
        tr.append(
          h('td', { class: 'mono' }, `${p.vip}:${p.port}/${p.protocol}`, p.name && h('div', { class: 'detail' }, p.name),
            sourceRanges(p),
            p.problem && h('div', { class: 'detail problem' }, p.problem)),
          h('td', {}, [p.scheduler, p.method, p.persistenceSeconds ? `sticky ${p.persistenceSeconds}s` : ''].filter(Boolean).join(' · ')),
          h('td', {}, h('ul', { class: 'backends' }, (p.backends || []).map(b => h('li', { dataset: { health: b.health } },
            h('span', { class: 'dot', title: b.health }),
            h('span', { class: 'mono' }, b.address),
            h('span', { class: 'muted' }, ` w${b.weight}`, b.node ? ` · ${b.node}` : '', ` · ${b.stats.activeConnections} active`),
            b.terminating && h('span', { class: 'tag' }, 'terminating'),
            b.adminState === 'drain' && h('span', { class: 'tag drained' }, 'drained'),
            backendButtons(s, b.address, b.adminState === 'drain' ? ['enable', 'disable'] : ['drain', 'disable']))),
            i === 0 && (s.disabledBackends || []).map(a => h('li', { class: 'disabled', dataset: { health: 'disabled' } },
              h('span', { class: 'dot', title: 'disabled' }),
              h('span', { class: 'mono' }, a),
              h('span', { class: 'tag' }, 'disabled'),
              backendButtons(s, a, ['enable']))))),
          h('td', { class: 'num' }, si(p.stats.connections)));
      }
      rows.push(tr);
    });
  }
  fill($('#services tbody'), rows.length ? rows : h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No services.')));
}

// sourceRanges says which clients a port takes (loadBalancerSourceRanges,
// a static service's sourceRanges): absent, everyone; empty, nobody.
function sourceRanges(p) {
  if (!p.sourceRanges) return null;
  return h('div', { class: 'detail source-ranges', title: 'only these clients may connect' },
    'from ', p.sourceRanges.length ? p.sourceRanges.join(', ') : 'nobody');
}

// backendButtons are the admin's actions on one backend of a service.
function backendButtons(s, address, verbs) {
  const ro = readOnly();
  return h('span', { class: 'be-actions' }, verbs.map(v => h('button', {
    type: 'button', class: `small ghost be-${v}`, dataset: { backend: address }, disabled: ro,
    title: ro ? 'A viewer token cannot change anything' : '',
    onclick: () => backendState(s, address, v),
  }, v)));
}

const BACKEND_EFFECT = {
  enable: 'It takes new connections again on every member.',
  drain: 'Weight 0 on every member: its open connections stay, it gets no new one.',
  disable: 'It leaves the table on every member: its open connections end.',
};

async function backendState(s, address, verb) {
  const label = verb[0].toUpperCase() + verb.slice(1);
  if (!await confirm(`${label} ${address} of ${serviceKey(s)}?`, BACKEND_EFFECT[verb], label)) return;
  try {
    const doc = await post(`/services/${encodeURIComponent(s.namespace)}/${encodeURIComponent(s.name)}/backends/${encodeURIComponent(address)}/${verb}`);
    showBanner('info', `Version ${doc.version} applied: ${address} of ${serviceKey(s)} ${{ enable: 'enabled', drain: 'drained', disable: 'disabled' }[verb]}.`);
  } catch (e) {
    if (e.status === 401) return signOut(e.message);
    if (e.status === 403) sessionStorage.setItem(READONLY, '1');
    showBanner('error', `Cannot ${verb} ${address}: ${e.message}`);
  }
  refresh();
}

// ---- traffic ----

// sample turns the services' counters into rates per service.
function sample(services) {
  const t = Date.now();
  const totals = {};
  for (const s of services) {
    let conns = 0, bytes = 0;
    for (const p of s.ports || []) {
      conns += p.stats.connections;
      bytes += p.stats.bytesIn + p.stats.bytesOut;
    }
    totals[serviceKey(s)] = { conns, bytes };
  }
  if (prev && t - prev.t < MIN_SAMPLE_MS) return;
  if (prev) {
    const dt = (t - prev.t) / 1000;
    const conns = {}, bits = {};
    for (const [k, v] of Object.entries(totals)) {
      const p = prev.totals[k];
      if (!p || v.conns < p.conns || v.bytes < p.bytes) continue; // new or reset counters
      conns[k] = (v.conns - p.conns) / dt;
      bits[k] = 8 * (v.bytes - p.bytes) / dt;
    }
    samples.push({ t, conns, bits });
    samples = samples.filter(s => t - s.t <= SPAN_MS);
  }
  prev = { t, totals };
}

function renderCharts() {
  const el = $('#charts');
  if (/^none\b/.test(data.status.dataplane)) {
    fill(el, h('p', { class: 'muted' }, 'The announce-only dataplane (backend: none) forwards nothing itself, so there are no traffic counters.'));
    return;
  }
  if (!samples.length) {
    fill(el, h('p', { class: 'muted' }, 'Rates appear after two polls of the counters.'));
    return;
  }
  const now = Date.now();
  // The window grows with the history, up to SPAN_MS, so that lines fill
  // the chart from the first minutes on.
  const span = Math.min(SPAN_MS, Math.max(20 * REFRESH_MS, now - samples[0].t + REFRESH_MS));
  const last = samples[samples.length - 1];
  const names = Object.keys(last.conns).sort();
  fill(el,
    h('h3', {}, 'New connections per second'),
    lineChart({ title: 'connections per second', unit: '/s', points: samples.map(s => ({ t: s.t, values: s.conns })), span, now }),
    h('h3', {}, 'Throughput (in + out)'),
    lineChart({ title: 'bits per second', unit: 'b/s', points: samples.map(s => ({ t: s.t, values: s.bits })), span, now }),
    h('ul', { class: 'legend' }, names.map(n => h('li', { dataset: { series: n } },
      h('span', { class: 'swatch', style: `background:${colorOf(n)}` }), n,
      h('span', { class: 'muted' }, ` ${si(last.conns[n])} conn/s · ${si(last.bits[n])}b/s`)))));
}

// ---- drain ----

async function drain(m, verb) {
  const owned = (m.vips || []).join(', ');
  const ok = await confirm(
    verb === 'drain' ? `Drain ${m.name}?` : `Undrain ${m.name}?`,
    verb === 'drain'
      ? `${m.name} hands ${owned ? `its VIPs (${owned})` : 'any VIPs it owns'} over to the other members and takes no new ones until it is undrained.`
      : `${m.name} becomes eligible to own VIPs again.`,
    verb === 'drain' ? 'Drain' : 'Undrain');
  if (!ok) return;
  try {
    await post(`/members/${encodeURIComponent(m.name)}/${verb}`);
    showBanner('info', verb === 'drain' ? `${m.name} is draining: its VIPs move to other members.` : `${m.name} is back in service.`);
  } catch (e) {
    if (e.status === 401) return signOut(e.message);
    if (e.status === 403) sessionStorage.setItem(READONLY, '1');
    let text = `Cannot ${verb} ${m.name}: ${e.message}`;
    showBanner('error', text);
  }
  refresh();
}

// ---- adding and removing members ----

async function addMember(address) {
  if (!address) return;
  const ok = await confirm(`Add ${address}?`,
    `${address} becomes a configured member: it votes on the cluster configuration and may own VIPs. ` +
    'Start edgelb on that host afterwards: it joins the cluster and takes the committed configuration.', 'Add');
  if (!ok) return;
  await memberChange(() => postJSON('/members', { address }), `add ${address}`,
    r => `${r.member} added: start edgelb on it. Configured members: ${r.members.join(', ')}.`);
  $('#member-address').value = '';
}

async function removeMember(m) {
  const owned = (m.vips || []).join(', ');
  const ok = await confirm(`Remove ${m.name}?`,
    `${m.address} leaves the configured cluster: it stops voting and ${owned ? `hands its VIPs (${owned}) over` : 'owns no VIP'} from then on. ` +
    'Stop edgelb on that host afterwards.', 'Remove');
  if (!ok) return;
  await memberChange(() => del(`/members/${encodeURIComponent(m.address)}`), `remove ${m.name}`,
    r => `${r.member} removed: stop edgelb on it. Configured members: ${r.members.join(', ')}.`);
}

async function memberChange(send, what, done) {
  try {
    showBanner('info', done(await send()));
  } catch (e) {
    if (e.status === 401) return signOut(e.message);
    if (e.status === 403) sessionStorage.setItem(READONLY, '1');
    showBanner('error', `Cannot ${what}: ${e.message}`);
  }
  refresh();
}

function confirm(title, text, label) {
  const d = $('#confirm');
  $('#confirm-title').textContent = title;
  $('#confirm-text').textContent = text;
  $('#confirm-ok').textContent = label;
  d.returnValue = '';
  d.showModal();
  return new Promise(resolve => d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true }));
}

let bannerTimer = 0;
function showBanner(kind, text) {
  const b = $('#banner');
  b.className = 'banner ' + kind;
  $('#banner-text').textContent = text;
  b.hidden = false;
  clearTimeout(bannerTimer);
  if (kind === 'info') bannerTimer = setTimeout(hideBanner, 10000);
}

function hideBanner() {
  clearTimeout(bannerTimer);
  $('#banner').hidden = true;
}

function clock(d) { return d.toLocaleTimeString([], { hour12: false }); }

start();
