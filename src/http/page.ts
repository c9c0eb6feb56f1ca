/**
 * The Ports page served at `/`: one HTML string with inline CSS and JS, no framework, no data baked
 * in. It asks for the API token once (kept in localStorage), then polls the API every 2 s. Every
 * value from the API is inserted with textContent, never as HTML. A strict CSP allows exactly
 * this inline script and style (by hash) and requests to the same origin.
 */
import { createHash } from 'node:crypto'

/** How often the page refreshes, in ms. */
export const PAGE_REFRESH_MS = 2000

const STYLE = `
:root{--bg:#f6f7f9;--card:#fff;--ink:#1d2430;--mute:#667085;--line:#e4e7ec;--accent:#2f6fed;--ok:#12b76a;--off:#98a2b3;--bad:#d92d20;--mono:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
@media (prefers-color-scheme:dark){:root{--bg:#0f1318;--card:#171c23;--ink:#e6e9ee;--mute:#98a2b3;--line:#2a313b;--accent:#6b9bff}}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);color:var(--ink)}
header{display:flex;flex-wrap:wrap;align-items:center;gap:6px 12px;padding:14px 24px;border-bottom:1px solid var(--line);background:var(--card);position:sticky;top:0;z-index:1}
header h1{font-size:16px;margin:0;font-weight:650;letter-spacing:.2px}
header .sub{color:var(--mute);font-size:13px}
header .sp{flex:1}
main{max-width:1040px;margin:0 auto;padding:20px 24px 48px}
button,select,input{font:inherit;color:inherit}
button{border:1px solid var(--line);background:var(--card);border-radius:6px;padding:4px 10px;cursor:pointer}
button:hover{border-color:var(--accent)}
button.primary{background:var(--accent);border-color:var(--accent);color:#fff}
button.link{border:0;background:none;color:var(--mute);padding:2px 6px}
button.link:hover{color:var(--bad)}
input,select{border:1px solid var(--line);background:var(--bg);border-radius:6px;padding:4px 8px}
input{width:150px}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;margin:0 0 16px;overflow:hidden}
.head{display:flex;flex-wrap:wrap;align-items:baseline;gap:6px 14px;padding:12px 16px;border-bottom:1px solid var(--line)}
.head h2{font-size:15px;margin:0}
.meta{color:var(--mute);font-size:12.5px}
.addr{font-family:var(--mono);font-size:13px}
.dot{display:inline-block;width:8px;height:8px;border-radius:50%;background:var(--off);margin-right:6px;vertical-align:1px}
.dot.on{background:var(--ok)}
table{border-collapse:collapse;width:100%}
td:last-child{text-align:right;white-space:nowrap}
th,td{text-align:left;padding:7px 12px;border-bottom:1px solid var(--line);vertical-align:middle}
th{white-space:nowrap}
td.addr,td.port{overflow-wrap:anywhere}
tr.probe td{white-space:normal;font-size:12.5px;padding-top:0;text-align:left}
.probe-answered{color:var(--ok)}.probe-refused,.probe-timed-out,.probe-host-firewall,.probe-error{color:var(--bad)}.probe-no-reply{color:var(--mute)}
tr.has-probe td{border-bottom:0}
th{font-size:11.5px;text-transform:uppercase;letter-spacing:.4px;color:var(--mute);font-weight:600}
td.port{font-family:var(--mono);font-weight:600}
td.num{font-variant-numeric:tabular-nums}
tr:last-child td{border-bottom:0}
.empty{color:var(--mute);padding:10px 16px;border-bottom:1px solid var(--line)}
.badge{font-size:11.5px;padding:1px 8px;border-radius:10px;background:var(--bg);border:1px solid var(--line)}
.badge.static{border-color:var(--accent);color:var(--accent)}
.copy{font-family:var(--mono);font-weight:600;padding:2px 8px;margin-left:-8px;border-color:transparent;background:none}
.copy:hover{border-color:var(--line)}
.copy::after{content:"copy";font:400 11.5px system-ui,sans-serif;color:var(--mute);margin-left:8px;opacity:.55}
.copy:hover::after{opacity:1;color:var(--accent)}
.copy.done::after{content:"copied ✓";color:var(--ok);opacity:1}
.line .copy{margin-left:0;font-weight:400;border-color:var(--line);padding:5px 10px}
.line .copy::after{margin-left:0}
form.add{display:flex;flex-wrap:wrap;align-items:center;gap:8px;padding:10px 16px;background:var(--bg)}
form.add label{color:var(--mute);font-size:12.5px}
details{border-top:1px solid var(--line)}
summary{cursor:pointer;padding:9px 16px;color:var(--mute);font-size:13px}
.howto{padding:0 16px 12px}
.howto h3{font-size:12px;margin:10px 0 4px;color:var(--mute);font-weight:600}
.line{display:flex;gap:8px;align-items:flex-start}
.line code{flex:1;display:block;font:12.5px/1.5 var(--mono);background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:6px 10px;white-space:pre-wrap;word-break:break-all}
.note{color:var(--mute);font-size:12px;margin:4px 0 0}
#login{max-width:420px;margin:12vh auto;background:var(--card);border:1px solid var(--line);border-radius:10px;padding:24px}
#login h2{margin:0 0 6px;font-size:17px}
#login p{color:var(--mute);margin:0 0 14px}
#login input{width:100%;margin-bottom:12px;padding:8px 10px}
#msg,#hostfw{margin:0 0 14px;padding:9px 14px;border-radius:8px;border:1px solid var(--bad);color:var(--bad);background:var(--card)}
[hidden]{display:none!important}
.offscreen{position:fixed;top:0;left:0;opacity:0}
@media (max-width:640px){
header{padding:10px 14px}
main{padding:14px 10px 40px}
.head{padding:10px 12px}
table,tbody,tr,td{display:block;width:100%}
thead{display:none}
tr{padding:8px 12px;border-bottom:1px solid var(--line)}
tr.has-probe{border-bottom:0;padding-bottom:0}
td,td:last-child{display:flex;align-items:center;gap:10px;padding:2px 0;border:0;white-space:normal;text-align:left;min-width:0}
td::before{content:attr(data-label);flex:0 0 84px;color:var(--mute);font-size:11px;text-transform:uppercase;letter-spacing:.4px}
td:empty{display:none}
tr.probe td::before{content:none}
td.port .copy{margin-left:0;min-width:0;overflow-wrap:anywhere;text-align:left}
form.add{padding:10px 12px}
form.add label{flex-basis:100%}
form.add input{flex:1 1 110px;min-width:0;width:auto}
.howto{padding:0 12px 12px}
}
`

const SCRIPT = `
(function () {
  'use strict';
  var GATEWAY = document.documentElement.getAttribute('data-gateway');
  var UPNP = document.documentElement.getAttribute('data-upnp'); // the description URL, absent when UPnP is off
  var KEY = 'wgpmp.token';
  var REFRESH = ${PAGE_REFRESH_MS};
  var $ = function (id) { return document.getElementById(id); };
  var cards = new Map();
  var timer = null;
  var lastOk = 0;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function token() { return localStorage.getItem(KEY) || ''; }
  function showMessage(text) { var m = $('msg'); m.textContent = text || ''; m.hidden = !text; }

  function api(method, path, body) {
    var init = { method: method, headers: { authorization: 'Bearer ' + token() } };
    if (body !== undefined) { init.headers['content-type'] = 'application/json'; init.body = JSON.stringify(body); }
    return fetch(path, init).then(function (r) {
      if (r.status === 401) { signOut('That token was not accepted.'); throw new Error('unauthorized'); }
      if (r.status === 204) return null;
      return r.json().then(function (j) {
        if (!r.ok) throw new Error(j && j.error ? j.error : 'HTTP ' + r.status);
        return j;
      });
    });
  }

  function duration(s) {
    if (s === null || s === undefined) return 'never expires';
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + String(s % 60).padStart(2, '0') + ' s';
    return Math.floor(s / 3600) + ' h ' + String(Math.floor(s % 3600 / 60)).padStart(2, '0') + ' min';
  }
  function ago(iso) {
    if (!iso) return 'no handshake yet';
    var s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    return 'handshake ' + (s < 60 ? s + ' s' : s < 3600 ? Math.floor(s / 60) + ' min' : Math.floor(s / 3600) + ' h') + ' ago';
  }
  function bytes(n) {
    var u = ['B', 'KiB', 'MiB', 'GiB', 'TiB']; var i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + ' ' + u[i];
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text).catch(function () { return fallbackCopy(text); });
    return fallbackCopy(text);
  }
  function fallbackCopy(text) {
    var t = el('textarea', 'offscreen'); t.value = text; t.setAttribute('readonly', '');
    document.body.appendChild(t); t.select();
    var ok = false; try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
    t.remove();
    return ok ? Promise.resolve() : Promise.reject(new Error('copy failed'));
  }
  function copyButton(text, label, title) {
    var b = el('button', 'copy', label);
    b.type = 'button'; b.title = title || 'Copy ' + text;
    b.setAttribute('data-copy', text);
    b.addEventListener('click', function () {
      copyText(text).then(function () {
        b.classList.add('done'); setTimeout(function () { b.classList.remove('done'); }, 1500);
      }, function () { showMessage('Could not copy; select the text instead.'); });
    });
    return b;
  }

  function setupLines(c, forwards) {
    var pmp = forwards.filter(function (f) { return f.origin !== 'static'; })[0];
    var port = pmp ? pmp.internal_port : 51413;
    var lines = [
      ['NAT-PMP: natpmpc (any Linux client; renew every 45 s)',
        'while true; do natpmpc -g ' + GATEWAY + ' -a 0 ' + port + ' tcp 60 && natpmpc -g ' + GATEWAY + ' -a 0 ' + port + ' udp 60; sleep 45; done',
        'Asks for a public port forwarded to local port ' + port + '; the answer names the public port.'],
      ['NAT-PMP: libtorrent / qBittorrent (libtorrent >= 2.0.12)',
        'natpmp_gateway=' + GATEWAY,
        'settings_pack: enable_natpmp=true and natpmp_gateway; the client then maps and renews its listen port itself.'],
      ['NAT-PMP: gluetun (custom provider)',
        'VPN_SERVICE_PROVIDER=custom\\nVPN_TYPE=wireguard\\nVPN_PORT_FORWARDING=on\\nVPN_PORT_FORWARDING_PROVIDER=protonvpn',
        'gluetun asks NAT-PMP at the .1 address of its tunnel network, which must be ' + GATEWAY + '.'],
      ['PCP (RFC 6887)',
        'gateway ' + GATEWAY + ', UDP port 5351',
        'The same server and port as NAT-PMP: a PCP client set to this gateway maps and renews by itself; NAT-PMP-only clients work unchanged.']
    ];
    if (UPNP) lines.push(['UPnP IGD: miniupnpc, Xbox, games, Plex (full tunnel, or 239.255.255.250/32 in AllowedIPs)',
      'upnpc -u ' + UPNP + ' -i -e wgpmp -r ' + port + ' tcp ' + port + ' udp',
      'Discovery (SSDP) needs 239.255.255.250/32 in AllowedIPs on the client, or a full tunnel (0.0.0.0/0). Without it, give apps the description URL ' + UPNP + ' directly.']);
    var box = el('div', 'howto');
    lines.forEach(function (l) {
      box.appendChild(el('h3', '', l[0]));
      var row = el('div', 'line'); row.appendChild(el('code', '', l[1]));
      var b = copyButton(l[1], '', 'Copy'); row.appendChild(b);
      box.appendChild(row);
      box.appendChild(el('p', 'note', l[2]));
    });
    return box;
  }

  function makeCard(c) {
    var card = el('section', 'card'); card.setAttribute('data-client', c.id);
    var head = el('div', 'head');
    var h = el('h2'); var dot = el('span', 'dot'); var name = el('span', 'name');
    h.appendChild(dot); h.appendChild(name); head.appendChild(h);
    var addr = el('span', 'addr'); var meta = el('span', 'meta');
    head.appendChild(addr); head.appendChild(meta);
    card.appendChild(head);
    var table = el('table');
    var thead = el('thead'); var tr = el('tr');
    ['Protocol', 'Public address', 'To', 'Origin', 'Time left', ''].forEach(function (t) { tr.appendChild(el('th', '', t)); });
    thead.appendChild(tr); table.appendChild(thead);
    var tbody = el('tbody'); table.appendChild(tbody);
    var empty = el('div', 'empty', 'No forwards yet. Apps map ports over NAT-PMP, or add a static one below.');
    card.appendChild(table); card.appendChild(empty);

    var form = el('form', 'add');
    form.appendChild(el('label', '', 'Add static forward'));
    var proto = el('select'); proto.name = 'protocol'; proto.setAttribute('aria-label', 'Protocol');
    ['tcp', 'udp', 'both'].forEach(function (p) { var o = el('option', '', p); o.value = p; proto.appendChild(o); });
    var ext = el('input'); ext.name = 'external_port'; ext.placeholder = 'public port'; ext.title = 'Public port (8080) or range (27015-27030)'; ext.required = true; ext.setAttribute('aria-label', 'Public port or range');
    var inner = el('input'); inner.name = 'internal_port'; inner.placeholder = 'client port'; inner.title = 'Port on the client (default: the same)'; inner.setAttribute('aria-label', 'Client port or range');
    var add = el('button', 'primary', 'Add'); add.type = 'submit';
    form.appendChild(proto); form.appendChild(ext); form.appendChild(el('span', 'meta', '→')); form.appendChild(inner); form.appendChild(add);
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var body = { protocol: proto.value, external_port: portValue(ext.value) };
      if (inner.value.trim() !== '') body.internal_port = portValue(inner.value);
      add.disabled = true;
      api('POST', '/api/clients/' + encodeURIComponent(c.id) + '/portforwards', body).then(function () {
        ext.value = ''; inner.value = ''; showMessage(''); return refresh();
      }, function (e) { showMessage(e.message); }).then(function () { add.disabled = false; });
    });
    card.appendChild(form);

    var details = el('details'); details.appendChild(el('summary', '', 'Point apps at this gateway'));
    card.appendChild(details);
    var parts = { card: card, dot: dot, name: name, addr: addr, meta: meta, tbody: tbody, table: table, empty: empty, details: details, howto: null, howtoKey: '', probes: new Map() };
    return parts;
  }
  function endpoint(f) {
    if (!f.public_address) return ':' + f.external_port;
    return (f.public_address.indexOf(':') >= 0 ? '[' + f.public_address + ']' : f.public_address) + ':' + f.external_port;
  }
  function cell(tr, cls, label, text) { var td = el('td', cls, text); td.setAttribute('data-label', label); tr.appendChild(td); return td; }
  function seen(iso) {
    if (!iso) return 'no request yet';
    var s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    return 'last request ' + (s < 60 ? s + ' s' : s < 3600 ? Math.floor(s / 60) + ' min' : Math.floor(s / 3600) + ' h') + ' ago';
  }
  function portValue(s) { s = s.trim(); return /^[0-9]+$/.test(s) ? Number(s) : s; }

  function updateCard(p, c, forwards) {
    p.dot.className = 'dot' + (c.connected ? ' on' : '');
    p.dot.title = c.connected ? 'connected' : 'disconnected';
    p.name.textContent = c.name || c.id;
    p.addr.textContent = c.addresses.join(', ') || 'no IPv4 address';
    p.meta.textContent = (c.connected ? 'connected' : 'disconnected') + ' · ' + ago(c.latest_handshake) + ' · ' + seen(c.last_request) + ' · ↓ ' + bytes(c.rx_bytes) + ' ↑ ' + bytes(c.tx_bytes);
    var rows = [];
    forwards.forEach(function (f) {
      var tr = el('tr'); tr.setAttribute('data-forward', f.id);
      cell(tr, '', 'Protocol', f.protocol.toUpperCase());
      var pub = endpoint(f);
      var port = cell(tr, 'port', 'Public'); port.appendChild(copyButton(pub, pub, 'Copy ' + pub + ': what to give out'));
      cell(tr, 'addr', 'To', (f.client_address || '?') + ':' + f.internal_port);
      var o = cell(tr, '', 'Origin'); o.appendChild(el('span', 'badge ' + (f.origin === 'static' ? 'static' : ''), f.origin === 'static' ? 'static' : f.origin === 'pcp' ? 'PCP' : f.origin === 'upnp' ? 'UPnP' : 'NAT-PMP'));
      if (f.description) { var d = el('span', 'meta', ' ' + f.description); d.setAttribute('data-description', ''); o.appendChild(d); } // client text: textContent only
      cell(tr, 'num', 'Time left', duration(f.seconds_left));
      var act = el('td');
      if (f.public_address) {
        var test = el('button', 'link test', 'Test'); test.type = 'button'; test.title = 'Connect to ' + pub + ' from the server, through the forward';
        test.addEventListener('click', function () {
          test.disabled = true; test.textContent = 'Testing…';
          api('POST', '/api/clients/' + encodeURIComponent(c.id) + '/portforwards/' + encodeURIComponent(f.id) + '/test').then(function (r) {
            p.probes.set(f.id, r); return refresh();
          }, function (e) { p.probes.set(f.id, { outcome: 'error', message: e.message }); return refresh(); });
        });
        act.appendChild(test);
      }
      if (f.origin === 'static' && !f.removable) { var cfg = el('span', 'meta', 'config file'); cfg.title = 'Defined in the config file; remove it there.'; act.appendChild(cfg); }
      if (f.removable) {
        var rm = el('button', 'link', 'Remove'); rm.type = 'button'; rm.title = 'Remove this static forward';
        rm.addEventListener('click', function () {
          rm.disabled = true;
          api('DELETE', '/api/clients/' + encodeURIComponent(c.id) + '/portforwards/' + encodeURIComponent(f.id)).then(function () { showMessage(''); return refresh(); }, function (e) { showMessage(e.message); rm.disabled = false; });
        });
        act.appendChild(rm);
      }
      tr.appendChild(act);
      rows.push(tr);
      var pr = p.probes.get(f.id);
      if (pr) {
        tr.classList.add('has-probe');
        var ptr = el('tr', 'probe'); ptr.setAttribute('data-probe', f.id);
        var ptd = el('td', 'probe-' + pr.outcome, pr.message); ptd.colSpan = 6; ptr.appendChild(ptd);
        rows.push(ptr);
      }
    });
    p.tbody.replaceChildren.apply(p.tbody, rows);
    p.table.hidden = forwards.length === 0;
    p.empty.hidden = forwards.length > 0;
    var key = forwards.filter(function (f) { return f.origin !== 'static'; }).map(function (f) { return f.internal_port; }).slice(0, 1).join();
    if (!p.howto || key !== p.howtoKey) {
      var h = setupLines(c, forwards);
      if (p.howto) p.howto.replaceWith(h); else p.details.appendChild(h);
      p.howto = h; p.howtoKey = key;
    }
  }

  function refresh() {
    if (!token()) return Promise.resolve();
    return Promise.all([api('GET', '/api/clients'), api('GET', '/api/portforwards')]).then(function (r) {
      var clients = r[0]; var forwards = r[1];
      var list = $('clients');
      var seen = new Set();
      clients.forEach(function (c) {
        seen.add(c.id);
        var p = cards.get(c.id);
        if (!p) { p = makeCard(c); cards.set(c.id, p); }
        updateCard(p, c, forwards.filter(function (f) { return f.client_id === c.id; }));
        list.appendChild(p.card);
      });
      cards.forEach(function (p, id) { if (!seen.has(id)) { p.card.remove(); cards.delete(id); } });
      $('none').hidden = clients.length > 0;
      lastOk = Date.now();
      $('status').textContent = clients.length + ' client' + (clients.length === 1 ? '' : 's') + ' · ' + forwards.length + ' forward' + (forwards.length === 1 ? '' : 's');
    }).catch(function (e) {
      if (e.message !== 'unauthorized') $('status').textContent = 'offline: ' + e.message + (lastOk ? ' (last update ' + Math.round((Date.now() - lastOk) / 1000) + ' s ago)' : '');
    });
  }

  // install (issue 12): a host firewall that drops forwarded traffic, with the rule to add.
  function refreshHost() {
    return api('GET', '/api/host').then(function (h) {
      var fw = h && h.host_firewall; var el = $('hostfw');
      el.hidden = !(fw && fw.blocks_forwards);
      if (!el.hidden) el.textContent = 'The host firewall drops forwarded traffic (' + fw.blocks.map(function (b) { return b.chain + ': ' + b.by; }).join('; ') + '). Add: ' + fw.fix.join(' ; ') + ' (or set host_firewall_accept: true).';
    }, function () {});
  }

  function start() {
    $('login').hidden = true; $('app').hidden = false; $('signout').hidden = false;
    refresh(); refreshHost();
    if (!timer) timer = setInterval(function () { refresh(); refreshHost(); }, REFRESH);
  }
  function signOut(message) {
    localStorage.removeItem(KEY);
    if (timer) { clearInterval(timer); timer = null; }
    cards.forEach(function (p) { p.card.remove(); }); cards.clear();
    $('app').hidden = true; $('signout').hidden = true; $('login').hidden = false;
    $('loginmsg').textContent = message || 'Paste the token from api_token_file. It stays in this browser only.';
    $('status').textContent = '';
  }

  $('loginform').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var t = $('token').value.trim();
    if (!t) return;
    localStorage.setItem(KEY, t); $('token').value = '';
    start();
  });
  $('signout').addEventListener('click', function () { signOut(); });
  if (token()) start(); else signOut();
})();
`

const escapeAttr = (s: string): string => s.replace(/[&"<>]/g, (c) => `&#${c.charCodeAt(0)};`)
const sha256 = (s: string): string => createHash('sha256').update(s, 'utf8').digest('base64')

let cspCache: string | null = null

/**
 * The page for a gateway address (the server's tunnel IPv4, shown in the setup lines) and the
 * Content-Security-Policy header that must accompany it.
 */
/** The page for a server whose tunnel address is `gateway`; `upnpLocation` (the UPnP description URL, or null when UPnP is off) adds the UPnP setup line. */
export function renderPage(gateway: string, upnpLocation: string | null = null): { html: string; csp: string } {
  cspCache ??= [
    "default-src 'none'",
    `script-src 'sha256-${sha256(SCRIPT)}'`,
    `style-src 'sha256-${sha256(STYLE)}'`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ')
  const html = `<!doctype html>
<html lang="en" data-gateway="${escapeAttr(gateway)}"${upnpLocation === null ? '' : ` data-upnp="${escapeAttr(upnpLocation)}"`}>
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>wgpmp · Ports</title>
<style>${STYLE}</style>
</head>
<body>
<header><h1>wgpmp</h1><span class="sub">Ports · gateway <span class="addr">${escapeAttr(gateway)}</span></span><span class="sp"></span><span class="sub" id="status"></span><button type="button" class="link" id="signout" hidden>Sign out</button></header>
<main>
<div id="msg" role="alert" hidden></div>
<div id="hostfw" role="alert" hidden></div>
<section id="login" hidden>
<h2>Sign in</h2>
<p id="loginmsg"></p>
<form id="loginform"><input id="token" type="password" autocomplete="off" placeholder="API token" aria-label="API token"><button class="primary" type="submit">Open</button></form>
</section>
<div id="app" hidden>
<p id="none" class="empty" hidden>No WireGuard peers on the interface.</p>
<div id="clients"></div>
</div>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`
  return { html, csp: cspCache }
}
