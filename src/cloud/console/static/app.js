// The cyphonic web console: a small single-page app on the cloud's REST API (/api/v1/), no framework. The admin
// token lives in sessionStorage (gone when the tab closes); every request carries it as a bearer token. The page
// that is open polls the API every POLL_MS (nodes, node detail, general nodes, relays): live updates.
//
// Everything the API returns is untrusted (node names, tags and endpoints are chosen by whoever holds a token or
// runs a node): the DOM is built with createElement/textContent only, never by parsing HTML, links come from
// encodeURIComponent'd names, and the token's QR code (an SVG from the API) is shown through an <img> from a blob:
// URL, where no script in it can run. The server's Content-Security-Policy forbids inline script anyway.

/* global document, window, location, sessionStorage, fetch, setTimeout, clearTimeout, Blob, navigator */

const POLL_MS = 2000;
const TOKEN_KEY = 'cyphonic.admin-token';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const live = document.getElementById('live');

/** An element: h('td', {class: 'x', 'data-label': 'Name'}, child, 'text', …); strings become text nodes. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === 'hidden' || k === 'disabled' || k === 'readOnly' || k === 'required') el[k] = Boolean(v);
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof window.Node ? c : String(c));
  return el;
}

class ApiFailure extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function api(method, path, body) {
  const headers = { authorization: `Bearer ${token() ?? ''}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`/api/v1${path}`, { method, headers, cache: 'no-store', ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  let data = null;
  try {
    data = await res.json();
  } catch {
    /* not JSON */
  }
  if (!res.ok) {
    const e = data && data.error ? data.error : { code: `HTTP_${res.status}`, message: res.statusText };
    throw new ApiFailure(res.status, String(e.code), String(e.message));
  }
  return data;
}

// --- formatting -------------------------------------------------------------------------------------------------

function ago(iso) {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (!Number.isFinite(s)) return 'unknown';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

function bytes(n) {
  if (typeof n !== 'number') return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}

/** The underlay address families a node registered with ('IPv4 + IPv6'). */
function families(n) {
  const f = Array.isArray(n.families) ? n.families : [];
  return f.length ? f.map((x) => (x === 'v6' ? 'IPv6' : 'IPv4')).join(' + ') : '–';
}

const badge = (text, kind) => h('span', { class: `badge ${kind}` }, text);
const online = (n) => (n.online ? badge('online', 'on') : badge('offline', 'off'));
const tagList = (tags) => (Array.isArray(tags) && tags.length ? tags.map((t) => h('span', { class: 'tag' }, t)) : h('span', { class: 'note' }, '–'));
const nodeLink = (name) => h('a', { href: `#/node/${encodeURIComponent(name)}` }, name);

function natText(n) {
  if (n.nat === null || n.nat === undefined) return '–';
  if (!n.nat) return 'none';
  return n.mapping === 'independent' ? 'behind NAT (endpoint-independent)' : n.mapping === 'dependent' ? 'behind NAT (endpoint-dependent)' : 'behind NAT';
}

/** A table; `cols` are [label, row => content]; each cell carries its label for the phone layout (one grid item). */
function table(id, cols, rows, rowAttrs = () => ({})) {
  if (!rows.length) return h('p', { class: 'empty card', id }, 'None yet.');
  return h(
    'table',
    { id },
    h('thead', {}, h('tr', {}, cols.map(([label]) => h('th', { scope: 'col' }, label)))),
    h('tbody', {}, rows.map((r) => h('tr', rowAttrs(r), cols.map(([label, cell]) => h('td', { 'data-label': label }, h('div', { class: 'cell' }, cell(r))))))),
  );
}

// --- pages ------------------------------------------------------------------------------------------------------

let timer = null;
let generation = 0;

/** Shows `view` and refreshes it every POLL_MS while it is the current page. */
function polled(title, load) {
  const my = ++generation;
  const body = h('div', { id: 'content' }, h('p', { class: 'note' }, 'Loading…'));
  main.replaceChildren(h('h1', {}, title), body);
  const tick = async () => {
    try {
      const view = await load();
      if (my !== generation) return;
      body.replaceChildren(view);
      live.textContent = `live · updated ${new Date().toLocaleTimeString()} (every ${POLL_MS / 1000} s)`;
    } catch (err) {
      if (my !== generation) return;
      if (!handleAuth(err)) body.replaceChildren(h('p', { class: 'error' }, `Could not load: ${err.message}`));
    }
    if (my === generation) timer = setTimeout(() => void tick(), POLL_MS);
  };
  void tick();
}

function stopPolling() {
  generation++;
  if (timer) clearTimeout(timer);
  timer = null;
  live.textContent = '';
}

/** A refused token (rotated, or rate-limited) sends the user back to sign-in; true if it did. */
function handleAuth(err) {
  if (err instanceof ApiFailure && (err.status === 401 || err.status === 429)) {
    sessionStorage.removeItem(TOKEN_KEY);
    signIn(err.status === 429 ? 'Too many wrong tokens from this address: wait a minute.' : 'The admin token was refused (rotated?). Sign in again.');
    return true;
  }
  return false;
}

function signIn(message) {
  stopPolling();
  nav.hidden = true;
  const input = h('input', { id: 'token-input', type: 'password', autocomplete: 'current-password', required: true, spellcheck: 'false' });
  const error = h('p', { class: 'error', id: 'sign-in-error', hidden: !message }, message ?? '');
  const button = h('button', { type: 'submit', id: 'sign-in' }, 'Sign in');
  const form = h(
    'form',
    { class: 'card narrow', id: 'sign-in-form' },
    h('h1', {}, 'Sign in'),
    h('p', { class: 'note' }, 'Paste the admin token: the contents of DIR/admin-token on the cloud host (cloud admin-token --rotate replaces it). It is kept in this tab only.'),
    h('label', { for: 'token-input' }, 'Admin token'),
    input,
    error,
    h('div', { class: 'row' }, button),
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    button.disabled = true;
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    try {
      await api('GET', '/nodes');
      if (!location.hash || location.hash === '#/' || location.hash === '#/sign-in') location.hash = '#/nodes';
      route();
    } catch (err) {
      sessionStorage.removeItem(TOKEN_KEY);
      error.hidden = false;
      error.textContent = err instanceof ApiFailure && err.status === 401 ? 'Wrong token.' : err instanceof ApiFailure && err.status === 429 ? 'Too many wrong tokens: wait a minute.' : `Could not sign in: ${err.message}`;
      button.disabled = false;
    }
  });
  main.replaceChildren(form);
  input.focus();
}

function nodesPage() {
  polled('Nodes', async () => {
    const nodes = await api('GET', '/nodes');
    const up = nodes.filter((n) => n.online).length;
    return h(
      'div',
      {},
      h('p', { class: 'note', id: 'nodes-summary' }, `${up} of ${nodes.length} online`),
      table(
        'nodes',
        [
          ['Name', (n) => nodeLink(n.name)],
          ['State', online],
          ['NAT', natText],
          ['Families', families],
          ['Seen from', (n) => (n.observed ? h('span', { class: 'mono' }, n.observed) : '–')],
          ['Overlay', (n) => h('span', { class: 'mono' }, n.vip4, h('br'), n.vip6)],
          ['Tags', (n) => tagList(n.tags)],
          ['Last seen', (n) => ago(n.lastSeen)],
        ],
        nodes,
        (n) => ({ 'data-node': n.name, 'data-online': String(n.online) }),
      ),
    );
  });
}

function nodePage(name) {
  let confirming = false;
  let message = null;
  polled(name, async () => {
    const [nodes, peers] = await Promise.all([api('GET', '/nodes'), api('GET', `/nodes/${encodeURIComponent(name)}/peers`)]);
    const n = nodes.find((x) => x.name === name);
    if (!n) return h('p', { class: 'error' }, 'No such node.');
    const revoke = h('button', { type: 'button', class: 'danger', id: 'revoke' }, 'Revoke…');
    const box = h(
      'div',
      { class: 'confirm', hidden: !confirming },
      h('p', {}, 'Revoke ', h('strong', {}, n.name), '? Its certificates are revoked and its tunnels closed; it needs a new token to come back.'),
      h(
        'div',
        { class: 'row' },
        h('button', { type: 'button', class: 'danger', id: 'revoke-confirm', on: { click: () => void doRevoke() } }, 'Revoke'),
        h('button', { type: 'button', class: 'secondary', on: { click: () => ((confirming = false), (box.hidden = true)) } }, 'Cancel'),
      ),
    );
    revoke.addEventListener('click', () => ((confirming = true), (box.hidden = false)));
    async function doRevoke() {
      try {
        const r = await api('POST', `/nodes/${encodeURIComponent(name)}/revoke`);
        message = `Revoked (${r.revokedCertificates} certificate${r.revokedCertificates === 1 ? '' : 's'}).`;
      } catch (err) {
        if (handleAuth(err)) return;
        message = `Revoke failed: ${err.message}`;
      }
      confirming = false;
      box.hidden = true;
      note.textContent = message;
      note.hidden = false;
    }
    const note = h('p', { class: 'note', id: 'revoke-result', hidden: !message }, message ?? '');
    return h(
      'div',
      {},
      h(
        'div',
        { class: 'card' },
        h(
          'dl',
          { class: 'props', id: 'node-props', 'data-online': String(n.online) },
          h('dt', {}, 'State'), h('dd', {}, online(n)),
          h('dt', {}, 'Name'), h('dd', { class: 'mono' }, n.fqdn),
          h('dt', {}, 'Overlay'), h('dd', { class: 'mono' }, `${n.vip4}  ${n.vip6}`),
          h('dt', {}, 'Families'), h('dd', {}, families(n)),
          h('dt', {}, 'Seen from'), h('dd', { class: 'mono' }, n.observed ?? '–'),
          h('dt', {}, 'NAT'), h('dd', {}, natText(n)),
          h('dt', {}, 'Tags'), h('dd', {}, tagList(n.tags)),
          h('dt', {}, 'Last seen'), h('dd', {}, n.lastSeen ? `${ago(n.lastSeen)} (${n.lastSeen})` : 'never'),
          h('dt', {}, 'NMS instance'), h('dd', { class: 'mono' }, n.nms ?? '–'),
        ),
        h('div', { class: 'row' }, revoke),
        box,
        note,
      ),
      h('h2', {}, 'Peers and paths'),
      h('p', { class: 'note' }, `From the cloud: ${peers.source}. Bytes and RTT are what the node reported (it reports with each keepalive); cyphonic node ping on the node measures RTT now.`),
      table(
        'peers',
        [
          ['Peer', (p) => nodeLink(p.name)],
          ['State', online],
          ['Path', (p) => badge(p.path, p.path === 'relayed' ? 'warn' : 'on')],
          ['Relay', (p) => (p.relay ? h('span', { class: 'mono' }, p.relay) : '–')],
          ['Relayed', (p) => (p.relayed ? `${bytes(p.relayed.bytes)} in ${p.relayed.packets} datagrams` : '–')],
          ['RTT', (p) => (p.rttMs === null ? '–' : `${p.rttMs} ms`)],
          ['Sent / received', (p) => (p.txBytes === null ? '–' : `${bytes(p.txBytes)} / ${bytes(p.rxBytes)}`)],
          ['Why', (p) => p.why ?? '–'],
          ['Selected', (p) => (p.selectedAt ? `${ago(p.selectedAt)}${p.initiator ? ' (started here)' : ''}` : 'elsewhere')],
        ],
        peers.peers,
        (p) => ({ 'data-peer': p.name, 'data-path': p.path, 'data-reported': String(p.txBytes !== null) }),
      ),
    );
  });
}

function generalPage() {
  polled('General nodes', async () => {
    const rows = await api('GET', '/general-nodes');
    return h(
      'div',
      {},
      h('p', { class: 'note' }, 'Devices on an adapter\'s LAN with overlay addresses of their own, leased to them by their adapter (DHCP / router advertisements).'),
      table('general-nodes', [
        ['Name', (g) => h('span', { class: 'mono' }, g.fqdn ?? g.name)],
        ['MAC', (g) => h('span', { class: 'mono' }, g.mac)],
        ['Adapter', (g) => nodeLink(g.adapter)],
        ['Family', (g) => g.family],
        ['Lease', (g) => h('span', { class: 'mono' }, g.vip4 ?? '–', h('br'), g.vip6 ?? '–')],
        ['Tags', (g) => tagList(g.tags)],
      ], rows),
    );
  });
}

function relaysPage() {
  polled('Relays', async () => {
    const rows = await api('GET', '/relays');
    return table('relays', [
      ['Relay', (r) => h('span', { class: 'mono' }, r.id)],
      ['State', (r) => (r.live ? badge('live', 'on') : badge('gone', 'off'))],
      ['Load', (r) => `${r.load} path${r.load === 1 ? '' : 's'}`],
      ['Endpoints', (r) => h('span', { class: 'mono' }, (r.endpoints ?? []).join('  '))],
      ['Heartbeat', (r) => ago(r.heartbeatAt)],
      ['Started', (r) => ago(r.startedAt)],
    ], rows);
  });
}

let qrUrl = null;

function tokensPage() {
  stopPolling();
  const name = h('input', { id: 'new-token-name', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: 'laptop-1', pattern: '[a-z0-9]([a-z0-9\\-]{0,61}[a-z0-9])?' });
  const tags = h('input', { id: 'new-token-tags', autocomplete: 'off', spellcheck: 'false', placeholder: 'ops, cam (optional)' });
  const error = h('p', { class: 'error', hidden: true });
  const out = h('div', {});
  const button = h('button', { type: 'submit', id: 'create-token' }, 'Create token');
  const form = h(
    'form',
    { class: 'card' },
    h('p', { class: 'note' }, 'A one-time token for a new node. On the node: cyphonic node up --state DIR --token TOKEN.'),
    h('label', { for: 'new-token-name' }, 'Node name (lower case letters, digits, -)'),
    name,
    h('label', { for: 'new-token-tags' }, 'Policy tags, comma separated'),
    tags,
    error,
    h('div', { class: 'row' }, button),
    out,
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    button.disabled = true;
    const tagList = tags.value.split(',').map((t) => t.trim()).filter(Boolean);
    try {
      const r = await api('POST', '/tokens', { name: name.value.trim(), ...(tagList.length ? { tags: tagList } : {}) });
      if (qrUrl) window.URL.revokeObjectURL(qrUrl);
      qrUrl = window.URL.createObjectURL(new Blob([r.qr], { type: 'image/svg+xml' }));
      const text = h('textarea', { id: 'token-text', readOnly: true, rows: 6, spellcheck: 'false' });
      text.value = r.token;
      const copy = h('button', { type: 'button', class: 'secondary', on: { click: () => void navigator.clipboard?.writeText(r.token).then(() => (copy.textContent = 'Copied'), () => text.select()) } }, 'Copy');
      out.replaceChildren(
        h('h2', {}, 'Token for ', h('span', { class: 'mono' }, r.name)),
        h('p', { class: 'note' }, 'Shown once; valid for one enrollment. Tags: ', tagList.length ? tagList.join(', ') : 'none', '.'),
        h('div', { class: 'token-out' }, h('div', {}, text, h('div', { class: 'row' }, copy)), h('img', { id: 'token-qr', class: 'qr', src: qrUrl, alt: `QR code of the enrollment token for ${r.name}` })),
      );
    } catch (err) {
      if (handleAuth(err)) return;
      error.hidden = false;
      error.textContent = `${err.message}${err.code ? ` (${err.code})` : ''}`;
    }
    button.disabled = false;
  });
  main.replaceChildren(h('h1', {}, 'Enroll a node'), form);
  name.focus();
}

// --- routing ----------------------------------------------------------------------------------------------------

function route() {
  if (!token()) return signIn(null);
  nav.hidden = false;
  const hash = location.hash || '#/nodes';
  const [, page = 'nodes', arg] = hash.split('/');
  for (const a of nav.querySelectorAll('a')) a.classList.toggle('current', a.dataset.page === (page === 'node' ? 'nodes' : page));
  if (page === 'node' && arg) {
    let n;
    try {
      n = decodeURIComponent(arg);
    } catch {
      n = '';
    }
    return nodePage(n);
  }
  if (page === 'tokens') return tokensPage();
  if (page === 'general') return generalPage();
  if (page === 'relays') return relaysPage();
  return nodesPage();
}

document.getElementById('sign-out').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  location.hash = '#/';
  signIn('Signed out.');
});
window.addEventListener('hashchange', route);
route();
