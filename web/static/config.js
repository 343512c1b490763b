// The cluster configuration card: the static services and pools, with
// forms to add, edit and delete them (every change goes through the API's
// dry run first, which shows its effect or the refused fields with the
// messages `edgelb check` prints, then is applied with If-Match), the
// history with each version's diff and a rollback, and the audit log.
// The API shows every secret (a BGP peer's password) as "(secret)" and
// keeps the stored one when a spec carries that back, so the forms send
// the whole spec as read without ever holding a password; a diff names
// the secrets that changed, from what the API says, never their values.
import { get, post, postJSON, put } from './api.js';
import { $, fill, h } from './dom.js';

// What each form edits. Keys not listed here are kept as they are.
const FORMS = {
  services: {
    title: 'static service',
    fields: [
      { key: 'name', label: 'Name', hint: 'web' },
      { key: 'vip', label: 'VIP', hint: '192.0.2.80' },
      { key: 'ports', label: 'Ports', hint: '80:8080/TCP, 53/UDP (port[:targetPort][/protocol])' },
      { key: 'backends', label: 'Backends', hint: '10.0.1.5, 10.0.1.6:8080' },
      { key: 'method', label: 'Method', options: ['', 'nat', 'dr', 'tunnel'] },
      { key: 'sourceRanges', label: 'Source ranges', hint: 'empty: everyone; 10.0.0.0/8, 2001:db8::/32' },
    ],
  },
  pools: {
    title: 'pool',
    fields: [
      { key: 'name', label: 'Name', hint: 'default' },
      { key: 'addresses', label: 'Addresses', hint: '192.0.2.0/28, 198.51.100.10-198.51.100.20' },
    ],
  },
};

let ctx = null;       // {banner, confirm, readOnly, onAuth}
let cur = null;       // the current version, as GET /config answers
let editing = null;   // {kind, index (-1: new), spec: the spec the form makes}
let checkedSpec = ''; // JSON of the spec the last dry run accepted
let roShown = null;   // whether the buttons were drawn for a viewer

export function initConfig(c) {
  ctx = c;
  $('#cfg-add-service').addEventListener('click', () => openForm('services', -1));
  $('#cfg-add-pool').addEventListener('click', () => openForm('pools', -1));
  $('#cfg-form').addEventListener('submit', e => { e.preventDefault(); check(); });
  $('#cfg-apply').addEventListener('click', apply);
  $('#cfg-cancel').addEventListener('click', closeForm);
}

// loadConfig reads the configuration when the version this host runs is
// not the one shown (or force), and the audit log every time.
export async function loadConfig(version, force, signal) {
  if (force || !cur || cur.version !== version || roShown !== ctx.readOnly()) {
    roShown = ctx.readOnly();
    let doc, history;
    try {
      [doc, history] = await Promise.all([get('/config', signal), get('/config/history', signal)]);
    } catch (e) {
      if (e.status === 404) { // this member has no cluster configuration API
        $('#config-card').hidden = true;
        return;
      }
      throw e;
    }
    cur = doc;
    $('#config-card').hidden = false;
    renderCurrent();
    renderHistory(history);
  }
  renderAudit(await get('/audit', signal));
}

const list = v => (Array.isArray(v) ? v : v == null ? [] : [v]);
const text = v => list(v).join(', ');
const split = s => s.split(/[\s,]+/).filter(Boolean);
const portText = p => `${p.port}${p.targetPort ? ':' + p.targetPort : ''}/${p.protocol || 'TCP'}`;

function parsePorts(s) {
  return split(s).map(item => {
    const m = item.match(/^([^:/]+)(?::([^/]+))?(?:\/(.+))?$/);
    if (!m) return { port: item };
    const num = v => (/^\d+$/.test(v) ? Number(v) : v);
    const p = { port: num(m[1]) };
    if (m[2] !== undefined) p.targetPort = num(m[2]);
    p.protocol = (m[3] || 'TCP').toUpperCase();
    return p;
  });
}

function actions(kind, i) {
  const ro = ctx.readOnly();
  const title = ro ? 'A viewer token cannot change anything' : '';
  return h('td', { class: 'actions' },
    h('button', { type: 'button', class: 'small ghost edit', disabled: ro, title, onclick: () => openForm(kind, i) }, 'Edit'),
    ' ',
    h('button', { type: 'button', class: 'small danger delete', disabled: ro, title, onclick: () => remove(kind, i) }, 'Delete'));
}

function renderCurrent() {
  const spec = cur.spec || {};
  fill($('#cfg-summary'), `Version ${cur.version}`,
    cur.updatedBy && ` · by ${cur.updatedBy}`,
    Date.parse(cur.updatedAt) > 0 && ` · ${new Date(cur.updatedAt).toLocaleString()}`);
  $('#cfg-summary').dataset.version = cur.version;
  const svcs = list(spec.services);
  fill($('#cfg-services tbody'), svcs.length ? svcs.map((s, i) => h('tr', { dataset: { name: s.name } },
    h('td', { class: 'name' }, s.name),
    h('td', { class: 'mono' }, s.vip || ''),
    h('td', { class: 'mono' }, list(s.ports).map(portText).join(', ')),
    h('td', { class: 'mono' }, text(s.backends)),
    actions('services', i))) : h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No static services.')));
  const pools = list(spec.pools);
  fill($('#cfg-pools tbody'), pools.length ? pools.map((p, i) => h('tr', { dataset: { name: p.name } },
    h('td', { class: 'name' }, p.name),
    h('td', { class: 'mono' }, text(p.addresses)),
    actions('pools', i))) : h('tr', {}, h('td', { colspan: 3, class: 'muted' }, 'No pools.')));
  const ro = ctx.readOnly();
  $('#cfg-add-service').disabled = ro;
  $('#cfg-add-pool').disabled = ro;
}

function renderHistory(history) {
  const vs = [...history].reverse();
  fill($('#cfg-history tbody'), vs.map((v, i) => h('tr', { dataset: { version: v.version } },
    h('td', { class: 'mono' }, `v${v.version}`),
    h('td', {}, Date.parse(v.updatedAt) > 0 ? new Date(v.updatedAt).toLocaleString() : ''),
    h('td', {}, v.updatedBy || '', v.member && h('span', { class: 'muted' }, ` on ${v.member}`)),
    h('td', {}, v.current && badge('current', 'ok'), v.lost && badge('lost in a partition', 'warn')),
    h('td', { class: 'actions' },
      h('button', { type: 'button', class: 'small ghost diff', onclick: () => showDiff(v.version, vs[i + 1]?.version, v.secretsChanged) }, 'Diff'),
      ' ',
      !v.current && h('button', {
        type: 'button', class: 'small rollback', disabled: ctx.readOnly(),
        title: ctx.readOnly() ? 'A viewer token cannot change anything' : '',
        onclick: () => rollback(v.version),
      }, 'Roll back')))));
}

function renderAudit(entries) {
  const es = [...entries].reverse().slice(0, 50);
  fill($('#cfg-audit tbody'), es.length ? es.map(e => h('tr', {},
    h('td', {}, new Date(e.time).toLocaleString()),
    h('td', { class: 'who' }, e.who),
    h('td', { class: 'mono' }, e.from),
    h('td', { class: 'mono what' }, e.what),
    h('td', { class: 'mono' }, e.version ? `v${e.version}` : ''),
    h('td', { class: 'result', title: e.error || '' }, !e.result || e.result < 300
      ? badge(e.result ? String(e.result) : 'ok', 'ok')
      : badge(`refused ${e.result}`, 'bad'),
    e.error && h('div', { class: 'detail' }, e.error)))) : h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No changes through this host yet.')));
}

function badge(t, kind) { return h('span', { class: 'badge ' + kind }, t); }

// ---- the form ----

function openForm(kind, index) {
  const f = FORMS[kind];
  const item = index >= 0 ? list(cur.spec[kind])[index] : {};
  editing = { kind, index, item };
  checkedSpec = '';
  $('#cfg-form-title').textContent = index >= 0 ? `Edit ${f.title} ${item.name}` : `Add a ${f.title}`;
  fill($('#cfg-fields'), f.fields.map(fd => {
    let v = item[fd.key];
    if (fd.key === 'ports') v = list(v).map(portText).join(', ');
    else if (Array.isArray(v)) v = v.join(', ');
    const input = fd.options
      ? h('select', { name: fd.key, dataset: { field: fd.key } }, fd.options.map(o => h('option', { value: o, selected: (v || '') === o }, o || 'default')))
      : h('input', { name: fd.key, dataset: { field: fd.key }, value: v ?? '', placeholder: fd.hint, autocomplete: 'off' });
    input.addEventListener('input', stale);
    return h('label', { class: 'field' }, h('span', {}, fd.label), input, h('div', { class: 'field-error', dataset: { for: fd.key } }));
  }));
  fill($('#cfg-form-errors'));
  fill($('#cfg-effect'));
  $('#cfg-apply').disabled = true;
  $('#cfg-form').hidden = false;
  $('#cfg-fields input')?.focus();
}

function closeForm() {
  editing = null;
  $('#cfg-form').hidden = true;
}

// stale: the form changed since its dry run.
function stale() {
  checkedSpec = '';
  $('#cfg-apply').disabled = true;
  fill($('#cfg-effect'));
}

// formSpec is the current spec with the form's item in place.
function formSpec() {
  const { kind, index, item } = editing;
  const next = { ...item };
  for (const fd of FORMS[kind].fields) {
    const raw = $(`#cfg-fields [data-field="${fd.key}"]`).value.trim();
    if (fd.key === 'ports') next.ports = parsePorts(raw);
    else if (['backends', 'sourceRanges', 'addresses'].includes(fd.key)) next[fd.key] = split(raw);
    else next[fd.key] = raw;
    if (raw === '' && fd.key !== 'name' && fd.key !== 'vip') delete next[fd.key];
  }
  const items = [...list(cur.spec[kind])];
  if (index >= 0) items[index] = next;
  else items.push(next);
  editing.at = index >= 0 ? index : items.length - 1;
  return { ...cur.spec, [kind]: items };
}

async function check() {
  const spec = formSpec();
  fill($('#cfg-form-errors'));
  document.querySelectorAll('#cfg-fields .field-error').forEach(el => fill(el));
  document.querySelectorAll('#cfg-fields .invalid').forEach(el => el.classList.remove('invalid'));
  const res = await dryRun(spec);
  if (!res) return;
  if (!res.valid) {
    showErrors(res.errors);
    return;
  }
  checkedSpec = JSON.stringify(spec);
  fill($('#cfg-effect'), effectList(res.effect));
  $('#cfg-apply').disabled = false;
}

// showErrors puts each error next to its field when it is the edited
// item's, and above the form otherwise.
function showErrors(errors) {
  const { kind, at } = editing;
  const re = new RegExp(`^spec\\.${kind}\\[${at}\\](?:\\.([A-Za-z]+))?`);
  const rest = [];
  for (const e of errors) {
    const m = e.field.match(re);
    const key = m && (m[1] || 'name');
    const slot = key && $(`#cfg-fields .field-error[data-for="${key}"]`);
    if (slot) {
      slot.append(h('div', {}, e.message));
      $(`#cfg-fields [data-field="${key}"]`).classList.add('invalid');
    } else {
      rest.push(h('li', {}, h('span', { class: 'mono' }, e.field), ': ', e.message));
    }
  }
  fill($('#cfg-form-errors'), rest.length && h('ul', {}, rest));
}

const EFFECTS = [
  ['servicesAdded', 'Services added'], ['servicesRemoved', 'Services removed'], ['servicesChanged', 'Services changed'],
  ['vipsAdded', 'VIPs added'], ['vipsRemoved', 'VIPs removed'],
  ['poolsAdded', 'Pools added'], ['poolsRemoved', 'Pools removed'], ['poolsChanged', 'Pools changed'],
  ['other', 'Other keys changed'],
  ['secretsChanged', 'Secrets changed (values not shown)'],
];

// dryRun asks the API what spec would do ({valid, errors, effect}); null
// when the request failed (and said so).
async function dryRun(spec) {
  try {
    return await postJSON('/config/validate', spec);
  } catch (e) {
    failed('check', e);
    return null;
  }
}

const errorText = errors => errors.map(e => `${e.field}: ${e.message}`).join('; ');

function effectText(eff) {
  return EFFECTS.filter(([k]) => eff[k]?.length).map(([k, label]) => `${label}: ${eff[k].join(', ')}`).join('. ') || 'Nothing would change.';
}

function effectList(eff) {
  const items = EFFECTS.filter(([k]) => eff && eff[k] && eff[k].length)
    .map(([k, label]) => h('li', { dataset: { effect: k } }, `${label}: `, h('span', { class: 'mono' }, eff[k].join(', '))));
  return h('div', { class: 'effect' }, h('strong', {}, 'The dry run accepts it. '),
    items.length ? h('ul', {}, items) : 'Nothing would change.');
}

async function apply() {
  const spec = formSpec();
  if (JSON.stringify(spec) !== checkedSpec) return stale();
  await putSpec(spec, `${FORMS[editing.kind].title} ${editing.index >= 0 ? 'changed' : 'added'}`);
}

async function putSpec(spec, what) {
  try {
    const doc = await put('/config', spec, cur.version);
    ctx.banner('info', `Version ${doc.version} applied: ${what}. Every member takes it up.`);
    closeForm();
  } catch (e) {
    if (e.status === 422 && editing) return showErrors(e.body?.errors || []);
    if (editing) stale();
    failed('apply', e);
  }
  await loadConfig(0, true).catch(() => {});
}

async function remove(kind, i) {
  const item = list(cur.spec[kind])[i];
  const spec = { ...cur.spec, [kind]: list(cur.spec[kind]).filter((_, j) => j !== i) };
  const res = await dryRun(spec);
  if (!res) return;
  if (!res.valid) {
    ctx.banner('error', `Cannot delete ${item.name}: ${errorText(res.errors)}`);
    return;
  }
  if (!await ctx.confirm(`Delete ${FORMS[kind].title} ${item.name}?`, effectText(res.effect), 'Delete')) return;
  closeForm();
  await putSpec(spec, `${FORMS[kind].title} ${item.name} deleted`);
}

async function rollback(n) {
  // The API's own dry run of the rollback: it compares version n's
  // secrets, which this page never sees, with the current ones.
  let res;
  try {
    res = await post(`/config/rollback/${n}?dryRun=true`);
  } catch (e) {
    return failed('check the rollback', e);
  }
  const said = res.valid ? effectText(res.effect) : `It does not validate any more: ${errorText(res.errors)}`;
  if (!await ctx.confirm(`Roll back to version ${n}?`, `A new version equal to version ${n}. ${said}`, 'Roll back')) return;
  try {
    const doc = await post(`/config/rollback/${n}`);
    ctx.banner('info', `Version ${doc.version} applied: a rollback to version ${n}.`);
  } catch (e) {
    failed('roll back', e);
  }
  await loadConfig(0, true).catch(() => {});
}

// ---- diff ----

// flatten lists a spec's leaves as "path = value" lines.
function flatten(v, path, out) {
  if (v && typeof v === 'object') {
    const keys = Object.keys(v);
    if (!keys.length) out.push(`${path} = ${Array.isArray(v) ? '[]' : '{}'}`);
    for (const k of keys) flatten(v[k], Array.isArray(v) ? `${path}[${k}]` : path ? `${path}.${k}` : k, out);
  } else {
    out.push(`${path} = ${JSON.stringify(v)}`);
  }
  return out;
}

// showDiff shows what changed from version prevN to n; secrets are the
// secrets that changed, which the specs (where every secret is
// "(secret)") cannot show.
async function showDiff(n, prevN, secrets) {
  const pre = $('#cfg-diff');
  try {
    const [doc, prev] = await Promise.all([get(`/config/history/${n}`), prevN ? get(`/config/history/${prevN}`) : null]);
    const a = new Set(prev ? flatten(prev.spec, '', []) : []);
    const b = new Set(flatten(doc.spec, '', []));
    const lines = [
      ...[...a].filter(l => !b.has(l)).map(l => h('div', { class: 'del' }, '- ' + l)),
      ...[...b].filter(l => !a.has(l)).map(l => h('div', { class: 'add' }, '+ ' + l)),
      ...(prev ? list(secrets) : []).map(s => h('div', { class: 'secret' }, `~ ${s} changed (secret: not shown)`)),
    ];
    fill(pre, h('div', { class: 'muted' }, prev ? `version ${prevN} → ${n}` : `version ${n} (the oldest kept)`),
      lines.length ? lines : h('div', { class: 'muted' }, 'no difference'));
    pre.dataset.version = n;
    pre.hidden = false;
  } catch (e) {
    failed('read the history', e);
  }
}

function failed(what, e) {
  if (e.status === 401 || e.status === 403) return ctx.onAuth(e);
  let t = `Cannot ${what}: ${e.message}`;
  if (e.status === 409) t += ' The form was checked against an older version: check it again.';
  ctx.banner('error', t);
}
