// ztnode's web console: a client of the node's local API (the same routes the CLI uses).
// Every value from the API is put into the page as text (textContent, input values), never as
// markup, so a network or member name cannot become script. The token lives in this tab's
// sessionStorage only.
"use strict";

const TOKEN_KEY = "ztnodeToken";
const POLL_MS = 2000;
let pollTimer = null;

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

class ApiError extends Error {
  constructor(status, data) {
    super((data && data.error) || "HTTP " + status);
    this.status = status;
    this.data = data || {};
  }
}

async function api(method, path, body) {
  const init = { method: method, headers: { "X-ZT1-Auth": token() } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  let data = null;
  try {
    data = await r.json();
  } catch (e) {
    data = null;
  }
  if (!r.ok) {
    if (r.status === 401) sessionStorage.removeItem(TOKEN_KEY); // the caller says so
    throw new ApiError(r.status, data);
  }
  return data;
}

// el("tag", {attr: value, onclick: fn}, child...) where a child is a node or a string (text).
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "checked") node.checked = Boolean(value);
    else if (key === "value") node.value = String(value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function notice(text, isError) {
  const n = document.getElementById("notice");
  n.textContent = text || "";
  n.className = isError ? "error" : "";
}

function main(...children) {
  const m = document.getElementById("main");
  m.replaceChildren(...children);
}

function ago(ms) {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}

function stopPolling() {
  if (pollTimer !== null) clearInterval(pollTimer);
  pollTimer = null;
}

// --- login ---------------------------------------------------------------------------------

function showLogin(message) {
  stopPolling();
  document.getElementById("logout").hidden = true;
  const input = el("input", { id: "token", name: "token", type: "password", autocomplete: "off",
    required: true, size: 40 });
  const form = el("form", { id: "login-form", onsubmit: async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    try {
      await api("GET", "/controller");
      notice("");
      location.hash = "#/networks";
      route();
    } catch (e) {
      if (e.status === 404) { // the token is good; the node has no controller: route() says so
        route();
        return;
      }
      sessionStorage.removeItem(TOKEN_KEY);
      notice(e.status === 401 ? "That token is not this node's." : "Cannot log in: " + e.message,
        true);
    }
  } },
    el("h2", {}, "Log in"),
    el("p", {}, "The token is in the node's home directory, ", el("code", {}, "authtoken.secret"),
      "."),
    el("label", { for: "token" }, "Token"), " ", input, " ",
    el("button", { type: "submit", id: "login" }, "Log in"));
  main(form);
  if (message) notice(message, true);
  input.focus();
}

// --- networks ------------------------------------------------------------------------------

async function showNetworks() {
  const listing = await api("GET", "/unstable/controller/network");
  const rows = listing.data.map((n) => el("tr", { "data-nwid": n.id },
    el("td", {}, el("a", { href: "#/network/" + n.id }, el("code", {}, n.id))),
    el("td", {}, n.name || "(unnamed)"),
    el("td", {}, n.private ? "private" : "public"),
    el("td", {}, String(n.meta.authorizedMemberCount) + " / " + String(n.meta.totalMemberCount))));
  const name = el("input", { id: "new-network-name", name: "name", required: true });
  const form = el("form", { id: "create-network", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const created = await api("POST", "/controller/network",
        { name: name.value.trim(), private: true });
      location.hash = "#/network/" + created.id;
    } catch (e) {
      notice("Cannot create the network: " + e.message, true);
    }
  } },
    el("label", { for: "new-network-name" }, "New network name"), " ", name, " ",
    el("button", { type: "submit", id: "create" }, "Create"));
  main(el("h2", {}, "Networks"),
    el("table", { id: "networks" },
      el("thead", {}, el("tr", {}, el("th", {}, "Id"), el("th", {}, "Name"),
        el("th", {}, "Access"), el("th", {}, "Authorized / members"))),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 4 }, "No networks yet.")))),
    form);
}

// --- one network ---------------------------------------------------------------------------

async function save(nwid, body, what) {
  try {
    await api("POST", "/controller/network/" + nwid, body);
    notice(what + " saved.");
    return true;
  } catch (e) {
    notice("Cannot save " + what + ": " + e.message, true);
    return false;
  }
}

function settingsForm(net) {
  const name = el("input", { id: "net-name", value: net.name || "" });
  const priv = el("input", { id: "net-private", type: "checkbox", checked: net.private });
  const bcast = el("input", { id: "net-broadcast", type: "checkbox",
    checked: net.enableBroadcast });
  const mcast = el("input", { id: "net-multicast", type: "number", min: 0,
    value: net.multicastLimit });
  return el("form", { id: "settings", onsubmit: (ev) => {
    ev.preventDefault();
    save(net.id, { name: name.value, private: priv.checked, enableBroadcast: bcast.checked,
      multicastLimit: Number(mcast.value) }, "Settings");
  } },
    el("h3", {}, "Settings"),
    el("p", {}, el("label", { for: "net-name" }, "Name"), " ", name),
    el("p", {}, priv, " ", el("label", { for: "net-private" }, "Private (members need authorizing)")),
    el("p", {}, bcast, " ", el("label", { for: "net-broadcast" }, "Broadcast")),
    el("p", {}, el("label", { for: "net-multicast" }, "Multicast recipients limit"), " ", mcast),
    el("button", { type: "submit" }, "Save settings"));
}

function listEditor(id, title, items, describe, fields, toBody, nwid) {
  const list = el("ul", { id: id + "-list" }, items.map((item, i) => el("li", {},
    describe(item), " ",
    el("button", { type: "button", "aria-label": "Remove " + describe(item), onclick: async () => {
      const rest = items.filter((_, j) => j !== i);
      if (await save(nwid, toBody(rest), title)) route();
    } }, "Remove"))));
  const inputs = fields.map((f) => el("input", { id: id + "-" + f.name, placeholder: f.placeholder,
    required: f.required || null }));
  const form = el("form", { id: id + "-add", onsubmit: async (ev) => {
    ev.preventDefault();
    const item = {};
    fields.forEach((f, k) => { item[f.name] = inputs[k].value.trim() || null; });
    if (await save(nwid, toBody(items.concat([item])), title)) route();
  } },
    fields.map((f, k) => [el("label", { for: id + "-" + f.name }, f.label), " ", inputs[k], " "]),
    el("button", { type: "submit", id: id + "-submit" }, "Add"));
  return el("section", { id: id }, el("h3", {}, title), list, form);
}

function dnsForm(net) {
  const dns = net.dns || {};
  const domain = el("input", { id: "dns-domain", value: dns.domain || "" });
  const servers = el("input", { id: "dns-servers", value: (dns.servers || []).join(", "),
    size: 40 });
  return el("form", { id: "dns", onsubmit: (ev) => {
    ev.preventDefault();
    const list = servers.value.split(",").map((s) => s.trim()).filter((s) => s);
    save(net.id, { dns: { domain: domain.value.trim(), servers: list } }, "DNS");
  } },
    el("h3", {}, "DNS"),
    el("p", {}, el("label", { for: "dns-domain" }, "Domain"), " ", domain),
    el("p", {}, el("label", { for: "dns-servers" }, "Servers (comma separated)"), " ", servers),
    el("button", { type: "submit" }, "Save DNS"));
}

function rulesEditor(net) {
  const text = el("textarea", { id: "rules-source", rows: 12, cols: 80, spellcheck: "false" });
  text.value = net.rulesSource || "";
  const result = el("p", { id: "rules-result", role: "status" });
  async function submit(check) {
    try {
      const out = await api("POST", "/unstable/controller/network/" + net.id + "/rules",
        { source: text.value, check: check });
      result.className = "";
      result.textContent = out.rules + " rules, " + out.capabilities + " capabilities, " +
        out.tags + " tags" + (out.applied ? ": applied." : ": the script compiles.");
    } catch (e) {
      result.className = "error";
      if (e.data && e.data.line) {
        result.textContent = "Line " + e.data.line + ", column " + e.data.column + ": " +
          e.data.message;
        const lines = text.value.split("\n");
        let start = 0;
        for (let i = 0; i < e.data.line - 1 && i < lines.length; i++) start += lines[i].length + 1;
        const line = lines[Math.min(e.data.line, lines.length) - 1] || "";
        text.focus();
        text.setSelectionRange(start, start + line.length);
      } else {
        result.textContent = "Cannot compile: " + e.message;
      }
    }
  }
  return el("section", { id: "rules" }, el("h3", {}, el("label", { for: "rules-source" },
    "Rules (ZeroTier's rules language)")), text, el("p", {},
    el("button", { type: "button", id: "rules-check", onclick: () => submit(true) }, "Check"), " ",
    el("button", { type: "button", id: "rules-apply", onclick: () => submit(false) }, "Apply")),
    result);
}

function memberRow(nwid, m) {
  const addr = m.id;
  const post = async (body, what) => {
    try {
      await api("POST", "/controller/network/" + nwid + "/member/" + addr, body);
      notice(what + " saved for " + addr + ".");
      refreshMembers(nwid);
    } catch (e) {
      notice("Cannot save " + what + " for " + addr + ": " + e.message, true);
    }
  };
  const auth = el("input", { type: "checkbox", class: "authorized", checked: m.authorized,
    "aria-label": "Authorize " + addr,
    onchange: (ev) => post({ authorized: ev.target.checked }, "Authorization") });
  const bridge = el("input", { type: "checkbox", class: "bridge", checked: m.activeBridge,
    "aria-label": "Active bridge " + addr,
    onchange: (ev) => post({ activeBridge: ev.target.checked }, "Bridge flag") });
  const name = el("input", { class: "name", value: m.name || "", "aria-label": "Name of " + addr,
    onchange: (ev) => post({ name: ev.target.value }, "Name") });
  const ips = el("input", { class: "ips", value: (m.ipAssignments || []).join(", "),
    "aria-label": "IP addresses of " + addr,
    onchange: (ev) => post({ ipAssignments: ev.target.value.split(",").map((s) => s.trim())
      .filter((s) => s) }, "Addresses") });
  const version = m.vMajor >= 0 ? m.vMajor + "." + m.vMinor + "." + m.vRev : "";
  // Tags as "id=value id=value", capabilities as "id id": the network's rules give them meaning.
  const tags = el("input", { class: "tags", size: 10, "aria-label": "Tags of " + addr,
    value: (m.tags || []).map((t) => t[0] + "=" + t[1]).join(" "),
    onchange: (ev) => {
      const pairs = ev.target.value.split(/\s+/).filter((s) => s).map((s) => s.split("="));
      if (pairs.some((p) => p.length !== 2 || !/^\d+$/.test(p[0]) || !/^\d+$/.test(p[1]))) {
        notice("Tags are id=value pairs of numbers, e.g. 1000=1 1001=2.", true);
        return;
      }
      post({ tags: pairs.map((p) => [Number(p[0]), Number(p[1])]) }, "Tags");
    } });
  const caps = el("input", { class: "caps", size: 8, "aria-label": "Capabilities of " + addr,
    value: (m.capabilities || []).join(" "),
    onchange: (ev) => {
      const ids = ev.target.value.split(/\s+/).filter((s) => s);
      if (ids.some((s) => !/^\d+$/.test(s))) {
        notice("Capabilities are numeric ids, e.g. 7 9.", true);
        return;
      }
      post({ capabilities: ids.map(Number) }, "Capabilities");
    } });
  return el("tr", { "data-address": addr },
    el("td", {}, el("code", {}, addr)), el("td", {}, name), el("td", {}, auth),
    el("td", {}, ips), el("td", {}, bridge),
    el("td", { class: "state" }, m.online ? "online" : "offline"),
    el("td", { class: "seen" }, ago(m.lastSeen)),
    el("td", {}, version), el("td", { class: "physical" }, m.physicalAddress || ""),
    el("td", {}, tags), el("td", {}, caps),
    el("td", {}, el("button", { type: "button", "aria-label": "Delete " + addr,
      onclick: async () => {
        if (!confirm("Delete member " + addr + "?")) return;
        try {
          await api("DELETE", "/controller/network/" + nwid + "/member/" + addr);
          refreshMembers(nwid);
        } catch (e) {
          notice("Cannot delete " + addr + ": " + e.message, true);
        }
      } }, "Delete")));
}

// Members are re-read every POLL_MS; a row being edited keeps its inputs (only its state cells
// change), so typing is never overwritten.
async function refreshMembers(nwid) {
  const body = document.getElementById("members-body");
  if (!body) return;
  let listing;
  try {
    listing = await api("GET", "/unstable/controller/network/" + nwid + "/member");
  } catch (e) {
    notice("Cannot read the members: " + e.message, true);
    return;
  }
  const editing = document.activeElement && body.contains(document.activeElement)
    ? document.activeElement.closest("tr") : null;
  const rows = listing.data.map((m) => {
    if (editing && editing.dataset.address === m.id) {
      editing.querySelector(".state").textContent = m.online ? "online" : "offline";
      editing.querySelector(".seen").textContent = ago(m.lastSeen);
      return editing;
    }
    return memberRow(nwid, m);
  });
  body.replaceChildren(...(rows.length ? rows
    : [el("tr", {}, el("td", { colspan: 12 }, "No member has asked to join yet."))]));
  document.getElementById("member-count").textContent = listing.meta.authorizedCount +
    " authorized of " + listing.meta.totalCount;
}

async function showNetwork(nwid) {
  const net = await api("GET", "/controller/network/" + nwid);
  const pools = net.ipAssignmentPools || [];
  const routes = net.routes || [];
  main(
    el("p", {}, el("a", { href: "#/networks" }, "All networks")),
    el("h2", {}, (net.name || "(unnamed)") + " ", el("code", {}, net.id)),
    el("section", { id: "members" }, el("h3", {}, "Members ",
      el("span", { id: "member-count" })),
    el("table", {}, el("thead", {}, el("tr", {}, ["Address", "Name", "Authorized", "IPs",
      "Bridge", "State", "Last seen", "Version", "Physical address", "Tags", "Capabilities", ""]
      .map((h) => el("th", {}, h)))), el("tbody", { id: "members-body" }))),
    settingsForm(net),
    listEditor("pools", "IP pools", pools,
      (p) => p.ipRangeStart + " to " + p.ipRangeEnd,
      [{ name: "ipRangeStart", label: "From", placeholder: "10.147.20.1", required: true },
        { name: "ipRangeEnd", label: "To", placeholder: "10.147.20.254", required: true }],
      (list) => ({ ipAssignmentPools: list, v4AssignMode: { zt: list.length > 0 } }), net.id),
    listEditor("routes", "Routes", routes,
      (r) => r.target + (r.via ? " via " + r.via : " (on the network)"),
      [{ name: "target", label: "Target", placeholder: "10.147.20.0/24", required: true },
        { name: "via", label: "Via", placeholder: "(empty: on the network)" }],
      (list) => ({ routes: list }), net.id),
    dnsForm(net),
    rulesEditor(net));
  await refreshMembers(nwid);
  stopPolling();
  pollTimer = setInterval(() => refreshMembers(nwid), POLL_MS);
}

// --- routing -------------------------------------------------------------------------------

async function route() {
  stopPolling();
  if (!token()) {
    showLogin();
    return;
  }
  document.getElementById("logout").hidden = false;
  const hash = location.hash || "#/networks";
  try {
    const status = await api("GET", "/controller");
    document.getElementById("controller-status").textContent =
      status.databaseReady ? "" : "The controller's database is unavailable.";
    const m = /^#\/network\/([0-9a-f]{16})$/.exec(hash);
    if (m) await showNetwork(m[1]);
    else await showNetworks();
  } catch (e) {
    if (e.status === 401) showLogin("Log in again: the token was refused.");
    else if (e.status === 404 && !document.getElementById("networks")) {
      main(el("p", {}, "This node runs no network controller: start it with ",
        el("code", {}, "ztnode node --controller"), "."));
    } else notice("The node did not answer: " + e.message, true);
  }
}

window.addEventListener("hashchange", () => { notice(""); route(); });
window.addEventListener("DOMContentLoaded", () => {
  document.getElementById("logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.hash = "#/login";
    showLogin();
  });
  route();
});
