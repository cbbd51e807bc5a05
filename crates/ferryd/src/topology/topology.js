// Ferry's topology page: draws /topology.json as a graph (hosts on top,
// networks in the middle, sandboxes and containers below, one edge per
// interface labelled with its name and addresses) and redraws after every
// event of /events. Plain DOM, no framework, nothing from outside ferryd.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const COL = 300;          // column width
const BOX = 230;          // node width
const ROW_HOSTS = 20;     // top of the hosts row
const NET_H = 78;         // network box height
const LINE = 17;          // text line height

let refreshing = false;
let again = false;

function el(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function html(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

// Pool sizes: IPv6 subnets are too large to write out.
function size(n) {
  return n > 1e6 ? "2^" + Math.round(Math.log2(n)) : String(n);
}

function percent(p) {
  const r = p.allocated / p.size;
  return r >= 0.01 ? (100 * r).toFixed(0) + "%" : (100 * r).toFixed(2) + "%";
}

// The x of column i of n, centred in a canvas of `cols` columns.
function colX(i, n, cols) {
  return (cols - n) * COL / 2 + i * COL + (COL - BOX) / 2;
}

function draw(snap) {
  const svg = document.getElementById("graph");
  svg.replaceChildren();
  const hosts = snap.hosts || [];
  const nets = [...snap.networks].sort((a, b) => a.name.localeCompare(b.name));
  // Each sandbox sits under the middle of its networks, so edges cross less.
  const col = new Map(nets.map((n, i) => [n.name, i]));
  const centre = s => s.interfaces.length
    ? s.interfaces.reduce((t, i) => t + (col.get(i.network) ?? 0), 0) / s.interfaces.length : nets.length;
  const sbs = [...snap.sandboxes].sort((a, b) => centre(a) - centre(b) || a.name.localeCompare(b.name));
  const cols = Math.max(nets.length, sbs.length, hosts.length, 1);
  const rowNets = hosts.length ? ROW_HOSTS + 130 : ROW_HOSTS;
  const rowSbs = rowNets + NET_H + 170;
  const sbHeight = sb => 46 + LINE * (sb.interfaces.length +
    sb.interfaces.reduce((n, i) => n + i.published.length, 0) + sb.conflicts.length);
  const tallest = sbs.reduce((m, s) => Math.max(m, sbHeight(s)), 60);
  const width = cols * COL;
  const height = rowSbs + tallest + 20;
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const edges = el("g", { class: "edges" });
  const nodes = el("g", { class: "nodes" });
  svg.append(edges, nodes);

  const netPos = new Map();
  nets.forEach((n, i) => {
    const x = colX(i, nets.length, cols);
    netPos.set(n.name, { x, y: rowNets });
    const g = el("g", { class: "net " + n.driver, "data-network": n.name });
    g.append(el("rect", { class: "box", x, y: rowNets, width: BOX, height: NET_H, rx: 8 }));
    g.append(el("text", { class: "title", x: x + 10, y: rowNets + 20 }, n.name));
    const kind = n.driver + (n.bridge ? " · " + n.bridge : "") + (n.internal ? " · internal" : "");
    g.append(el("text", { class: "sub", x: x + 10, y: rowNets + 37 }, kind));
    const p = n.subnets[0];
    if (p) {
      const more = n.subnets.length > 1 ? ` +${n.subnets.length - 1}` : "";
      g.append(el("text", { x: x + 10, y: rowNets + 54 }, p.subnet + more));
      g.append(el("text", { class: "sub", x: x + BOX - 10, y: rowNets + 54, "text-anchor": "end" },
        `${p.allocated}/${size(p.size)} used`));
      const barW = BOX - 20;
      g.append(el("rect", { class: "pool", x: x + 10, y: rowNets + 61, width: barW, height: 8, rx: 3 }));
      const used = Math.max(p.allocated ? 2 : 0, barW * Math.min(1, p.allocated / p.size));
      g.append(el("rect", { class: "used", x: x + 10, y: rowNets + 61, width: used, height: 8, rx: 3 }));
      g.append(el("title", {}, `${p.allocated} of ${p.size} addresses in use (${percent(p)})`));
    }
    nodes.append(g);
  });

  hosts.forEach((h, i) => {
    const x = colX(i, hosts.length, cols);
    const g = el("g", { class: "host", "data-host": h.id });
    g.append(el("rect", { class: "box", x, y: ROW_HOSTS, width: BOX, height: 50, rx: 8 }));
    g.append(el("text", { class: "title", x: x + 10, y: ROW_HOSTS + 20 }, "host " + h.id + (h.this_host ? " (this)" : "")));
    g.append(el("text", { class: "sub", x: x + 10, y: ROW_HOSTS + 38 }, "VTEP " + h.vtep));
    nodes.append(g);
    nets.filter(n => n.driver === "overlay").forEach(n => {
      const to = netPos.get(n.name);
      edges.append(el("line", { class: "vtep", x1: x + BOX / 2, y1: ROW_HOSTS + 50, x2: to.x + BOX / 2, y2: to.y }));
    });
  });

  sbs.forEach((s, i) => {
    const x = colX(i, sbs.length, cols);
    const h = sbHeight(s);
    const g = el("g", { class: "sb " + s.kind, "data-sandbox": s.name });
    g.append(el("rect", { class: "box", x, y: rowSbs, width: BOX, height: h, rx: 8 }));
    g.append(el("text", { class: "title", x: x + 10, y: rowSbs + 20 }, s.name));
    g.append(el("text", { class: "sub", x: x + 10, y: rowSbs + 37 }, s.kind));
    let y = rowSbs + 37;
    const k = s.interfaces.length;
    // Edge labels stack just above the sandbox (the last interface lowest),
    // kept within the sandbox's column so neighbours' labels never overlap.
    const labels = s.interfaces.map(itf => {
      const [first, ...rest] = itf.addresses;
      return [itf.ifname + (first ? " " + first : ""), ...rest];
    });
    let above = 14;
    const lift = labels.map(() => 0);
    for (let j = k - 1; j >= 0; j--) {
      above += 16 * labels[j].length + 8;
      lift[j] = above;
    }
    s.interfaces.forEach((itf, j) => {
      y += LINE;
      g.append(el("text", { x: x + 10, y }, `${itf.ifname} → ${itf.network}`));
      for (const p of itf.published) {
        y += LINE;
        g.append(el("text", { class: "sub", x: x + 22, y }, "publishes " + p));
      }
      // The edge: from a point on the sandbox's top edge to the network.
      const to = netPos.get(itf.network);
      if (!to) return;
      const x1 = x + BOX * (j + 1) / (k + 1), y1 = rowSbs;
      const x2 = to.x + BOX / 2, y2 = to.y + NET_H;
      edges.append(el("line", { class: "link", x1, y1, x2, y2 }));
      const lines = labels[j];
      const lw = 7.4 * Math.max(...lines.map(l => l.length)) + 12, lh = 16 * lines.length + 4;
      const ly = y1 - lift[j] + 8;
      const along = x1 + (x2 - x1) * (y1 - ly - lh / 2) / (y1 - y2);
      const pad = (COL - BOX) / 2 - 2;
      const lx = Math.min(Math.max(along, x - pad + lw / 2), x + BOX + pad - lw / 2);
      edges.append(el("rect", { class: "label", x: lx - lw / 2, y: ly, width: lw, height: lh, rx: 4 }));
      lines.forEach((l, n) => edges.append(el("text", { x: lx, y: ly + 15 + 16 * n, "text-anchor": "middle" }, l)));
    });
    for (const c of s.conflicts) {
      y += LINE;
      g.append(el("text", { class: "conflict", x: x + 10, y }, "⚠ " + c.split(":")[0] + " contested"));
    }
    nodes.append(g);
  });

  if (!nets.length && !sbs.length) {
    svg.append(el("text", { class: "sub", x: 20, y: rowNets + 30 }, "no networks yet"));
  }
}

function tables(snap) {
  const nets = document.querySelector("#networks tbody");
  nets.replaceChildren();
  for (const n of snap.networks) {
    const tr = html("tr");
    tr.dataset.network = n.name;
    tr.append(html("td", n.name), html("td", n.driver + (n.bridge ? " (" + n.bridge + ")" : "")),
      html("td", n.subnets.map(p => p.subnet + (p.gateway ? " gw " + p.gateway : "")).join(", ")),
      html("td", n.subnets.map(p => `${p.allocated}/${size(p.size)} (${percent(p)})`).join(", ")));
    nets.append(tr);
  }
  const sbs = document.querySelector("#sandboxes tbody");
  sbs.replaceChildren();
  for (const s of snap.sandboxes) {
    const rows = s.interfaces.length ? s.interfaces : [null];
    rows.forEach((i, j) => {
      const tr = html("tr");
      tr.dataset.sandbox = s.name;
      tr.append(html("td", j ? "" : s.name + (s.kind === "sandbox" ? "" : " (" + s.kind + ")")),
        html("td", i ? i.ifname : "—"), html("td", i ? i.network : ""),
        html("td", i ? i.addresses.join(", ") : ""), html("td", i ? i.published.join(", ") : ""));
      sbs.append(tr);
    });
  }
  const conflicts = document.getElementById("conflicts");
  conflicts.replaceChildren();
  for (const s of snap.sandboxes) for (const c of s.conflicts) conflicts.append(html("li", s.name + ": " + c));
  if (!conflicts.children.length) conflicts.append(html("li", "none", "empty"));
  const box = document.getElementById("hosts-box");
  box.hidden = snap.hosts === null || snap.hosts === undefined;
  const hosts = document.getElementById("hosts");
  hosts.replaceChildren();
  for (const h of snap.hosts || []) hosts.append(html("li", `${h.id} — VTEP ${h.vtep}, lease ${h.lease_age_secs} s${h.this_host ? " (this host)" : ""}`));
  if (snap.hosts_error) hosts.append(html("li", "cluster store: " + snap.hosts_error, "empty"));
}

function status(text) {
  document.getElementById("status").textContent = text;
}

// Fetches a snapshot and redraws; events that arrive meanwhile ask for one more.
async function refresh() {
  if (refreshing) { again = true; return; }
  refreshing = true;
  try {
    do {
      again = false;
      const r = await fetch("/topology.json", { cache: "no-store" });
      const snap = await r.json();
      if (!r.ok) throw new Error(snap.error || r.statusText);
      draw(snap);
      tables(snap);
      status("live · updated " + new Date().toLocaleTimeString());
    } while (again);
  } catch (e) {
    status("cannot read the topology: " + e.message);
  } finally {
    refreshing = false;
  }
}

function logEvent(ev) {
  const list = document.getElementById("events");
  const what = [ev.type, ev.action, ev.network && "network=" + ev.network,
    ev.sandbox && "sandbox=" + ev.sandbox, ev.id && "id=" + ev.id.slice(0, 12)].filter(Boolean).join(" ");
  list.prepend(html("li", `${ev.time} ${what}`));
  while (list.children.length > 50) list.lastChild.remove();
}

// Follows /events (JSON lines) for good, reconnecting when it ends.
async function follow() {
  for (;;) {
    try {
      const r = await fetch("/events?since=5m", { cache: "no-store" });
      const reader = r.body.getReader();
      const text = new TextDecoder();
      let buf = "";
      refresh();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += text.decode(value, { stream: true });
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.trim()) logEvent(JSON.parse(line));
        }
        refresh();
      }
    } catch (e) {
      status("event stream lost (" + e.message + "); reconnecting");
    }
    await new Promise(r => setTimeout(r, 2000));
  }
}

follow();
