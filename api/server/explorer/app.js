// The auditlog explorer: hash-routed views over the API, every event shown verified in this browser (verify.js).
//
// Views: #/state (the log, its witnesses, its latest timestamp, the key in use), #/search?<filters> (events, paged
// with the API's cursor), #/run/<id>?tenant= (the run's causal tree and its evidence bundle), #/event/<index>?run=
// (one event: fields, payloads, review diff), #/entry/<index> (an entry as the viewer may read it), #/drills?tenant=.
// Data is put into the page as text nodes only (no innerHTML): what the log holds is never markup here.
//
// The credential (an API token or an OIDC JWT) is kept in this tab's sessionStorage and sent as a bearer token; the
// pinned log key in localStorage. For tests and benchmarks, #view carries data-state ("loading", "ready"),
// data-verified / data-failed / data-unchecked (event counts), data-signatures (events whose producer signature
// verified) and data-verify-ms (the time the page spent verifying, performance.now()).

import {
  VerificationError, b64decode, b64encode, canonicalJson, filterMismatch, hex, leafHash, parseVerifierKey, registryFromBundle, sha256,
  timestampGenTime, verifyCheckpoint, verifyCosignature, verifyEvent, verifyInclusion, verifyProducerSignature,
} from "./verify.js";
import { isReview, reviewVerdict, textDiff } from "./review.js";

const TOKEN_KEY = "auditlog.token";
const PINNED_KEY = "auditlog.pinnedKey";
const PROOF_CONCURRENCY = 6;
const PAGE_SIZE = 25;
const SHOWN_BLOB_BYTES = 64 * 1024;

const view = document.getElementById("view");
const statusLine = document.getElementById("status");
let generation = 0; // bumped on every navigation: work of an older view stops touching the page

// --- DOM -------------------------------------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** Replace `node`'s children with `children` (nested arrays flattened; null, undefined and false left out). */
function fill(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

function say(text, kind = "info") {
  statusLine.textContent = text;
  statusLine.className = kind;
}

function badge(state, why) {
  const text = state === "verified" ? "verified" : state === "pending" ? "verifying…"
    : state === "unchecked" ? `included; signature not checked: ${why}` : `failed: ${why}`;
  return h("span", { class: `badge ${state}`, "data-verify": state, title: why || text }, text);
}

function hashLink(hash, text) {
  return h("a", { href: hash }, text);
}

function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value !== undefined && value !== null && value !== "") search.set(name, value);
  return search.toString();
}

// --- the API ---------------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, detail, path) {
    super(detail);
    this.status = status;
    this.path = path;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function api(path, { raw = false } = {}) {
  const headers = {};
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const response = await fetch(path, { headers, cache: "no-store" });
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const problem = await response.json();
      detail = problem.detail || problem.title || detail;
    } catch { /* not a problem document */ }
    throw new ApiError(response.status, detail, path);
  }
  return raw ? new Uint8Array(await response.arrayBuffer()) : response.json();
}

function explain(error) {
  if (error instanceof ApiError) {
    if (error.status === 401) return `Not signed in, or the credential was refused (401): ${error.message}`;
    if (error.status === 403) return `This credential may not see that (403): ${error.message}`;
    if (error.status === 404) return `Not found (404): ${error.message}`;
    return `The server answered ${error.status}: ${error.message}`;
  }
  if (error instanceof VerificationError) return `Verification failed: ${error.message}`;
  return `Error: ${error.message || error}`;
}

/** Run `work(item)` over `items`, at most `limit` at a time. */
async function pool(items, limit, work) {
  let next = 0;
  const runners = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      await work(items[i], i);
    }
  });
  await Promise.all(runners);
}

// --- the log key and the checkpoint ----------------------------------------------------------------------------

/** The key verification uses: the pinned one, else /api/v1/log's (said so), with the server's own for comparison. */
// The inclusion proof of entry `index` in `checkpoint`, as the log serves it (base64 hashes): the checks are the
// caller's (verifyInclusion computes the path for the index and size asked, whatever the answer claims).
async function inclusionHashes(index, checkpoint) {
  return (await api(`/api/v1/proof/inclusion?index=${index}&tree_size=${checkpoint.size}`)).hashes;
}

// `leaf` (the entry's hash, computed here) proven included in the verified `checkpoint`.
async function proveIncluded(leaf, index, checkpoint) {
  const hashes = await inclusionHashes(index, checkpoint);
  await verifyInclusion(leaf, index, checkpoint.bigSize, hashes.map((x) => b64decode(x)), checkpoint.root);
}

async function logKey() {
  const info = await api("/api/v1/log");
  const pinned = localStorage.getItem(PINNED_KEY);
  const text = pinned || info.verifier_key;
  const key = await parseVerifierKey(text);
  return { key, pinned: !!pinned, serverKey: info.verifier_key, differs: !!pinned && pinned !== info.verifier_key, info };
}

function keyWords(k) {
  return k.pinned ? `the pinned key ${k.key.label}` : `key from the server, not pinned (${k.key.label})`;
}

/** Open `note` with the key in use; a failure says when the pinned key is not the one the server names. */
async function openCheckpoint(note, k) {
  try {
    return await verifyCheckpoint(note, k.key);
  } catch (error) {
    if (k.differs) {
      throw new VerificationError(`${error.message}; the pinned key ${k.key.label} is not the key this server names ` +
        `(${k.serverKey.split("+").slice(0, 2).join("+")}): every verification fails until they agree`);
    }
    throw error;
  }
}

/** A verified checkpoint covering index `atLeast`: the latest (re-read once if it does not cover it yet). */
async function verifiedLatest(k, atLeast = -1) {
  let info = k.info;
  if (info.tree_size <= atLeast) info = await api("/api/v1/log");
  return openCheckpoint(info.checkpoint, k);
}

// --- verification bookkeeping -----------------------------------------------------------------------------------

function startVerifying() {
  view.dataset.state = "loading";
  view.dataset.verified = "0";
  view.dataset.failed = "0";
  delete view.dataset.verifyMs;
  delete view.dataset.unchecked;
  delete view.dataset.signatures;
  return { started: performance.now(), verified: 0, failed: 0, unchecked: 0, signatures: 0 };
}

function finishVerifying(tally) {
  view.dataset.verifyMs = (performance.now() - tally.started).toFixed(1);
  view.dataset.verified = String(tally.verified);
  view.dataset.failed = String(tally.failed);
  view.dataset.unchecked = String(tally.unchecked);
  view.dataset.signatures = String(tally.signatures);
}

function setBadge(slot, tally, error) {
  if (error) tally.failed++;
  else tally.verified++;
  fill(slot, error ? badge("failed", error.message || String(error)) : badge("verified"));
}

// --- producers' signatures ---------------------------------------------------------------------------------------

/** The run's evidence bundle, asked for at once (an auditor may read it); an Error in place of it if refused. */
function askEvidence(runId, tenant) {
  return api(`/api/v1/runs/${encodeURIComponent(runId)}/evidence?${query({ tenant })}`).catch((error) => error);
}

/**
 * The producer keys the bundle proves: {registry}, or {unchecked: why} when there is no bundle to check with (the
 * events' signatures are then not checked, which is not verified), or {failed: why} when its registry entries do
 * not verify (then no signature does).
 */
async function provenProducerKeys(asked, k) {
  const bundle = await asked;
  if (bundle instanceof Error) return { unchecked: `the evidence bundle could not be fetched (${explain(bundle)})` };
  try {
    return { registry: await registryFromBundle(bundle, await openCheckpoint(bundle.checkpoint, k)) };
  } catch (error) {
    return { failed: `the evidence bundle's producer keys do not verify: ${error.message}` };
  }
}

/**
 * Verify one event of a run: its inclusion (verifyEvent) and its producer's signature with `keys`
 * (provenProducerKeys'), each on its own so that the badge names every check that fails. Sets the badge.
 */
async function verifyRunEvent(slot, tally, item, checkpoint, proof, expect, keys) {
  const problems = [];
  try {
    if (checkpoint instanceof Error) throw checkpoint;
    await verifyEvent(item, checkpoint, proof, expect);
  } catch (error) {
    problems.push(error.message || String(error));
  }
  let signed = false;
  if (keys.failed) problems.push(keys.failed);
  else if (keys.registry) {
    try {
      await verifyProducerSignature(b64decode(item.entry || "", "its entry"), keys.registry);
      signed = true;
    } catch (error) {
      problems.push(error.message || String(error));
    }
  }
  if (problems.length) {
    setBadge(slot, tally, new VerificationError(problems.join("; ")));
  } else if (!signed) {
    tally.unchecked++;
    fill(slot, badge("unchecked", keys.unchecked));
  } else {
    tally.signatures++;
    setBadge(slot, tally, null);
  }
  return { ok: !problems.length, signed };
}

// --- sign in ---------------------------------------------------------------------------------------------------

function renderSignIn() {
  const box = document.getElementById("signin");
  if (token()) {
    const shown = token().length > 12 ? `…${token().slice(-6)}` : "a token";
    fill(box,
      h("span", { id: "signed-in" }, `Signed in (${shown})`), " ",
      h("button", { type: "button", id: "signout", onclick: () => {
        sessionStorage.removeItem(TOKEN_KEY);
        renderSignIn();
        say("Signed out: the token is gone from this tab.");
        route();
      } }, "Sign out"));
    return;
  }
  const input = h("input", { id: "token", name: "token", type: "password", autocomplete: "off", size: 28,
    placeholder: "alog_… or a JWT", required: true });
  fill(box, h("form", { id: "signin-form", onsubmit: (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    renderSignIn();
    say("Signed in: the token is kept in this tab only (sessionStorage) and sent as Authorization: Bearer.");
    route();
  } }, h("label", { for: "token" }, "Bearer token "), input, " ", h("button", { type: "submit" }, "Sign in")));
}

// --- #/state ---------------------------------------------------------------------------------------------------

async function showState(gen) {
  const tally = startVerifying();
  const k = await logKey();
  const parts = [h("h2", {}, "Log state")];
  let checkpoint = null;
  let checkpointLine;
  try {
    checkpoint = await openCheckpoint(k.info.checkpoint, k);
    tally.verified++;
    checkpointLine = h("p", { id: "checkpoint-verdict" }, badge("verified"),
      ` The checkpoint's signature was verified in this browser with ${keyWords(k)}.`);
  } catch (error) {
    tally.failed++;
    checkpointLine = h("p", { id: "checkpoint-verdict" }, badge("failed", error.message));
  }
  parts.push(h("dl", { class: "facts" },
    h("dt", {}, "Origin"), h("dd", {}, k.info.origin),
    h("dt", {}, "Size"), h("dd", { id: "log-size" }, String(k.info.tree_size)),
    h("dt", {}, "Root"), h("dd", { class: "mono" }, k.info.root_hash),
    h("dt", {}, "Key in use"), h("dd", { class: "mono", id: "key-in-use" }, k.key.text,
      h("div", { class: "note" }, k.pinned ? "pinned in this browser" : "key from the server, not pinned"))));
  parts.push(checkpointLine, h("details", {}, h("summary", {}, "The signed checkpoint"), h("pre", {}, k.info.checkpoint)));
  const witnessBox = h("section", { id: "witnesses", "aria-labelledby": "witnesses-h" }, h("h3", { id: "witnesses-h" }, "Witnesses"), h("p", {}, "Loading…"));
  const stampBox = h("section", { id: "timestamp", "aria-labelledby": "timestamp-h" }, h("h3", { id: "timestamp-h" }, "Latest timestamp"), h("p", {}, "Loading…"));
  parts.push(witnessBox, stampBox, pinForm(k));
  if (gen !== generation) return;
  fill(view, ...parts);
  await Promise.all([showWitnesses(witnessBox, tally, k), showTimestamp(stampBox)]);
  finishVerifying(tally);
}

function pinForm(k) {
  const input = h("input", { id: "pin-key", name: "pin-key", class: "mono", size: 60, autocomplete: "off",
    placeholder: "name+1234abcd+AbCd…", value: localStorage.getItem(PINNED_KEY) || "" });
  const error = h("p", { class: "error", role: "alert" });
  return h("form", { id: "pin-form", onsubmit: async (e) => {
    e.preventDefault();
    try {
      const value = input.value.trim();
      await parseVerifierKey(value);
      localStorage.setItem(PINNED_KEY, value);
      say(`Pinned ${value.split("+").slice(0, 2).join("+")}: every checkpoint is now verified with it.`);
      route();
    } catch (err) {
      error.textContent = err.message;
    }
  } },
  h("h3", {}, "The log key"),
  h("p", { class: "note" }, "The page came from this server, and so did the key it shows unless you pin one: pin the " +
    "log's verifier key from a source you trust, and a server that changes its key fails every check here."),
  h("label", { for: "pin-key" }, "Verifier key to pin "), input, " ",
  h("button", { type: "submit" }, "Pin"), " ",
  h("button", { type: "button", id: "pin-server", onclick: () => { input.value = k.serverKey; } }, "Use the server's key"), " ",
  h("button", { type: "button", id: "unpin", onclick: () => {
    localStorage.removeItem(PINNED_KEY);
    say("Unpinned: the page uses the key the server names.");
    route();
  } }, "Unpin"), error);
}

async function showWitnesses(box, tally, k) {
  let listed;
  try {
    listed = await api("/api/v1/witnesses");
  } catch (error) {
    fill(box, box.firstChild, h("p", {}, explain(error)));
    return;
  }
  if (!listed.witnesses.length) {
    fill(box, box.firstChild, h("p", {}, "This log has no witnesses configured."));
    return;
  }
  const rows = listed.witnesses.map((w) => h("tr", {},
    h("td", {}, w.name), h("td", { class: "mono small" }, w.keys.join("\n")),
    h("td", { class: "num" }, w.latest_cosigned_size === null ? "none yet" : String(w.latest_cosigned_size))));
  const verdict = h("p", { id: "witnessed-verdict" }, "Checking the witnessed checkpoint…");
  fill(box, box.firstChild,
    h("p", {}, `A checkpoint counts as witnessed once ${listed.k} of these ${listed.witnesses.length} have cosigned it.`),
    h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Witness"), h("th", { scope: "col" }, "Keys"),
      h("th", { scope: "col" }, "Latest cosigned size"))), h("tbody", {}, rows)), verdict);
  try {
    const response = await fetch("/checkpoint.witnessed", { cache: "no-store" });
    if (!response.ok) {
      verdict.textContent = "No checkpoint has been witnessed yet.";
      return;
    }
    const checkpoint = await openCheckpoint(await response.text(), k);
    const good = [];
    for (const w of listed.witnesses) {
      for (const text of w.keys) {
        try {
          await verifyCosignature(checkpoint, await parseVerifierKey(text));
          good.push(w.name);
          break;
        } catch { /* not this key's, or not valid: counted below */ }
      }
    }
    const ok = good.length >= listed.k;
    if (ok) tally.verified++;
    else tally.failed++;
    fill(verdict, ok ? badge("verified") : badge("failed", `${good.length} of ${listed.k} cosignatures verify`),
      ` The witnessed checkpoint of size ${checkpoint.size}: the log's signature and the cosignatures of ` +
      `${good.join(", ") || "none"} verified in this browser.`);
  } catch (error) {
    tally.failed++;
    fill(verdict, badge("failed", error.message));
  }
}

async function showTimestamp(box) {
  try {
    const stamp = await api("/api/v1/timestamps/latest");
    const genTime = timestampGenTime(b64decode(stamp.timestamp));
    fill(box, box.firstChild, h("p", {}, `The newest RFC 3161 timestamp covers the checkpoint of size ` +
      `${stamp.tree_size}` + (genTime ? `, stamped at ${genTime} (as the token says: its signature is not checked ` +
      "here; auditlog verify-evidence --tsa-ca checks it)." : ".")));
  } catch (error) {
    fill(box, box.firstChild, h("p", {}, error.status === 404
      ? `No timestamp: ${error.message}.` : explain(error)));
  }
}

// --- #/search --------------------------------------------------------------------------------------------------

const FILTERS = [
  ["tenant", "Tenant"], ["run_id", "Run"], ["trace_id", "Trace"], ["actor_id", "Actor"],
  ["event_type", "Event type"], ["context", "Context NAME=VALUE"], ["since", "From (RFC 3339 or date)"],
  ["until", "Until"],
];
const EVENT_TYPES = ["", "intent", "model_call", "tool_call", "tool_result", "retrieval", "policy_decision", "approval",
  "human_review", "denial", "escalation", "external_action", "outcome", "retention", "erasure"];

function instant(text, name) {
  if (!text) return undefined;
  const value = /^\d{4}-\d{2}-\d{2}$/.test(text) ? `${text}T00:00:00Z` : text;
  const when = new Date(value);
  if (Number.isNaN(when.getTime()) || !/[zZ]|[+-]\d{2}:?\d{2}$/.test(value)) {
    throw new Error(`${name} must be a date (2026-12-08) or an RFC 3339 time with a zone (2026-12-08T09:00:00Z)`);
  }
  return when.toISOString();
}

function apiFilters(params) {
  const out = {};
  for (const name of ["tenant", "run_id", "trace_id", "actor_id", "event_type"]) {
    if (params.get(name)) out[name] = params.get(name);
  }
  const context = params.get("context");
  if (context) {
    const [name, ...rest] = context.split("=");
    if (!name || !rest.length) throw new Error("context must be NAME=VALUE, e.g. case_id=case-9");
    out[`context.${name.trim()}`] = rest.join("=").trim();
  }
  const since = instant(params.get("since"), "From");
  const until = instant(params.get("until"), "Until");
  if (since) out.since = since;
  if (until) out.until = until;
  return out;
}

function searchForm(params) {
  const fields = FILTERS.map(([name, label]) => {
    const id = `f-${name}`;
    const input = name === "event_type"
      ? h("select", { id, name }, EVENT_TYPES.map((t) => h("option", { value: t, selected: params.get(name) === t }, t || "any")))
      : h("input", { id, name, value: params.get(name) || "", autocomplete: "off",
        placeholder: name === "context" ? "case_id=case-9" : name === "since" || name === "until" ? "2026-12-08T09:00:00Z" : "" });
    return h("div", { class: "field" }, h("label", { for: id }, label), input);
  });
  return h("form", { id: "search-form", role: "search", onsubmit: (e) => {
    e.preventDefault();
    const data = new FormData(e.target);
    const chosen = {};
    for (const [name, value] of data.entries()) if (String(value).trim()) chosen[name] = String(value).trim();
    location.hash = `#/search?${query(chosen)}`;
  } }, h("div", { class: "fields" }, fields), h("button", { type: "submit", id: "search-submit" }, "Search"));
}

async function showSearch(gen, params, asked) {
  const form = searchForm(params);
  const results = h("section", { id: "results", "aria-live": "polite" });
  fill(view, h("h2", {}, "Search events"), form, results);
  if (!asked) {
    view.dataset.state = "ready";
    return;
  }
  const tally = startVerifying();
  let filters;
  try {
    filters = apiFilters(params);
  } catch (error) {
    fill(results, h("p", { class: "error", role: "alert" }, error.message));
    view.dataset.state = "ready";
    return;
  }
  const cursor = params.get("cursor");
  const back = (params.get("back") || "").split(",").filter(Boolean);
  const page = await api(`/api/v1/events?${query({ ...filters, cursor, limit: params.get("limit") || PAGE_SIZE })}`);
  if (gen !== generation) return;
  const k = await logKey();
  const events = page.events;
  const slots = events.map(() => h("td", {}, badge("pending")));
  const tenant = filters.tenant;
  const rows = events.map((item, i) => {
    const e = item.event;
    const eventHash = `#/event/${item.index}?${query({ run: e.run_id, tenant: e.tenant })}`;
    return h("tr", { "data-index": item.index, "data-event-id": e.event_id },
      h("td", { class: "nowrap" }, e.timestamp), h("td", {}, e.event_type), h("td", {}, `${e.actor?.type}:${e.actor?.id}`),
      h("td", {}, hashLink(`#/run/${encodeURIComponent(e.run_id)}?${query({ tenant: tenant || e.tenant })}`, e.run_id)),
      h("td", { class: "mono small" }, hashLink(eventHash, e.event_id)), h("td", { class: "num" }, String(item.index)), slots[i]);
  });
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  const here = Object.fromEntries(params.entries());
  if (cursor) {
    const previous = { ...here, cursor: back[back.length - 1] || "", back: back.slice(0, -1).join(",") };
    pager.append(hashLink(`#/search?${query(previous)}`, "← Previous page"), " ");
  }
  if (page.next_cursor) {
    // `back` lists the cursors of the pages before this one (the first page has none: an empty cursor).
    const next = { ...here, cursor: page.next_cursor, back: cursor ? [...back, cursor].join(",") : "" };
    pager.append(h("a", { href: `#/search?${query(next)}`, id: "next-page" }, "Next page →"));
  }
  const pruned = (page.pruned || []).map((p) => h("li", {}, `Entry ${p.index} (event ${p.event_id} of run ${p.run_id}) ` +
    `was pruned by the retention run at entry ${p.deletion_index}: its leaf hash still proves it was logged.`));
  const verdict = h("p", { id: "search-verdict" });
  fill(results,
    h("p", {}, events.length ? `${events.length} event${events.length > 1 ? "s" : ""} on this page.` : "No events match."),
    events.length ? h("table", { id: "events" }, h("thead", {}, h("tr", {}, ["Time", "Type", "Actor", "Run", "Event id",
      "Index", "Verification"].map((c) => h("th", { scope: "col" }, c)))), h("tbody", {}, rows)) : null,
    pruned.length ? h("ul", { class: "pruned" }, pruned) : null, verdict, pager);
  if (!events.length) {
    finishVerifying(tally);
    view.dataset.state = "ready";
    return;
  }
  let checkpoint;
  tally.started = performance.now(); // the verification's time: the checkpoint, then each event's proof and hashes
  try {
    checkpoint = await verifiedLatest(k, events[events.length - 1].index);
  } catch (error) {
    for (const slot of slots) setBadge(slot, tally, error);
    verdict.textContent = `The log's checkpoint does not verify: ${error.message}`;
    finishVerifying(tally);
    view.dataset.state = "ready";
    return;
  }
  await pool(events, PROOF_CONCURRENCY, async (item, i) => {
    try {
      await verifyEvent(item, checkpoint, await inclusionHashes(item.index, checkpoint));
      const outside = filterMismatch(item.event, filters);
      if (outside) throw new VerificationError(`the log listed an event outside the filter ${outside}`);
      setBadge(slots[i], tally, null);
    } catch (error) {
      setBadge(slots[i], tally, error instanceof ApiError ? new VerificationError(`no proof (${error.status}: ${error.message})`) : error);
    }
  });
  finishVerifying(tally);
  verdict.textContent = `Each event's entry was hashed in this browser and proven included in the checkpoint of size ` +
    `${checkpoint.size}, whose signature was verified with ${keyWords(k)}: ${tally.verified} verified, ${tally.failed} failed.`;
  view.dataset.state = "ready";
}

// --- #/run/<id> ------------------------------------------------------------------------------------------------

/** The events of a run as a causal tree: each under its parent_event_id; roots are those without one in the run. */
function causalTree(events) {
  const byId = new Map(events.map((item) => [item.event.event_id, { item, children: [] }]));
  const roots = [];
  for (const node of byId.values()) {
    const parent = node.item.event.parent_event_id;
    if (parent && byId.has(parent) && parent !== node.item.event.event_id) byId.get(parent).children.push(node);
    else roots.push(node);
  }
  return roots;
}

function summary(e) {
  const bits = [];
  if (e.policy?.decision) bits.push(`policy ${e.policy.decision}${e.policy.matched_rule ? ` (${e.policy.matched_rule})` : ""}`);
  if (e.approval?.approver) bits.push(`approver ${e.approval.approver.type}:${e.approval.approver.id}`);
  if (isReview(e)) bits.push(`review: ${reviewVerdict(e)}`);
  if (e.outcome?.status) bits.push(`outcome ${e.outcome.status}${e.outcome.reason ? `: ${e.outcome.reason}` : ""}`);
  if (e.error?.code) bits.push(`error ${e.error.code}`);
  return bits.join(" · ");
}

async function runTimeline(runId, tenant) {
  return api(`/api/v1/runs/${encodeURIComponent(runId)}/timeline?${query({ tenant })}`);
}

async function showRun(gen, runId, params) {
  const tenant = params.get("tenant") || undefined;
  const tally = startVerifying();
  const evidence = askEvidence(runId, tenant); // beside the timeline: its registry entries prove the producers' keys
  const timeline = await runTimeline(runId, tenant);
  if (gen !== generation) return;
  const k = await logKey();
  const slots = new Map();
  const renderNode = (node) => {
    const { item, children } = node;
    const e = item.event;
    const slot = h("span", { class: "slot" }, badge("pending"));
    slots.set(item.index, slot);
    return h("li", { "data-index": item.index, "data-event-type": e.event_type },
      h("div", { class: `node type-${e.event_type}` },
        h("span", { class: "etype" }, e.event_type), " ",
        hashLink(`#/event/${item.index}?${query({ run: runId, tenant })}`, e.event_id), " ",
        h("span", { class: "muted" }, `${e.timestamp} · ${e.actor?.type}:${e.actor?.id} · #${item.index}`), " ", slot,
        summary(e) ? h("div", { class: "summary" }, summary(e)) : null),
      children.length ? h("ol", {}, children.map(renderNode)) : null);
  };
  const tree = h("ol", { class: "tree", id: "timeline", "aria-label": `Run ${runId} as a causal tree` }, causalTree(timeline.events).map(renderNode));
  const download = h("button", { type: "button", id: "evidence", onclick: () => downloadEvidence(runId, tenant) }, "Download the evidence bundle");
  const verdict = h("p", { id: "run-verdict" });
  const pruned = (timeline.pruned || []).map((p) => h("li", {}, `Entry ${p.index} (${p.event_type} ${p.event_id}) was ` +
    `pruned by the retention run at entry ${p.deletion_index}.`));
  fill(view, h("h2", {}, `Run ${runId}`),
    h("p", {}, `${timeline.events.length} events, nested by parent_event_id (intent → policy decision → approval → tool ` +
      "calls → outcome). ", download),
    verdict, tree, pruned.length ? h("ul", { class: "pruned" }, pruned) : null);
  let checkpoint;
  // The verification's time: the checkpoint, the bundle's registry entries (its fetch, begun with the timeline's,
  // counted from here), then each event's proof, hashes and signature.
  tally.started = performance.now();
  try {
    checkpoint = await openCheckpoint(timeline.checkpoint, k);
  } catch (error) {
    for (const slot of slots.values()) setBadge(slot, tally, error);
    verdict.textContent = `The timeline's checkpoint does not verify: ${error.message}`;
    finishVerifying(tally);
    view.dataset.state = "ready";
    return;
  }
  const keys = await provenProducerKeys(evidence, k);
  await Promise.all(timeline.events.map((item) => verifyRunEvent(slots.get(item.index), tally, item, checkpoint,
    item.inclusion_proof, { run_id: runId, tenant }, keys)));
  finishVerifying(tally);
  const signatures = keys.registry
    ? `each producer's Ed25519 signature verified with a key the evidence bundle's registry entries prove (valid at ` +
      `the event's time, for its tenant): ${tally.signatures} signatures verified`
    : `producers' signatures not checked: ${keys.unchecked || keys.failed}`;
  verdict.textContent = `Every event's entry hashed in this browser and proven included in the checkpoint of size ` +
    `${checkpoint.size} (its signature verified with ${keyWords(k)}); ${signatures}. Events: ${tally.verified} verified, ` +
    `${tally.failed} failed` + (tally.unchecked ? `, ${tally.unchecked} included but their signatures not checked.` : ".");
  view.dataset.state = "ready";
}

async function downloadEvidence(runId, tenant) {
  try {
    say(`Fetching the evidence bundle of run ${runId}…`);
    const bytes = await api(`/api/v1/runs/${encodeURIComponent(runId)}/evidence?${query({ tenant })}`, { raw: true });
    const url = URL.createObjectURL(new Blob([bytes], { type: "application/json" }));
    const link = h("a", { href: url, download: `evidence-${runId}.json` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
    say(`Saved evidence-${runId}.json (${bytes.length} bytes): verify it offline with auditlog verify-evidence and the log key.`);
  } catch (error) {
    say(explain(error), "error");
  }
}

// --- #/event/<index> -------------------------------------------------------------------------------------------

async function readBlob(reference) {
  try {
    const bytes = await api(`/api/v1/blobs/${reference.sha256}`, { raw: true });
    const digest = hex(await sha256(bytes));
    let text = null;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(0, SHOWN_BLOB_BYTES));
      if (/[\u0000-\u0008\u000e-\u001f]/.test(text)) text = null;
    } catch { text = null; }
    return { bytes, matches: digest === reference.sha256, digest, text };
  } catch (error) {
    if (error instanceof ApiError && [403, 404, 410].includes(error.status)) return { unreadable: `not readable (${error.status}: ${error.message})` };
    throw error;
  }
}

function blobView(name, reference, blob) {
  const head = h("dt", {}, `${name}`);
  if (blob.unreadable) return [head, h("dd", {}, h("span", { class: "mono small" }, reference.sha256), " — ", blob.unreadable)];
  const check = blob.matches ? badge("verified") : badge("failed", `its bytes hash to ${blob.digest}, not the reference`);
  return [head, h("dd", { "data-blob": name }, h("span", { class: "mono small" }, reference.sha256), " ", check,
    ` SHA-256 recomputed in this browser (${blob.bytes.length} bytes${reference.media_type ? `, ${reference.media_type}` : ""}).`,
    blob.text !== null ? h("pre", { class: "blob" }, blob.text + (blob.bytes.length > SHOWN_BLOB_BYTES ? "\n…" : "")) : h("p", {}, "binary content, not shown"))];
}

function diffView(draft, final) {
  return h("div", { class: "diff", id: "review-diff", "aria-label": "Review diff, draft to final" }, textDiff(draft, final).map(([op, text]) =>
    op === "=" ? text : op === "-" ? h("del", { title: "removed by the reviewer" }, text) : h("ins", { title: "added by the reviewer" }, text)));
}

async function eventFromEntry(index, k) {
  const entry = await api(`/api/v1/entries/${index}`);
  const bytes = b64decode(entry.data);
  let envelope;
  try {
    envelope = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new VerificationError(`entry ${index} is not an audit event`);
  }
  if (envelope?.type !== "auditlog.envelope/v1") throw new VerificationError(`entry ${index} is not an audit event`);
  const item = { index, entry: entry.data, ...envelope };
  const checkpoint = await verifiedLatest(k, index);
  return { item, checkpoint, proof: await inclusionHashes(index, checkpoint) };
}

async function showEvent(gen, index, params) {
  const runId = params.get("run");
  const tenant = params.get("tenant") || undefined;
  const tally = startVerifying();
  const k = await logKey();
  let item;
  let checkpoint;
  let proof;
  let keys = { unchecked: "open the event from its run, whose evidence bundle proves its producer's keys" };
  if (runId) {
    const evidence = askEvidence(runId, tenant);
    const timeline = await runTimeline(runId, tenant);
    item = timeline.events.find((e) => e.index === index);
    if (!item) throw new Error(`run ${runId} has no event at index ${index}`);
    proof = item.inclusion_proof;
    try {
      checkpoint = await openCheckpoint(timeline.checkpoint, k);
    } catch (error) {
      checkpoint = error;
    }
    keys = await provenProducerKeys(evidence, k);
  } else {
    ({ item, checkpoint, proof } = await eventFromEntry(index, k));
  }
  if (gen !== generation) return;
  const e = item.event;
  const slot = h("span", { id: "event-badge" }, badge("pending"));
  const facts = [
    ["Event id", e.event_id], ["Type", e.event_type], ["Time", e.timestamp], ["Tenant", e.tenant],
    ["Actor", `${e.actor?.type}:${e.actor?.id}`], ["On behalf of", e.on_behalf_of && `${e.on_behalf_of.type}:${e.on_behalf_of.id}`],
    ["Run", hashLink(`#/run/${encodeURIComponent(e.run_id)}?${query({ tenant })}`, e.run_id)], ["Trace", e.trace_id],
    ["Parent", e.parent_event_id], ["Producer", `${item.producer} (key ${item.key_id})`], ["Log index", String(index)],
  ].filter(([, v]) => v);
  const payloads = h("dl", { class: "facts", id: "payloads" });
  const review = h("section", { id: "review" });
  fill(view, h("h2", {}, `Event ${e.event_id}`), h("p", {}, slot),
    h("dl", { class: "facts" }, facts.map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)])),
    h("h3", {}, "Payloads"), payloads, review,
    h("details", { open: true }, h("summary", {}, "The event as signed"), h("pre", { class: "json" }, JSON.stringify(e, null, 2))));
  const { ok, signed } = await verifyRunEvent(slot, tally, item, checkpoint, proof, runId ? { run_id: runId } : {}, keys);
  if (ok) {
    slot.append(` Its entry was hashed in this browser and proven included in the checkpoint of size ${checkpoint.size}, ` +
      `signed by ${keyWords(k)}` + (signed ? `; the producer's Ed25519 signature verified with key ${item.key_id} of ` +
      `${item.producer}, which the evidence bundle's registry entries prove valid at ${e.timestamp} for ${e.tenant}.` : "."));
  }
  const references = [["input", e.input], ["output", e.output]].filter(([, r]) => r?.sha256);
  const blobs = {};
  if (!references.length) payloads.append(h("p", {}, "This event references no payload."));
  for (const [name, reference] of references) {
    blobs[name] = await readBlob(reference);
    payloads.append(...blobView(name === "input" ? "Input (what was seen)" : "Output (what was let through)", reference, blobs[name]));
  }
  if (isReview(e)) {
    const verdict = reviewVerdict(e);
    review.append(h("h3", {}, "Human review"), h("dl", { class: "facts" },
      h("dt", {}, "Verdict"), h("dd", { id: "review-verdict" }, verdict),
      h("dt", {}, "Reviewer"), h("dd", {}, `${e.actor?.type}:${e.actor?.id}`),
      h("dt", {}, "When"), h("dd", {}, e.timestamp),
      e.approval?.review_dwell_ms !== undefined ? [h("dt", {}, "Looked for"), h("dd", {}, `${(e.approval.review_dwell_ms / 1000).toFixed(1)} s`)] : null,
      e.approval?.approver ? [h("dt", {}, "Approver"), h("dd", {}, `${e.approval.approver.type}:${e.approval.approver.id}`)] : null));
    if (blobs.input?.text != null && blobs.output?.text != null) {
      review.append(h("p", {}, "What the reviewer changed, word by word (struck: removed from the draft; underlined: added):"),
        diffView(blobs.input.text, blobs.output.text));
    } else if (e.input && e.output) {
      review.append(h("p", {}, "The diff needs both the draft and the final text readable by this credential."));
    }
  }
  finishVerifying(tally);
  view.dataset.state = "ready";
}

// --- #/entry/<index> -------------------------------------------------------------------------------------------

async function showEntry(gen, index) {
  const input = h("input", { id: "entry-index", name: "index", inputmode: "numeric", pattern: "[0-9]+", value: index ?? "", required: true });
  const form = h("form", { id: "entry-form", onsubmit: (e) => {
    e.preventDefault();
    location.hash = `#/entry/${input.value.trim()}`;
  } }, h("label", { for: "entry-index" }, "Entry index "), input, " ", h("button", { type: "submit" }, "Show"));
  const out = h("section", { id: "entry" });
  fill(view, h("h2", {}, "Entry by index"), form, out);
  if (index === null) {
    view.dataset.state = "ready";
    return;
  }
  const tally = startVerifying();
  const k = await logKey();
  let entry;
  try {
    entry = await api(`/api/v1/entries/${index}`);
  } catch (error) {
    fill(out, h("p", { class: "error", role: "alert" }, explain(error),
      error.status === 403 ? " Entry contents need entries:read (a monitor or admin credential); an auditor sees events through search and runs." : ""));
    view.dataset.state = "ready";
    return;
  }
  if (gen !== generation) return;
  const bytes = b64decode(entry.data);
  const slot = h("span", { id: "entry-badge" }, badge("pending"));
  let shown = null;
  let link = null;
  try {
    const parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
    shown = JSON.stringify(parsed, null, 2);
    if (parsed?.type === "auditlog.envelope/v1") link = hashLink(`#/event/${index}?${query({ run: parsed.event.run_id, tenant: parsed.event.tenant })}`, "Open it as an event");
  } catch {
    try {
      shown = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(0, SHOWN_BLOB_BYTES));
    } catch { shown = null; }
  }
  fill(out, h("p", {}, slot), h("dl", { class: "facts" },
    h("dt", {}, "Index"), h("dd", {}, String(entry.index)), h("dt", {}, "Received"), h("dd", {}, entry.received_at),
    h("dt", {}, "Size"), h("dd", {}, `${bytes.length} bytes`), h("dt", {}, "Leaf hash (served)"), h("dd", { class: "mono" }, entry.leaf_hash)),
  link, shown !== null ? h("pre", { class: "json" }, shown) : h("p", {}, "binary content, not shown"));
  try {
    const checkpoint = await verifiedLatest(k, index);
    const leaf = await leafHash(bytes);
    if (b64encode(leaf) !== entry.leaf_hash) throw new VerificationError("the served leaf hash is not the hash of the served bytes");
    await proveIncluded(leaf, index, checkpoint);
    setBadge(slot, tally, null);
    slot.append(` Hashed in this browser and proven included in the checkpoint of size ${checkpoint.size}, signed by ${keyWords(k)}.`);
  } catch (error) {
    setBadge(slot, tally, error);
  }
  finishVerifying(tally);
  view.dataset.state = "ready";
}

// --- #/drills --------------------------------------------------------------------------------------------------

async function showDrills(gen, params) {
  const tenant = params.get("tenant") || "";
  const input = h("input", { id: "drills-tenant", name: "tenant", value: tenant, required: true, autocomplete: "off" });
  const form = h("form", { id: "drills-form", onsubmit: (e) => {
    e.preventDefault();
    location.hash = `#/drills?${query({ tenant: input.value.trim() })}`;
  } }, h("label", { for: "drills-tenant" }, "Tenant "), input, " ", h("button", { type: "submit" }, "Show drills"));
  const out = h("section", { id: "drills" });
  fill(view, h("h2", {}, "Audit drills"), h("p", { class: "note" }, "Each drill picked runs of the tenant at random, " +
    "verified their evidence bundles offline, checked them for completeness and timed it (auditlog drill); its result " +
    "is a log entry, whose inclusion is verified here."), form, out);
  if (!tenant) {
    view.dataset.state = "ready";
    return;
  }
  const tally = startVerifying();
  let answer;
  try {
    answer = await api(`/api/v1/drills?${query({ tenant, limit: 20, after: params.get("after") })}`);
  } catch (error) {
    const missing = error instanceof ApiError && error.status === 404 && /nothing is served/i.test(error.message);
    fill(out, h("p", { class: "error", role: "alert" },
      missing ? "This server does not record audit drills (GET /api/v1/drills answered 404)." : explain(error)));
    view.dataset.state = "ready";
    return;
  }
  if (gen !== generation) return;
  if (!answer.drills.length) {
    fill(out, h("p", {}, `No drills recorded for ${tenant}: run auditlog drill --tenant ${tenant} --runs N.`));
    view.dataset.state = "ready";
    return;
  }
  const slots = answer.drills.map(() => h("td", {}, badge("pending")));
  const rows = answer.drills.map((d, position) => {
    const s = d.summary || {};
    const runs = (d.runs || []).map((r) => h("li", {},
      hashLink(`#/run/${encodeURIComponent(r.run_id)}?${query({ tenant })}`, r.run_id),
      ` — ${r.events} events, evidence ${r.evidence}${r.failed_check ? ` (${r.failed_check})` : ""}, ` +
      `${r.findings_total ?? (r.findings || []).length} findings` +
      (r.time_to_evidence_ms === null || r.time_to_evidence_ms === undefined ? "" : `, ${r.time_to_evidence_ms} ms to evidence`),
      (r.findings || []).length ? h("ul", {}, r.findings.map((f) => h("li", {}, f.check,
        f.index === null || f.index === undefined ? "" : [" at ", hashLink(`#/event/${f.index}?${query({ run: r.run_id, tenant })}`,
          `entry ${f.index}`)]))) : null));
    const checks = (d.checks || []).map((c) => h("li", {}, `${c.check}: ${c.status}${c.detail ? ` — ${c.detail}` : ""}`));
    const times = s.time_to_evidence_ms || {};
    return h("tr", { "data-index": d.index },
      h("td", { class: "num" }, hashLink(`#/entry/${d.index}`, String(d.index))), h("td", { class: "nowrap" }, d.at),
      h("td", {}, d.by),
      h("td", {}, d.scenario, d.period && (d.period.since || d.period.until)
        ? h("div", { class: "note" }, `events ${d.period.since || "…"} to ${d.period.until || "…"}`) : null),
      h("td", { class: "num" }, String(d.seed)),
      h("td", { class: s.failed || s.checks_failed ? "error" : "" },
        `${s.passed} of ${s.runs} runs passed, ${s.findings} findings` + (s.checks_failed ? `, ${s.checks_failed} checks failed` : "")),
      h("td", {}, times.median === null || times.median === undefined ? "—" : `median ${times.median} ms, max ${times.max} ms`),
      h("td", {}, h("details", {}, h("summary", {}, `${(d.runs || []).length} runs`), h("ul", {}, runs),
        checks.length ? h("ul", {}, checks) : null)), slots[position]);
  });
  const more = answer.next_cursor !== null && answer.next_cursor !== undefined
    ? hashLink(`#/drills?${query({ tenant, after: answer.next_cursor })}`, "Older drills →") : null;
  fill(out, h("table", { id: "drills-table" }, h("thead", {}, h("tr", {}, ["Entry", "At", "By", "Scenario", "Seed",
    "Result", "Time to evidence", "Runs", "Verification"].map((c) => h("th", { scope: "col" }, c)))), h("tbody", {}, rows)), more);
  // Each drill is a log entry: the canonical JSON of its record. Hash it here and prove it in the checkpoint.
  try {
    const k = await logKey();
    const checkpoint = await verifiedLatest(k, Math.max(...answer.drills.map((d) => d.index)));
    await pool(answer.drills, PROOF_CONCURRENCY, async (drill, i) => {
      try {
        const { index, ...record } = drill;
        const leaf = await leafHash(new TextEncoder().encode(canonicalJson(record)));
        await proveIncluded(leaf, index, checkpoint);
        setBadge(slots[i], tally, null);
      } catch (error) {
        setBadge(slots[i], tally, error);
      }
    });
  } catch (error) {
    for (const slot of slots) setBadge(slot, tally, error);
  }
  finishVerifying(tally);
  view.dataset.state = "ready";
}

// --- the router --------------------------------------------------------------------------------------------------

const NAV = [["#/state", "Log state"], ["#/search", "Search events"], ["#/entry", "Entry by index"], ["#/drills", "Drills"]];

async function route() {
  const hash = location.hash || "#/state";
  if (!hash.startsWith("#/")) return; // an in-page anchor (the skip link): not a view
  const gen = ++generation;
  const [path, search = ""] = hash.slice(1).split("?");
  const params = new URLSearchParams(search);
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  for (const link of document.querySelectorAll("#nav a")) {
    link.toggleAttribute("aria-current", `#/${parts[0] || "state"}` === link.getAttribute("href"));
  }
  view.dataset.state = "loading";
  fill(view, h("p", {}, "Loading…"));
  say("");
  try {
    const [name, arg] = parts;
    const index = arg !== undefined && /^[0-9]{1,15}$/.test(arg) ? Number(arg) : null;
    if (!name || name === "state") await showState(gen);
    else if (name === "search") await showSearch(gen, params, hash.includes("?"));
    else if (name === "run" && arg) await showRun(gen, arg, params);
    else if (name === "event" && index !== null) await showEvent(gen, index, params);
    else if (name === "entry") await showEntry(gen, index);
    else if (name === "drills") await showDrills(gen, params);
    else fill(view, h("p", {}, `No view ${hash}.`));
  } catch (error) {
    if (gen !== generation) return;
    view.append(h("p", { class: "error", role: "alert", id: "view-error" }, explain(error)));
  }
  if (gen === generation) {
    view.dataset.state = "ready";
    document.title = `auditlog explorer — ${(parts[0] || "state")}`;
  }
}

function start() {
  fill(document.getElementById("nav"), ...NAV.map(([href, text]) => h("a", { href }, text)));
  document.getElementById("skip-link").addEventListener("click", (e) => {
    e.preventDefault();
    document.getElementById("main").focus();
  });
  renderSignIn();
  window.addEventListener("hashchange", route);
  route();
}

start();
