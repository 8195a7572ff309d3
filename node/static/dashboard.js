// The p2pdoc node dashboard: reads GET /api/v1/dashboard with the API's bearer token, renders
// it, and follows GET /api/v1/events (long-poll) to read it again when something happens.
//
// Token: taken from the address's fragment (#token=..., never sent to the server) or typed
// in, kept in sessionStorage (this tab only), sent as an Authorization header, dropped on a
// 401 or "Sign out". Every value from the API goes into the page as text (textContent,
// createTextNode, setAttribute on fixed attribute names): the page's Trusted Types policy
// makes any HTML-parsing sink throw.
"use strict";

(() => {
  const TOKEN_KEY = "p2pdoc.dashboard.token";
  const REFRESH_MS = 15000;
  const POLL_SECONDS = 25;
  const LIMIT = 50;
  const RETRY_MS = [1000, 2000, 5000, 10000, 30000];
  const ERROR_CHARS = 240;
  const GAP_MS = 300; // between two reads while events keep coming

  const DELIVERY = {
    "queued": ["queued", "Chờ gửi", "waiting for its first attempt"],
    "offering": ["offering", "Đang chào gửi", "offering the document to the recipient"],
    "transferring": ["transferring", "Đang truyền", "the recipient is fetching the blocks"],
    "awaiting-receipt": ["awaiting receipt", "Chờ hồi báo", "waiting for the signed receipt"],
    "retry-wait": ["retry wait", "Chờ gửi lại", "the last attempt failed; will retry"],
    "delivered": ["delivered", "Đã nhận", "the recipient signed a receipt"],
    "failed": ["failed", "Gửi thất bại", "the deadline passed or the recipient refused"],
    "not-queued": ["not queued", "Chưa xếp hàng", "no delivery is recorded"],
  };
  const SUMMARY = {
    "pending": ["pending", "Đang gửi"],
    "delivered": ["delivered", "Đã gửi xong"],
    "failed": ["failed", "Có lỗi"],
    "unknown": ["unknown", "Không rõ"],
  };
  const INBOX = {
    "stored": ["not acknowledged", "Chưa tiếp nhận vào phần mềm"],
    "acked": ["acknowledged", "Đã tiếp nhận vào phần mềm"],
    "receiving": ["receiving", "Đang nhận"],
    "unknown": ["unknown", "Không rõ"],
  };

  const $ = (id) => document.getElementById(id);

  // -- building the page (text only) ---------------------------------------------------------

  const ATTRIBUTES = new Set([
    "title", "role", "colspan", "rowspan", "lang", "aria-label", "aria-hidden",
  ]);

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = String(value);
      else if (key.startsWith("data-") || ATTRIBUTES.has(key)) node.setAttribute(key, String(value));
      else throw new Error("unexpected attribute " + key);
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  const pad = (n) => String(n).padStart(2, "0");

  // Local time, as Vietnamese offices write it: dd/MM/yyyy HH:mm:ss.
  function time(ms) {
    if (typeof ms !== "number" || !isFinite(ms) || ms <= 0) return "—";
    const d = new Date(ms);
    return `${pad(d.getDate())}/${pad(d.getMonth() + 1)}/${d.getFullYear()} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function span(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 90) return `${s} s`;
    if (s < 5400) return `${Math.round(s / 60)} min`;
    if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
    return `${(s / 86400).toFixed(1)} days`;
  }

  function bytes(n) {
    if (typeof n !== "number") return "";
    if (n < 1000) return `${n} B`;
    if (n < 1e6) return `${(n / 1e3).toFixed(1)} kB`;
    if (n < 1e9) return `${(n / 1e6).toFixed(2)} MB`;
    return `${(n / 1e9).toFixed(2)} GB`;
  }

  function timezone() {
    const minutes = -new Date().getTimezoneOffset();
    const sign = minutes < 0 ? "-" : "+";
    const abs = Math.abs(minutes);
    return `UTC${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
  }

  function badge(kind, label, vi, title) {
    return el("span", { class: `badge ${kind}`, title: title || vi || null },
      label, vi ? el("span", { class: "badge-vi" }, vi) : null);
  }

  // -- state ---------------------------------------------------------------------------------

  let skew = 0; // node clock - browser clock, ms
  let feed = { boot: null, last: 0 };
  let generation = 0;
  let aborter = null;
  let timer = null;
  let refreshing = false;
  let again = false;
  const openHistories = new Set();

  class AuthError extends Error {}

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function takeTokenFromFragment() {
    if (!location.hash) return;
    const fragment = new URLSearchParams(location.hash.slice(1));
    const value = fragment.get("token");
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    // Off the address bar and out of the history, so the token is not copied along.
    history.replaceState(null, "", location.pathname + location.search);
  }

  async function api(path, signal) {
    const value = token();
    if (!value) throw new AuthError("");
    const response = await fetch(path, {
      headers: { "Authorization": "Bearer " + value, "Accept": "application/json" },
      cache: "no-store",
      credentials: "omit",
      signal,
    });
    if (response.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      throw new AuthError("The node refused this token.");
    }
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = null;
    }
    if (!response.ok) {
      const message = body && body.error ? body.error.message : response.statusText;
      throw new Error(`${response.status}: ${message}`);
    }
    return body;
  }

  // -- live updates --------------------------------------------------------------------------

  function setLive(state, text) {
    const live = $("live");
    live.dataset.state = state;
    live.textContent = text;
  }

  async function refresh() {
    const data = await api(`/api/v1/dashboard?limit=${LIMIT}`);
    if (typeof data.now === "number") skew = data.now - Date.now();
    if (feed.boot === null) feed = { boot: data.events.boot, last: data.events.last };
    render(data);
    setLive("up", "live");
  }

  const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function requestRefresh(gen) {
    if (gen !== generation) return;
    if (refreshing) {
      again = true;
      return;
    }
    refreshing = true;
    try {
      for (;;) {
        again = false;
        await refresh();
        banner(null);
        if (!again || gen !== generation) break;
        await pause(GAP_MS);
      }
    } catch (error) {
      failed(error);
    } finally {
      refreshing = false;
    }
  }

  function failed(error) {
    if (error instanceof AuthError) {
      signOut(error.message);
    } else if (error && error.name !== "AbortError") {
      banner(`The node did not answer: ${error.message}`);
      setLive("down", "connection lost, retrying");
    }
  }

  async function follow(gen) {
    let failures = 0;
    while (gen === generation) {
      try {
        const got = await api(
          `/api/v1/events?after=${feed.last}&wait=${POLL_SECONDS}`, aborter.signal);
        if (gen !== generation) return;
        failures = 0;
        setLive("up", "live");
        if (got.boot !== feed.boot) {
          // The daemon restarted: its feed starts again; read everything afresh.
          feed = { boot: got.boot, last: got.last };
          requestRefresh(gen);
        } else if (got.events.length) {
          feed.last = got.events[got.events.length - 1].seq;
          requestRefresh(gen);
        }
      } catch (error) {
        if (gen !== generation) return;
        failed(error);
        if (error instanceof AuthError) return;
        await pause(RETRY_MS[Math.min(failures, RETRY_MS.length - 1)]);
        failures += 1;
      }
    }
  }

  async function start() {
    const gen = ++generation;
    if (timer) clearInterval(timer);
    aborter = new AbortController();
    feed = { boot: null, last: 0 };
    $("login").hidden = true;
    $("board").hidden = false;
    $("sign-out").hidden = false;
    setLive("idle", "connecting…");
    try {
      await refresh();
    } catch (error) {
      failed(error);
      if (error instanceof AuthError) return;
    }
    if (gen !== generation) return;
    timer = setInterval(() => requestRefresh(gen), REFRESH_MS);
    follow(gen);
  }

  function signOut(message) {
    generation += 1;
    if (aborter) aborter.abort();
    if (timer) clearInterval(timer);
    timer = null;
    sessionStorage.removeItem(TOKEN_KEY);
    $("board").hidden = true;
    $("sign-out").hidden = true;
    $("login").hidden = false;
    $("health-badge").className = "badge muted";
    $("health-badge").textContent = "…";
    setLive("idle", "not connected");
    const error = $("login-error");
    error.textContent = message || "";
    error.hidden = !message;
    $("token-input").value = "";
    $("token-input").focus();
  }

  function banner(text) {
    const node = $("banner");
    node.textContent = text || "";
    node.hidden = !text;
  }

  // -- rendering -----------------------------------------------------------------------------

  function agency(code, names) {
    const name = names[code];
    return el("span", { class: "agency-ref" },
      el("span", { class: "code" }, code),
      name ? el("span", { class: "agency-name" }, name) : null);
  }

  function render(data) {
    const names = data.names || {};
    renderHealthBadge(data.node);
    renderNode(data.node);
    renderOutgoing(data.outgoing, names, data.status_codes, data.now);
    renderIncoming(data.incoming, names, data.status_codes);
    renderPeers(data.peers, names);
    renderLegend(data.status_codes);
    $("clock-note").textContent =
      `Times are local (${timezone()}). Updated ${time(Date.now())}.`;
  }

  function renderHealthBadge(node) {
    const ok = node.status === "ok";
    const health = $("health-badge");
    health.className = `badge ${ok ? "good" : "warn"}`;
    health.textContent = ok ? "healthy" : "degraded";
    health.title = ok ? "Hoạt động bình thường" : node.issues.join("; ");
  }

  function card(title, vi, ...body) {
    return el("div", { class: "card" },
      el("div", { class: "card-title" }, title, vi ? el("span", { class: "vi" }, vi) : null),
      el("div", { class: "card-body" }, ...body));
  }

  function renderNode(node) {
    const dir = node.directory || {};
    const pending = Object.entries(node.deliveries_pending || {});
    const lists = node.revocation_lists || [];
    const cert = node.certificate;
    const cards = [
      card("Health", "Tình trạng",
        node.status === "ok"
          ? badge("good", "ok", "Bình thường")
          : badge("warn", "degraded", "Có vấn đề"),
        node.issues.length
          ? el("ul", { class: "issues" }, node.issues.map((i) => el("li", {}, i)))
          : el("div", { class: "muted" }, `up ${span(node.uptime_seconds)}`)),
      card("Agency", "Đơn vị",
        el("div", { class: "code big" }, node.agency),
        el("div", {}, node.name || "")),
      card("Peer ID", "Định danh nút",
        el("div", { class: "mono wrap" }, node.peer),
        el("div", { class: "muted mono wrap" }, (node.listen_addrs || [])
          .map((a) => a.replace(`/p2p/${node.peer}`, "")).join("  "))),
      card("Peer list", "Danh bạ nút",
        dir.stale ? badge("warn", "stale", "Đã cũ") : badge("good", "current", "Còn hiệu lực"),
        el("div", {}, `${dir.peers} peers, updated ${time(dir.updated_at)}`),
        el("div", { class: "muted" },
          `${span(dir.age_seconds)} old (limit ${span(dir.max_age_seconds)})`)),
      card("Revocation lists", "Danh sách thu hồi",
        lists.length
          ? lists.map((l) => el("div", {},
            l.stale ? badge("warn", "stale", "Đã cũ") : badge("good", "current", "Còn hiệu lực"),
            ` ${l.issuer} v${l.version}`))
          : el("div", { class: "muted" }, "none loaded")),
      card("Certificate", "Chứng thư số",
        cert
          ? [el("div", {}, `expires in ${cert.expires_in_days.toFixed(0)} days`),
            el("div", { class: "muted" }, time(Date.parse(cert.not_after)))]
          : el("div", { class: "muted" }, "—")),
      card("Deliveries pending", "Đang gửi",
        pending.length
          ? pending.map(([state, n]) => el("div", {}, `${n} ${(DELIVERY[state] || [state])[0]}`))
          : el("div", { class: "muted" }, "none")),
      card("Inbox", "Văn bản đến",
        el("div", { class: "big" }, String(node.inbox_unacknowledged)),
        el("div", { class: "muted" }, "not yet acknowledged by the document software")),
    ];
    $("node").replaceChildren(...cards);
  }

  function trailView(status, codes) {
    const reports = status.reports || [];
    if (!reports.length) {
      return el("div", { class: "trail empty", "data-codes": "" }, "no status reported yet");
    }
    const steps = reports.map((report, i) => {
      const meaning = codes[report.code] || { short: "", en: "", vi: "" };
      const who = [report.staff.name, report.staff.department].filter(Boolean).join(", ");
      const title = [`${report.code}: ${meaning.en} (${meaning.vi})`, who, report.description]
        .filter(Boolean).join(" — ");
      const chip = el("span", { class: `chip code-${report.code}`, title },
        el("span", { class: "chip-code" }, report.code),
        el("span", { class: "chip-text" },
          el("span", { class: "chip-meaning" }, meaning.short || meaning.en),
          el("span", { class: "chip-vi" }, meaning.vi),
          el("span", { class: "chip-time" }, time(report.at))));
      // The arrow travels with the chip after it, so a wrapped trail still reads on.
      return el("span", { class: "step" },
        i ? el("span", { class: "arrow", "aria-hidden": "true" }, "→") : null, chip);
    });
    const last = reports[reports.length - 1];
    const who = [last.staff.name, last.staff.department].filter(Boolean).join(", ");
    const note = [who, last.description].filter(Boolean).join(": ");
    return el("div", { class: "trail", "data-codes": reports.map((r) => r.code).join(" ") },
      el("div", { class: "chips" }, steps),
      note ? el("div", { class: "trail-note" }, note) : null,
      status.complete ? null
        : el("div", { class: "error" }, "⚠ the trail has gaps or a broken link"));
  }


  function deliveryView(r, now) {
    const [label, vi, meaning] = DELIVERY[r.state] || [r.state, "", ""];
    const kind = { "delivered": "good", "failed": "bad", "retry-wait": "warn" }[r.state] || "info";
    const lines = [badge(kind, label, vi, meaning)];
    const nowMs = typeof now === "number" ? now : Date.now() + skew;
    if (r.state === "delivered") {
      lines.push(el("div", {}, "receipt ", el("strong", {}, time(r.receipt_at))));
    } else if (r.state === "failed") {
      lines.push(errorLine("reason: ", r.last_error || "deadline passed"));
    } else if (r.state === "retry-wait") {
      lines.push(el("div", {}, "next attempt ", el("strong", {}, time(r.next_at)),
        r.next_at ? ` (in ${span((r.next_at - nowMs) / 1000)})` : ""));
      if (r.last_error) lines.push(errorLine("last error: ", r.last_error));
    } else if (r.state === "queued") {
      lines.push(el("div", { class: "muted" }, "waiting for the first attempt"));
    }
    if (r.attempts) lines.push(el("div", { class: "muted" }, `attempts: ${r.attempts}`));
    if (r.deadline && r.state !== "delivered" && r.state !== "failed") {
      lines.push(el("div", { class: "muted" }, `deadline ${time(r.deadline)}`));
    }
    if (r.history && r.history.length) {
      lines.push(historyView(r));
    }
    return lines;
  }

  function errorLine(label, text) {
    const short = text.length > ERROR_CHARS ? text.slice(0, ERROR_CHARS) + "…" : text;
    return el("div", { class: "error", title: text }, label, short);
  }

  function historyView(r) {
    const key = `${r.root}|${r.agency}`;
    const details = el("details", { class: "history" },
      el("summary", {}, `history (${r.history.length})`),
      el("ol", {}, r.history.map((h) => el("li", {},
        el("span", { class: "mono" }, time(h.at)), " ", h.state, h.note ? ` — ${h.note}` : ""))));
    details.open = openHistories.has(key);
    details.addEventListener("toggle", () => {
      if (details.open) openHistories.add(key);
      else openHistories.delete(key);
    });
    return details;
  }

  function documentCell(doc, when, extra) {
    const files = `${doc.files} file(s), ${bytes(doc.size)}`;
    return [
      el("div", { class: "doc-id" }, doc.document_id),
      el("div", { class: "subject" }, doc.subject),
      el("div", { class: "muted" }, when ? `${when} · ${files}` : files),
      extra || null,
    ];
  }

  function renderOutgoing(items, names, codes, now) {
    $("outgoing-count").textContent = items.length ? `(${items.length})` : "";
    if (!items.length) {
      $("outgoing").replaceChildren(el("p", { class: "empty" }, "No document sent yet."));
      return;
    }
    const rows = [];
    for (const doc of items) {
      const recipients = doc.recipients.length ? doc.recipients : [null];
      const [label, vi] = SUMMARY[doc.state] || [doc.state, ""];
      const kind = { "delivered": "good", "failed": "bad" }[doc.state] || "info";
      recipients.forEach((r, i) => {
        const cells = [];
        if (i === 0) {
          cells.push(el("td", { class: "doc", rowspan: recipients.length },
            documentCell(doc, `sent ${time(doc.created_at)}`,
              el("div", { class: "summary-state" }, badge(kind, label, vi)))));
        }
        if (r === null) {
          cells.push(el("td", { colspan: 3, class: "muted" }, "no recipient"));
        } else {
          r.root = doc.root;
          cells.push(el("td", { class: "recipient" }, agency(r.agency, names)));
          cells.push(el("td", { class: "delivery" }, deliveryView(r, now)));
          cells.push(el("td", { class: "status" }, trailView(r.status, codes)));
        }
        rows.push(el("tr", {
          "class": i === 0 ? "first" : "more",
          "data-root": doc.root,
          "data-document-id": doc.document_id,
          "data-recipient": r ? r.agency : "",
          "data-state": r ? r.state : "",
        }, cells));
      });
    }
    $("outgoing").replaceChildren(el("table", { class: "grid outgoing" },
      el("thead", {}, el("tr", {},
        el("th", {}, "Document ", el("span", { class: "vi" }, "Văn bản")),
        el("th", {}, "Recipient ", el("span", { class: "vi" }, "Nơi nhận")),
        el("th", {}, "Delivery ", el("span", { class: "vi" }, "Gửi nhận")),
        el("th", {}, "Status trail ", el("span", { class: "vi" }, "Tình trạng xử lý")))),
      el("tbody", {}, rows)));
  }

  function renderIncoming(items, names, codes) {
    $("incoming-count").textContent = items.length ? `(${items.length})` : "";
    if (!items.length) {
      $("incoming").replaceChildren(el("p", { class: "empty" }, "No document received yet."));
      return;
    }
    const rows = items.map((doc) => {
      const [label, vi] = INBOX[doc.state] || [doc.state, ""];
      const kind = doc.state === "acked" ? "good" : doc.state === "stored" ? "warn" : "info";
      return el("tr", { "data-root": doc.root, "data-document-id": doc.document_id,
        "data-state": doc.state },
      el("td", { class: "doc" }, documentCell(doc, null)),
      el("td", { class: "recipient" }, agency(doc.sender, names)),
      el("td", { class: "delivery" }, badge(kind, label, vi),
        el("div", { class: "muted" }, `received ${time(doc.received_at)}`)),
      el("td", { class: "status" }, trailView(doc.status, codes)));
    });
    $("incoming").replaceChildren(el("table", { class: "grid incoming" },
      el("thead", {}, el("tr", {},
        el("th", {}, "Document ", el("span", { class: "vi" }, "Văn bản")),
        el("th", {}, "From ", el("span", { class: "vi" }, "Nơi gửi")),
        el("th", {}, "State ", el("span", { class: "vi" }, "Tiếp nhận")),
        el("th", {}, "Statuses reported ", el("span", { class: "vi" }, "Trạng thái đã báo")))),
      el("tbody", {}, rows)));
  }

  function renderPeers(peers, names) {
    const up = peers.filter((p) => p.connected).length;
    $("peers-count").textContent = `(${up} of ${peers.length} connected)`;
    if (!peers.length) {
      $("peers").replaceChildren(el("p", { class: "empty" }, "No peer is configured."));
      return;
    }
    const rows = peers.map((p) => el("tr", { "data-agency": p.agency,
      "data-connected": p.connected ? "yes" : "no" },
    el("td", {}, agency(p.agency, names)),
    el("td", {}, p.connected
      ? badge("good", "connected", "Đã kết nối")
      : badge("muted", "not connected", "Chưa kết nối"),
    p.listed ? null : el("div", { class: "muted" }, "not in the peer list")),
    el("td", { class: "mono wrap" }, p.peer),
    el("td", { class: "mono wrap" }, (p.addrs || []).join("  ") || "—"),
    el("td", { class: "muted" }, p.connected
      ? `${p.agent} · ↑${bytes(p.bytes_sent)} ↓${bytes(p.bytes_received)}`
      : "")));
    $("peers").replaceChildren(el("table", { class: "grid peers" },
      el("thead", {}, el("tr", {},
        el("th", {}, "Agency ", el("span", { class: "vi" }, "Đơn vị")),
        el("th", {}, "Connection ", el("span", { class: "vi" }, "Kết nối")),
        el("th", {}, "Peer ID"),
        el("th", {}, "Address ", el("span", { class: "vi" }, "Địa chỉ")),
        el("th", {}, "Session"))),
      el("tbody", {}, rows)));
  }

  function renderLegend(codes) {
    // Sorted here: object keys like "13" come before "01" in JavaScript's own order.
    const entries = Object.entries(codes || {}).sort(([a], [b]) => a.localeCompare(b));
    $("legend").replaceChildren(...entries.map(([code, meaning]) =>
      el("span", { class: `chip code-${code}` }, el("span", { class: "chip-code" }, code),
        el("span", { class: "chip-text" },
          el("span", { class: "chip-meaning" }, meaning.short || meaning.en,
            el("span", { class: "chip-vi" }, ` · ${meaning.vi}`)),
          el("span", { class: "chip-full" }, meaning.en)))));
  }

  // -- start ---------------------------------------------------------------------------------

  function main() {
    takeTokenFromFragment();
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token-input").value.trim();
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      $("token-input").value = "";
      start();
    });
    $("sign-out").addEventListener("click", () => signOut(""));
    if (token()) start();
    else signOut("");
  }

  main();
})();
