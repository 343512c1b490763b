// The forms of the cluster configuration card: what each edits, its
// fields and their inputs, and the helpers that read and write a spec by
// path. config.js draws them and sends what they make to the API.
import { h } from './dom.js';

// What each form edits: an item of a list in the spec (at: the list's
// path), or one object (obj: its path). A field's key is its path in the
// item ("healthCheck.interval"); keys not listed are kept as they are.
// Types: text (a string), list (comma-separated strings), ports, int,
// bool, a select of options, secret (write-only), toggle (an object that
// is there or not, like bfd: {} for BFD with its defaults).
const SCHEDULERS = ['', 'rr', 'wrr', 'lc', 'wlc', 'lblc', 'lblcr', 'dh', 'sh', 'sed', 'nq', 'mh'];
export const FORMS = {
  services: {
    title: 'static service', at: ['services'],
    fields: [
      { key: 'name', label: 'Name', hint: 'web' },
      { key: 'vip', label: 'VIP', hint: '192.0.2.80' },
      { key: 'ports', label: 'Ports', type: 'ports', hint: '80:8080/TCP, 53/UDP (port[:targetPort][/protocol])' },
      { key: 'backends', label: 'Backends', type: 'list', hint: '10.0.1.5, 10.0.1.6:8080' },
      { key: 'sourceRanges', label: 'Source ranges', type: 'list', hint: 'empty: everyone; 10.0.0.0/8, 2001:db8::/32' },
      { key: 'announce', label: 'Announce', options: ['', 'l2', 'bgp'], def: 'l2' },
      { key: 'method', label: 'Method', options: ['', 'nat', 'dr', 'tunnel'], def: 'dataplane.method' },
      { key: 'scheduler', label: 'Scheduler', options: SCHEDULERS, def: 'dataplane.scheduler' },
      { key: 'persistence', label: 'Persistence', hint: 'empty: none; 10m (same client, same backend)' },
      { key: 'maxConnectionsPerBackend', label: 'Max connections per backend', type: 'int', hint: 'empty: no limit' },
      { key: 'healthCheck.type', label: 'Health check', options: ['', 'tcp', 'http', 'none'], def: 'tcp; none for UDP' },
      { key: 'healthCheck.port', label: 'Check port', type: 'int', hint: "empty: the backend's port" },
      { key: 'healthCheck.path', label: 'Check path (http)', hint: '/healthz' },
      { key: 'healthCheck.interval', label: 'Check interval', hint: 'empty: healthCheck.interval; 2s' },
      { key: 'healthCheck.timeout', label: 'Check timeout', hint: 'empty: healthCheck.timeout; 1s' },
      { key: 'healthCheck.rise', label: 'Check rise', type: 'int', hint: 'passes to be up' },
      { key: 'healthCheck.fall', label: 'Check fall', type: 'int', hint: 'failures to be down' },
      { key: 'bgp.communities', label: 'BGP communities (announce: bgp)', type: 'list', hint: '65000:100, no-export' },
      { key: 'bgp.largeCommunities', label: 'BGP large communities', type: 'list', hint: '65000:1:2' },
      { key: 'bgp.localPref', label: 'BGP local-pref (iBGP peers)', type: 'int', hint: 'empty: none' },
    ],
  },
  pools: {
    title: 'pool', at: ['pools'],
    fields: [
      { key: 'name', label: 'Name', hint: 'default' },
      { key: 'addresses', label: 'Addresses', type: 'list', hint: '192.0.2.0/28, 198.51.100.10-198.51.100.20' },
      { key: 'namespaces', label: 'Namespaces', type: 'list', hint: 'empty: every namespace; team-a, team-b' },
      { key: 'autoAssign', label: 'Auto-assign', type: 'bool', def: 'true' },
      { key: 'announce', label: 'Announce', options: ['', 'l2', 'bgp'], def: 'l2' },
      { key: 'bgp.communities', label: 'BGP communities (announce: bgp)', type: 'list', hint: '65000:100, no-export' },
      { key: 'bgp.largeCommunities', label: 'BGP large communities', type: 'list', hint: '65000:1:2' },
      { key: 'bgp.localPref', label: 'BGP local-pref (iBGP peers)', type: 'int', hint: 'empty: none' },
    ],
  },
  peers: {
    title: 'BGP peer', at: ['bgp', 'peers'],
    fields: [
      { key: 'address', label: 'Address', hint: '192.0.2.1' },
      { key: 'asn', label: 'AS number', type: 'int', hint: '64500' },
      { key: 'password', label: 'TCP MD5 password', type: 'secret' },
      { key: 'holdTime', label: 'Hold time', hint: 'empty: 9s' },
      { key: 'gracefulRestart', label: 'Graceful restart', type: 'bool', def: 'false' },
      { key: 'bfd', label: 'BFD', type: 'toggle', hint: 'on when any BFD field is set' },
      { key: 'bfd.minRx', label: 'BFD min rx', hint: 'empty: 300ms' },
      { key: 'bfd.minTx', label: 'BFD min tx', hint: 'empty: 300ms' },
      { key: 'bfd.multiplier', label: 'BFD multiplier', type: 'int', hint: 'empty: 3' },
    ],
  },
  bgp: {
    title: 'BGP settings', obj: ['bgp'],
    fields: [
      { key: 'asn', label: "This cluster's AS number", type: 'int', hint: '64512' },
      { key: 'withdrawDelay', label: 'Withdraw delay', hint: 'empty: 2s' },
    ],
  },
  dataplane: {
    title: 'dataplane', obj: ['dataplane'],
    fields: [
      { key: 'backend', label: 'Backend (taken at a restart)', options: ['', 'ipvs', 'none'], def: 'ipvs' },
      { key: 'mode', label: 'Mode', options: ['', 'nodeport', 'direct'], def: 'nodeport' },
      { key: 'method', label: 'Method', options: ['', 'nat', 'dr', 'tunnel'], def: 'nat' },
      { key: 'scheduler', label: 'Scheduler', options: SCHEDULERS, def: 'mh' },
      { key: 'continuity', label: 'Continuity', type: 'bool', def: 'true' },
      { key: 'natSource', label: 'NAT source', options: ['', 'vip', 'host'], def: 'vip' },
      { key: 'drainTimeout', label: 'Drain timeout', hint: 'empty: 5m' },
    ],
  },
  healthCheck: {
    title: 'health check defaults', obj: ['healthCheck'],
    fields: [
      { key: 'interval', label: 'Interval', hint: 'empty: 2s' },
      { key: 'timeout', label: 'Timeout', hint: 'empty: 1s' },
      { key: 'rise', label: 'Rise', type: 'int', hint: 'empty: 2 passes to be up' },
      { key: 'fall', label: 'Fall', type: 'int', hint: 'empty: 2 failures to be down' },
    ],
  },
};

// The stand-in the API shows for a stored password (docs/cluster-config.md,
// Secrets): sent back, it keeps the stored one.
export const SECRET = '(secret)';

export const list = v => (Array.isArray(v) ? v : v == null ? [] : [v]);
export const text = v => list(v).join(', ');
export const split = s => s.split(/[\s,]+/).filter(Boolean);
export const portText = p => `${p.port}${p.targetPort ? ':' + p.targetPort : ''}/${p.protocol || 'TCP'}`;

export function parsePorts(s) {
  return split(s).map(item => {
    const m = item.match(/^([^:/]+)(?::([^/]+))?(?:\/(.+))?$/);
    if (!m) return { port: item };
    const p = { port: num(m[1]) };
    if (m[2] !== undefined) p.targetPort = num(m[2]);
    p.protocol = (m[3] || 'TCP').toUpperCase();
    return p;
  });
}

// num is a whole number as a JSON number; anything else is sent as
// typed, for the API to refuse with its message.
export const num = v => (/^\d+$/.test(v) ? Number(v) : v);

// The value at a dotted path of an object, and setting or deleting it.
export const getPath = (o, path) => path.split('.').reduce((v, k) => (v == null ? undefined : v[k]), o);
export function setPath(o, path, v) {
  const ks = path.split('.');
  let at = o;
  for (const k of ks.slice(0, -1)) {
    at[k] = at[k] && typeof at[k] === 'object' ? { ...at[k] } : {};
    at = at[k];
  }
  at[ks[ks.length - 1]] = v;
}
export function delPath(o, path) {
  const ks = path.split('.');
  const parent = ks.length > 1 ? getPath(o, ks.slice(0, -1).join('.')) : o;
  if (parent && typeof parent === 'object') delete parent[ks[ks.length - 1]];
}

// The list or object a form edits, in the spec.
export const at = (spec, path) => getPath(spec, path.join('.'));

// inputFor is the input of a form's field, filled from item.
export function inputFor(fd, item) {
  const attrs = { name: fd.key, dataset: { field: fd.key }, autocomplete: 'off' };
  let v = getPath(item, fd.key);
  if (fd.type === 'secret') {
    // Write-only: the page never has the password, only whether one is
    // stored ("(secret)" from the API).
    const stored = v === SECRET;
    return [h('input', { ...attrs, type: 'password', autocomplete: 'new-password', value: '',
      placeholder: stored ? 'stored, not shown: leave empty to keep it' : 'none' }),
    stored && h('div', { class: 'check' }, h('input', { type: 'checkbox', dataset: { field: fd.key + '.remove' } }), ' remove the stored password')];
  }
  if (fd.type === 'toggle') {
    return h('select', attrs, h('option', { value: '', selected: !v }, 'off'), h('option', { value: 'on', selected: !!v }, 'on'));
  }
  if (fd.type === 'bool' || fd.options) {
    const opts = fd.type === 'bool' ? ['', 'true', 'false'] : fd.options;
    const sel = v === undefined || v === null ? '' : String(v);
    return h('select', attrs, opts.map(o => h('option', { value: o, selected: sel === o },
      o || (fd.def ? `default (${fd.def})` : 'default'))));
  }
  if (fd.type === 'ports') v = list(v).map(portText).join(', ');
  else if (Array.isArray(v)) v = v.join(', ');
  return h('input', { ...attrs, value: v ?? '', placeholder: fd.hint });
}
