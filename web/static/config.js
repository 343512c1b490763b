// The cluster configuration card: the static services, pools, BGP peers,
// dataplane and health check defaults, with forms (forms.js) to add, edit
// and delete them (every change goes through the API's
// dry run first, which shows its effect or the refused fields with the
// messages `edgelb check` prints, then is applied with If-Match), the
// history with each version's diff and a rollback, and the audit log.
// The API shows every secret (a BGP peer's password) as "(secret)" and
// keeps the stored one when a spec carries that back, so the forms send
// the whole spec as read without ever holding a password; a diff names
// the secrets that changed, from what the API says, never their values.
import { get, post, postJSON, put } from './api.js';
import { $, fill, h } from './dom.js';
import {
  FORMS, SECRET, at, delPath, getPath, inputFor, list, num, parsePorts, setPath, split, text, portText,
} from './forms.js';

let ctx = null;       // {banner, confirm, readOnly, onAuth}
let cur = null;       // the current version, as GET /config answers
let editing = null;   // {kind, index (-1: new), item, at}
let checkedSpec = ''; // JSON of the spec the last dry run accepted
let roShown = null;   // whether the buttons were drawn for a viewer

export function initConfig(c) {
  ctx = c;
  $('#cfg-add-service').addEventListener('click', () => openForm('services', -1));
  $('#cfg-add-pool').addEventListener('click', () => openForm('pools', -1));
  $('#cfg-add-peer').addEventListener('click', () => openForm('peers', -1));
  $('#cfg-edit-bgp').addEventListener('click', () => openForm('bgp', 0));
  $('#cfg-remove-bgp').addEventListener('click', removeBGP);
  $('#cfg-edit-dataplane').addEventListener('click', () => openForm('dataplane', 0));
  $('#cfg-edit-healthcheck').addEventListener('click', () => openForm('healthCheck', 0));
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
  } else {
    // The contact changes without a new version.
    cur.contact = (await get('/config', signal)).contact;
  }
  renderContact();
  renderAudit(await get('/audit', signal));
}


function actions(kind, i) {
  const ro = ctx.readOnly();
  const title = ro ? 'A viewer token cannot change anything' : '';
  return h('td', { class: 'actions' },
    h('button', { type: 'button', class: 'small ghost edit', disabled: ro, title, onclick: () => openForm(kind, i) }, 'Edit'),
    ' ',
    h('button', { type: 'button', class: 'small danger delete', disabled: ro, title, onclick: () => remove(kind, i) }, 'Delete'));
}

// options sums up the keys of an item that have no column of their own.
function options(item, keys) {
  return keys.map(k => [k, getPath(item, k)]).filter(([, v]) => v !== undefined && v !== '')
    .map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}`).join(' · ');
}

const empty = (cols, what) => h('tr', {}, h('td', { colspan: cols, class: 'muted' }, what));

// renderContact says which committed version this host shows and whether
// it is in contact with a majority of the configured members.
function renderContact() {
  const c = cur.contact, el = $('#cfg-contact');
  el.hidden = !c;
  if (!c) return;
  el.dataset.quorum = c.quorum;
  fill(el, c.quorum
    ? [h('span', { class: 'badge ok' }, 'committed'), `This host shows committed version ${cur.version} and is in contact with a majority (leader ${c.leader}).`]
    : [h('span', { class: 'badge bad' }, 'no majority'),
      `This host is not in contact with a majority${(c.unreachable || []).length ? ` (unreachable: ${c.unreachable.join(', ')})` : ''}: ` +
      `version ${cur.version} may be behind, and changes through this host are refused until it is back in contact.`]);
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
    h('td', { class: 'mono source-ranges' }, s.sourceRanges ? text(s.sourceRanges) || 'nobody' : h('span', { class: 'muted' }, 'everyone')),
    h('td', { class: 'detail options' }, options(s, ['announce', 'method', 'scheduler', 'persistence', 'maxConnectionsPerBackend', 'healthCheck', 'bgp'])),
    actions('services', i))) : empty(7, 'No static services.'));
  const pools = list(spec.pools);
  fill($('#cfg-pools tbody'), pools.length ? pools.map((p, i) => h('tr', { dataset: { name: p.name } },
    h('td', { class: 'name' }, p.name),
    h('td', { class: 'mono' }, text(p.addresses)),
    h('td', { class: 'namespaces' }, list(p.namespaces).length ? text(p.namespaces) : h('span', { class: 'muted' }, 'all')),
    h('td', { class: 'auto-assign' }, p.autoAssign === false ? 'no' : 'yes'),
    h('td', { class: 'announce' }, p.announce || 'l2'),
    actions('pools', i))) : empty(6, 'No pools.'));
  renderBGPConfig(spec.bgp);
  renderSettings('#cfg-dataplane', spec.dataplane, FORMS.dataplane);
  renderSettings('#cfg-healthcheck', spec.healthCheck, FORMS.healthCheck);
  const ro = ctx.readOnly();
  for (const id of ['add-service', 'add-pool', 'add-peer', 'edit-bgp', 'remove-bgp', 'edit-dataplane', 'edit-healthcheck']) {
    $('#cfg-' + id).disabled = ro;
  }
  $('#cfg-remove-bgp').hidden = !spec.bgp;
}

// renderBGPConfig shows the bgp section: the cluster's AS and its peers.
// A password shows as "set", never as a value (the API sends "(secret)").
function renderBGPConfig(bgp) {
  fill($('#cfg-bgp-summary'), bgp
    ? [`AS ${bgp.asn ?? '?'}`, bgp.withdrawDelay && ` · withdraw delay ${bgp.withdrawDelay}`]
    : 'No BGP: every VIP is announced on the LAN (l2). Add a peer to speak BGP.');
  $('#cfg-edit-bgp').hidden = !bgp;
  const peers = list(bgp?.peers);
  fill($('#cfg-peers tbody'), peers.length ? peers.map((p, i) => h('tr', { dataset: { peer: p.address } },
    h('td', { class: 'mono' }, p.address),
    h('td', { class: 'asn' }, String(p.asn ?? '')),
    h('td', { class: 'password' }, p.password ? badge('set', 'ok') : h('span', { class: 'muted' }, 'none')),
    h('td', { class: 'detail options' }, options(p, ['holdTime', 'gracefulRestart', 'bfd'])),
    actions('peers', i))) : empty(5, 'No BGP peers.'));
}

// renderSettings lists an object's keys (dataplane, healthCheck), or
// that it runs the defaults.
function renderSettings(sel, obj, form) {
  const set = form.fields.filter(fd => obj && obj[fd.key] !== undefined);
  fill($(sel), set.length
    ? h('dl', { class: 'settings' }, set.map(fd => [h('dt', {}, fd.label), h('dd', { class: 'mono', dataset: { key: fd.key } }, String(obj[fd.key]))]))
    : h('p', { class: 'muted' }, 'The defaults.'));
}
function renderHistory(history) {
  const vs = [...history].reverse();
  fill($('#cfg-history tbody'), vs.map((v, i) => h('tr', { dataset: { version: v.version } },
    h('td', { class: 'mono' }, `v${v.version}`),
    h('td', {}, Date.parse(v.updatedAt) > 0 ? new Date(v.updatedAt).toLocaleString() : ''),
    h('td', {}, v.updatedBy || '', v.member && h('span', { class: 'muted' }, ` on ${v.member}`)),
    h('td', {}, v.current && badge('current', 'ok')),
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

// formItem is what a form starts from: the list's item, or the object
// (bgp, dataplane, healthCheck; keys the form does not list are kept).
function formItem(kind, index) {
  const f = FORMS[kind];
  if (f.obj) return { ...(at(cur.spec, f.obj) || {}) };
  return index >= 0 ? list(at(cur.spec, f.at))[index] : {};
}

// needsASN: a peer added where there is no bgp section yet also sets the
// cluster's AS number (bgp.asn), which a bgp section needs.
const needsASN = kind => kind === 'peers' && cur.spec.bgp?.asn === undefined;
const ASN_FIELD = { key: '^asn', label: "This cluster's AS number (bgp.asn)", type: 'int', hint: '64512' };

function formFields(kind) {
  return needsASN(kind) ? [ASN_FIELD, ...FORMS[kind].fields] : FORMS[kind].fields;
}


function openForm(kind, index) {
  const f = FORMS[kind];
  const item = formItem(kind, index);
  editing = { kind, index, item };
  checkedSpec = '';
  const name = item.name || item.address || '';
  $('#cfg-form-title').textContent = f.obj ? `Edit the ${f.title}` : index >= 0 ? `Edit ${f.title} ${name}` : `Add a ${f.title}`;
  $('#cfg-form').dataset.kind = kind;
  fill($('#cfg-fields'), formFields(kind).map(fd => {
    const field = h('label', { class: 'field', dataset: { key: fd.key } }, h('span', {}, fd.label), inputFor(fd, item),
      fd.type === 'toggle' && fd.hint && h('div', { class: 'detail' }, fd.hint),
      h('div', { class: 'field-error', dataset: { for: fd.key } }));
    // Each input hears its own events: a script's input event (the
    // tests') does not bubble.
    field.querySelectorAll('input, select').forEach(el => {
      for (const ev of ['input', 'change']) el.addEventListener(ev, stale);
    });
    return field;
  }));
  fill($('#cfg-form-errors'));
  fill($('#cfg-effect'));
  $('#cfg-apply').disabled = true;
  $('#cfg-form').hidden = false;
  $('#cfg-form').scrollIntoView({ block: 'nearest' });
  $('#cfg-fields input, #cfg-fields select')?.focus();
}

// closeForm also empties the fields: a password typed into one is gone
// from the page once it is applied or the form is cancelled.
function closeForm() {
  editing = null;
  checkedSpec = '';
  fill($('#cfg-fields'));
  $('#cfg-form').hidden = true;
}

// stale: the form changed since its dry run.
function stale() {
  checkedSpec = '';
  $('#cfg-apply').disabled = true;
  fill($('#cfg-effect'));
}

const fieldValue = key => $(`#cfg-fields [data-field="${key}"]`);

// formSpec is the current spec with the form's item in place.
function formSpec() {
  const { kind, index, item } = editing;
  const f = FORMS[kind];
  const next = structuredClone(item);
  for (const fd of f.fields) {
    const el = fieldValue(fd.key);
    const raw = el.value.trim();
    if (fd.type === 'secret') {
      const remove = fieldValue(fd.key + '.remove')?.checked;
      if (raw !== '' && !remove) next[fd.key] = raw;
      else if (item[fd.key] === SECRET && !remove) next[fd.key] = SECRET;
      else delete next[fd.key];
      continue;
    }
    if (fd.type === 'toggle') {
      // On when asked, or when one of its keys is given.
      const sub = f.fields.some(o => o.key.startsWith(fd.key + '.') && fieldValue(o.key).value.trim() !== '');
      if (raw || sub) setPath(next, fd.key, { ...(getPath(item, fd.key) || {}) });
      else delete next[fd.key];
      continue;
    }
    if (raw === '') { // not given: the key's default, or the API says it is required
      delPath(next, fd.key);
      continue;
    }
    let v = raw;
    if (fd.type === 'ports') v = parsePorts(raw);
    else if (fd.type === 'list') v = split(raw);
    else if (fd.type === 'int') v = num(raw);
    else if (fd.type === 'bool') v = raw === 'true';
    setPath(next, fd.key, v);
  }
  // A check with no key left is no check: the defaults.
  if (next.healthCheck && !Object.keys(next.healthCheck).length) delete next.healthCheck;
  if (next.bgp && !Object.keys(next.bgp).length) delete next.bgp;
  const spec = structuredClone(cur.spec || {});
  if (f.obj) {
    if (Object.keys(next).length) spec[f.obj[0]] = next;
    else delete spec[f.obj[0]];
    editing.at = 0;
    return spec;
  }
  if (kind === 'peers') {
    spec.bgp = spec.bgp ? { ...spec.bgp } : {};
    if (needsASN(kind)) {
      const asn = fieldValue(ASN_FIELD.key).value.trim();
      if (asn !== '') spec.bgp.asn = num(asn);
    }
  }
  const items = [...list(at(spec, f.at))];
  if (index >= 0) items[index] = next;
  else items.push(next);
  editing.at = index >= 0 ? index : items.length - 1;
  setPath(spec, f.at.join('.'), items);
  return spec;
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

// slotFor finds the form field an error's path belongs to
// (spec.services[2].healthCheck.interval: healthCheck.interval;
// spec.pools[0].addresses[1]: addresses), or null when it is not the
// edited item's.
function slotFor(field) {
  const { kind, at: i } = editing;
  const f = FORMS[kind];
  if (needsASN(kind) && field === 'spec.bgp.asn') return '^asn';
  const prefix = 'spec.' + (f.obj ? f.obj.join('.') : `${f.at.join('.')}[${i}]`);
  if (field !== prefix && !field.startsWith(prefix + '.')) return null;
  const keys = field.slice(prefix.length + 1).replace(/\[\d+\]/g, '').split('.').filter(Boolean);
  if (!keys.length) return f.obj ? null : f.fields[0].key;
  for (let n = keys.length; n > 0; n--) {
    const key = keys.slice(0, n).join('.');
    if (f.fields.some(fd => fd.key === key)) return key;
  }
  return null;
}

// showErrors puts each error next to its field when it is the edited
// item's, and above the form otherwise.
function showErrors(errors) {
  const rest = [];
  for (const e of errors) {
    // Another member's config file does not fit: not this form's field.
    const key = !e.member && slotFor(e.field);
    const slot = key && $(`#cfg-fields .field-error[data-for="${key}"]`);
    if (slot) {
      slot.append(h('div', {}, e.message));
      fieldValue(key)?.classList.add('invalid');
    } else {
      rest.push(h('li', {}, e.member && h('strong', {}, e.member + ': '), h('span', { class: 'mono' }, e.field), ': ', e.message));
    }
  }
  fill($('#cfg-form-errors'), rest.length > 0 && h('ul', {}, rest));
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

const errorText = errors => errors.map(e => `${e.member ? e.member + ': ' : ''}${e.field}: ${e.message}`).join('; ');

function effectText(eff) {
  return EFFECTS.filter(([k]) => eff[k]?.length).map(([k, label]) => `${label}: ${eff[k].join(', ')}`).join('. ') || 'Nothing would change.';
}

function effectList(eff) {
  const items = EFFECTS.filter(([k]) => eff && eff[k] && eff[k].length)
    .map(([k, label]) => h('li', { dataset: { effect: k } }, `${label}: `, h('span', { class: 'mono' }, eff[k].join(', '))));
  return h('div', { class: 'effect' }, h('strong', {}, 'The dry run accepts it. '),
    items.length ? h('ul', {}, items) : 'Nothing would change.');
}

// label names an item in messages: "pool default", "BGP peer 192.0.2.1".
function label(kind, item) {
  const f = FORMS[kind];
  return f.obj ? `the ${f.title}` : `${f.title} ${item.name || item.address || ''}`.trim();
}

async function apply() {
  const spec = formSpec();
  if (JSON.stringify(spec) !== checkedSpec) return stale();
  const { kind, index } = editing;
  const item = FORMS[kind].obj ? {} : list(at(spec, FORMS[kind].at))[editing.at];
  await putSpec(spec, `${label(kind, item)} ${index >= 0 ? 'changed' : 'added'}`);
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

// removeSpec deletes after a dry run and a confirmation with its effect.
async function removeSpec(spec, what) {
  const res = await dryRun(spec);
  if (!res) return;
  if (!res.valid) {
    ctx.banner('error', `Cannot delete ${what}: ${errorText(res.errors)}`);
    return;
  }
  if (!await ctx.confirm(`Delete ${what}?`, effectText(res.effect), 'Delete')) return;
  closeForm();
  await putSpec(spec, `${what} deleted`);
}

async function remove(kind, i) {
  const path = FORMS[kind].at;
  const items = list(at(cur.spec, path));
  const spec = structuredClone(cur.spec);
  setPath(spec, path.join('.'), items.filter((_, j) => j !== i));
  await removeSpec(spec, label(kind, items[i]));
}

// removeBGP deletes the bgp section: BGP stops on every host (refused
// while a pool or service announces over BGP).
async function removeBGP() {
  const spec = structuredClone(cur.spec);
  delete spec.bgp;
  await removeSpec(spec, 'the BGP section (every peer)');
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
