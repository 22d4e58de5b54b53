"use strict";
// The mesh page's script: everything fetched is shown as text nodes, never parsed as markup.
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const W = 220, H = 40, COLUMN = 400, ROW = 70, TOP = 40, TRACK = 400;

  function el(name, attrs, text) {
    const node = document.createElement(name);
    for (const key in attrs || {}) node.setAttribute(key, attrs[key]);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function svg(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const key in attrs || {}) node.setAttribute(key, attrs[key]);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  async function json(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(url + ": " + response.status);
    return response.json();
  }
  function number(value, digits) {
    return value === null || value === undefined ? "-" : value.toFixed(digits);
  }

  function columns(graph) {
    const incoming = new Set(graph.edges.map(e => e.target));
    const column = {};
    for (const n of graph.nodes) column[n.id] = n.kind === "service" ? 1 : incoming.has(n.id) ? 2 : 0;
    return column;
  }

  function label(edge) {  // two lines: traffic, then latency and security
    const security = edge.mtls === "mutual_tls" ? "mTLS" : edge.mtls;
    if (edge.rps === null) return [edge.requests_total + " req, " + edge.errors_total + " 5xx", security];
    const errors = edge.error_rate === null ? "-" : (100 * edge.error_rate).toFixed(1) + "%";
    return [number(edge.rps, 1) + " rps · " + errors + " 5xx", "p99 " + number(edge.latency_ms.p99, 1) + " ms · " + security];
  }

  function draw(graph) {
    const root = document.getElementById("graph");
    const column = columns(graph);
    const rows = [0, 0, 0], place = {};
    for (const n of graph.nodes) {
      const c = column[n.id];
      place[n.id] = { x: 20 + c * COLUMN, y: TOP + rows[c]++ * ROW };
    }
    root.setAttribute("height", String(TOP + Math.max(1, ...rows) * ROW + 10));
    root.replaceChildren();
    for (const [i, title] of ["workloads (clients)", "services", "workloads (serving)"].entries())
      root.appendChild(svg("text", { x: 20 + i * COLUMN, y: 16, class: "label" }, title));
    for (const edge of graph.edges) {
      const a = place[edge.source], b = place[edge.target];
      const kind = edge.mtls === "mutual_tls" ? "mtls" : edge.mtls === "unknown" ? "unknown" : "plain";
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mid = (x1 + x2) / 2;
      const g = svg("g", { class: "edge-group", "data-source": edge.source, "data-target": edge.target,
                           "data-mtls": edge.mtls });
      g.appendChild(svg("path", { class: "edge " + kind, d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}` }));
      const [first, second] = label(edge);
      // fan-out (service -> its workloads): label by the end that is not shared
      const [lx, ly] = column[edge.target] === 2 ? [x2 - 172, y2] : [x1 + 8, y1];
      g.appendChild(svg("text", { class: "label", x: lx, y: ly - 20 }, first));
      g.appendChild(svg("text", { class: "label", x: lx, y: ly - 6 }, second));
      g.appendChild(svg("title", {}, edge.source + " → " + edge.target + " (" + edge.mtls + ")"));
      root.appendChild(g);
    }
    for (const n of graph.nodes) {
      const p = place[n.id];
      const g = svg("g", { class: "node " + n.kind, "data-id": n.id, transform: `translate(${p.x},${p.y})` });
      g.appendChild(svg("rect", { width: W, height: H, rx: 6 }));
      g.appendChild(svg("text", { x: 8, y: 17 }, n.name));
      const extra = n.kind === "workload" ? n.namespace + " · " + n.proxies.length + " proxies" : n.namespace;
      g.appendChild(svg("text", { x: 8, y: 32, class: "label" }, extra));
      if (n.kind === "service") g.addEventListener("click", () => routes(n.name));
      root.appendChild(g);
    }
    const note = document.getElementById("graph-note");
    note.textContent = (graph.scrape_errors.length
      ? " · unreadable stats: " + graph.scrape_errors.map(e => e.proxy + " (" + e.error + ")").join(", ") : "") +
      (graph.edges_left_out ? " · " + graph.edges_left_out + " quieter edges not drawn" : "");
  }

  async function routes(host) {
    const box = document.getElementById("routes");
    try {
      const view = await json("/mesh/routes.json?host=" + encodeURIComponent(host));
      box.replaceChildren(el("h3", {}, host + " as compiled for proxy " + view.proxy + " (version " + view.version + ")"));
      for (const vh of view.virtual_hosts) {
        box.appendChild(el("h4", {}, "virtual host " + vh.name + " on " + vh.listener));
        const list = el("ol");
        for (const r of vh.routes) {
          const to = (r.clusters || []).map(c => c.cluster + " (" + c.weight + ")").join(", ");
          list.appendChild(el("li", { class: "route" }, (r.name || "(unnamed)") + " from " + (r.virtual_service || "default") +
            (to ? " → " + to : r.redirect ? " → redirect" : r.direct_response ? " → direct response" : "")));
        }
        box.appendChild(list);
      }
      const table = el("table", { class: "clusters" });
      table.appendChild(el("tr")).append(el("th", {}, "cluster"), el("th", {}, "subset"), el("th", {}, "endpoints"));
      for (const c of view.clusters)
        table.appendChild(el("tr")).append(el("td", {}, c.name), el("td", {}, c.subset || "-"),
          el("td", {}, c.endpoints.map(ep => ep.address + ":" + ep.port).join(", ") || "none"));
      box.appendChild(table);
      for (const w of view.warnings) box.appendChild(el("p", { class: "warning" }, w));
    } catch (error) {
      box.replaceChildren(el("p", {}, String(error)));
    }
  }

  async function traces() {
    const list = document.getElementById("traces");
    const recent = await json("/mesh/traces.json");
    list.replaceChildren(...recent.slice(0, 20).map(t => {
      const item = el("li");
      const button = el("button", { type: "button", class: "trace", "data-trace": t.traceId },
        t.rootService + ": " + t.root + " · " + t.spans + " spans · " + number(t.duration / 1000, 1) + " ms");
      button.addEventListener("click", () => trace(t.traceId));
      item.appendChild(button);
      return item;
    }));
    if (!recent.length) list.replaceChildren(el("li", {}, "none yet"));
  }

  async function trace(id) {
    const spans = await json("/mesh/trace.json?id=" + encodeURIComponent(id));
    const box = document.getElementById("trace");
    const ids = new Set(spans.map(s => s.id)), children = {};
    for (const s of spans) (children[ids.has(s.parentId) ? s.parentId : ""] ||= []).push(s);
    const start = Math.min(...spans.map(s => s.timestamp || 0));
    const total = Math.max(1, ...spans.map(s => (s.timestamp || 0) + (s.duration || 0) - start));
    box.replaceChildren(el("h3", {}, "trace " + id));
    const walk = (parent, depth) => {
      for (const s of children[parent] || []) {
        if (depth > 64) return;
        const row = el("div", { class: "span", "data-span": s.id, "data-parent": s.parentId || "" });
        const service = (s.localEndpoint || {}).serviceName || "?";
        row.appendChild(el("span", { class: "span-name" }, "  ".repeat(depth) + service + " " + (s.kind || "") + " " +
          (s.name || "") + " " + number((s.duration || 0) / 1000, 2) + " ms"));
        const track = row.appendChild(el("span", { class: "track" }));
        const bar = track.appendChild(el("span", { class: "bar" }));
        // a waterfall: offset by the span's start, as long as its duration (CSSOM: allowed by the CSP)
        bar.style.marginLeft = Math.floor(TRACK * ((s.timestamp || start) - start) / total) + "px";
        bar.style.width = Math.max(2, Math.floor(TRACK * (s.duration || 0) / total)) + "px";
        box.appendChild(row);
        walk(s.id, depth + 1);
      }
    };
    walk("", 0);
  }

  async function refresh() {
    try { draw(await json("/mesh/graph.json")); } catch (error) {
      document.getElementById("graph-note").textContent = " · " + error;
    }
    try { await traces(); } catch (error) { /* shown on the next round */ }
    document.body.dataset.ready = "1";
  }
  for (const button of document.querySelectorAll("button.service"))
    button.addEventListener("click", () => routes(button.dataset.host));
  // a link can open a service's routes or a trace: /mesh#service=HOST, /mesh#trace=ID
  const [key, value] = location.hash.slice(1).split("=", 2).map(decodeURIComponent);
  if (key === "service" && value) routes(value);
  if (key === "trace" && value) trace(value).catch(error => { document.getElementById("trace").textContent = String(error); });
  refresh();
  setInterval(refresh, 3000);
})();
