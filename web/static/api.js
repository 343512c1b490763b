// The REST client and the event-stream reader. The token lives in
// sessionStorage only: it is gone when the tab is closed.

const TOKEN = 'edgelb.token';
const BASE = '/api/v1';

// An error from the API, with the HTTP status (0 when the API could not be
// reached) and the server's message.
export class APIError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body; // the parsed answer, e.g. {errors: [...]} of a 422
  }
}

// The session's token: null when not signed in, '' for an API without tokens.
export function token() { return sessionStorage.getItem(TOKEN); }
export function setToken(t) {
  if (t === null) sessionStorage.removeItem(TOKEN);
  else sessionStorage.setItem(TOKEN, t);
}

function headers(accept, extra) {
  const h = { Accept: accept, ...extra };
  const t = token();
  if (t) h.Authorization = 'Bearer ' + t;
  return h;
}

async function request(method, path, signal, payload, more) {
  let res;
  try {
    // A request that changes state must say it is JSON: the API refuses
    // anything else, as a cross-site form could send it.
    const extra = method === 'GET' ? {} : { 'Content-Type': 'application/json', ...more };
    res = await fetch(BASE + path, {
      method, headers: headers('application/json', extra), cache: 'no-store', signal,
      body: payload === undefined ? undefined : JSON.stringify(payload),
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new APIError(0, 'cannot reach the API: ' + e.message);
  }
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { /* not JSON: keep the status */ }
  if (!res.ok) throw new APIError(res.status, body?.error || `${res.status} ${res.statusText}`.trim(), body);
  return body;
}

export const get = (path, signal) => request('GET', path, signal);
export const post = (path, signal) => request('POST', path, signal);
export const del = path => request('DELETE', path);
// postJSON sends a body; put sends one with If-Match: "version".
export const postJSON = (path, body) => request('POST', path, undefined, body);
export const put = (path, body, version) => request('PUT', path, undefined, body, { 'If-Match': `"${version}"` });

// streamEvents reads GET /api/v1/events until signal is aborted and calls
// onEvent({id, type, data}) for each event, data parsed from JSON. After a
// break it reconnects with Last-Event-ID, backing off from 1 s to 10 s, so
// events remembered by the server are not lost. onState reports 'connecting',
// 'live', 'error' (with a message; it retries) and 'unauthorized' (it stops).
export async function streamEvents({ onEvent, onState, signal }) {
  let lastID = '';
  let backoff = 1000;
  while (!signal.aborted) {
    onState('connecting');
    try {
      const extra = lastID ? { 'Last-Event-ID': lastID } : {};
      const res = await fetch(BASE + '/events', { headers: headers('text/event-stream', extra), cache: 'no-store', signal });
      if (!res.ok) {
        const body = await res.json().catch(() => null);
        throw new APIError(res.status, body?.error || String(res.status));
      }
      onState('live');
      backoff = 1000;
      for await (const ev of readSSE(res.body)) {
        if (ev.id !== undefined) lastID = ev.id;
        let data = ev.data;
        try { data = JSON.parse(ev.data); } catch { /* plain text */ }
        onEvent({ id: lastID, type: ev.type, data });
      }
    } catch (e) {
      if (signal.aborted) return;
      if (e.status === 401) {
        onState('unauthorized', e.message);
        return;
      }
      onState('error', e.message);
    }
    await sleep(backoff, signal);
    backoff = Math.min(2 * backoff, 10000);
  }
}

// readSSE parses a text/event-stream body (the WHATWG "event stream
// interpretation", without retry:) into {id, type, data} events.
export async function* readSSE(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  let id, type = '', data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        let line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.endsWith('\r')) line = line.slice(0, -1);
        if (line === '') {
          if (data.length) yield { id, type: type || 'message', data: data.join('\n') };
          id = undefined;
          type = '';
          data = [];
          continue;
        }
        if (line.startsWith(':')) continue; // comment (keepalive)
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? '' : line.slice(colon + 1);
        if (val.startsWith(' ')) val = val.slice(1);
        if (field === 'event') type = val;
        else if (field === 'data') data.push(val);
        else if (field === 'id' && !val.includes('\0')) id = val;
      }
    }
  } finally {
    reader.releaseLock();
  }
}

function sleep(ms, signal) {
  return new Promise(resolve => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}
