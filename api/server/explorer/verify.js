// What the explorer checks in the browser, with WebCrypto only (SHA-256 and Ed25519): no library, no server help.
//
// - signed notes (c2sp.org/signed-note) and checkpoints (c2sp.org/tlog-checkpoint): a verifier key is
//   "<name>+<8 hex key id>+<base64(0x01 || 32-byte Ed25519 key)>", its key id the first 4 bytes of
//   SHA-256(name || 0x0A || 0x01 || key); a checkpoint is believed when a signature line of that name and key id
//   verifies over the note's text;
// - witness cosignatures (c2sp.org/tlog-cosignature, type 0x04): Ed25519 over
//   "cosignature/v1\ntime <t>\n" || checkpoint text, the line's signature being u64 t || signature;
// - RFC 9162 inclusion proofs: leaf hash SHA-256(0x00 || entry), node hash SHA-256(0x01 || left || right);
// - that an event shown is the one its entry holds (the entry is the canonical JSON of the signed envelope, as
//   `auditlog events` checks it: api/client/log_client.py);
// - producers' signatures (check 6 of log/audit/evidence.py): the producer registry folded from a run's evidence
//   bundle's registry-change entries, each proven in the bundle's checkpoint; an event's Ed25519 signature over its
//   canonical bytes, sliced from its entry as log/audit/report.py does, by a key of that registry valid at the
//   event's timestamp (log/audit/registry.py, rule 1) of a producer registered for the event's tenant.
//
// Every failure throws VerificationError whose message says why, for the page to show as "failed: <why>".

export class VerificationError extends Error {}

export const ENVELOPE_TYPE = "auditlog.envelope/v1";
const ED25519 = 0x01;
const COSIGNATURE_ED25519 = 0x04;
const SIG_PREFIX = "\u2014 "; // em dash, space
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder("utf-8", { fatal: true });

// --- bytes ---------------------------------------------------------------------------------------------------

export function b64decode(text, what = "base64") {
  if (typeof text !== "string" || text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
    throw new VerificationError(`${what} is not standard padded base64`);
  }
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

export function b64encode(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function fromHex(text) {
  if (!/^([0-9a-fA-F]{2})*$/.test(text)) throw new VerificationError(`not hex: ${text.slice(0, 40)}`);
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(i * 2, 2), 16);
  return out;
}

export function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

// --- RFC 9162 ------------------------------------------------------------------------------------------------

export function leafHash(entry) {
  return sha256(concat(Uint8Array.of(0), entry));
}

export function nodeHash(left, right) {
  return sha256(concat(Uint8Array.of(1), left, right));
}

/** The root an inclusion proof gives for `leaf` at `index` in a tree of `size` (RFC 9162 2.1.3.2), or a throw. */
export async function rootFromInclusionProof(leaf, index, size, proof) {
  let fn = BigInt(index);
  let sn = BigInt(size) - 1n;
  if (fn > sn) throw new VerificationError(`index ${index} is not in a tree of size ${size}`);
  let r = leaf;
  for (const p of proof) {
    if (p.length !== 32) throw new VerificationError("a proof hash is not 32 bytes");
    if (sn === 0n) throw new VerificationError(`the proof has ${proof.length} hashes, more than the tree needs`);
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(p, r);
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw new VerificationError(`the proof has ${proof.length} hashes, fewer than the tree needs`);
  return r;
}

export async function verifyInclusion(leaf, index, size, proof, root) {
  const computed = await rootFromInclusionProof(leaf, index, size, proof);
  if (!equalBytes(computed, root)) {
    throw new VerificationError(`the inclusion proof leads to root ${b64encode(computed).slice(0, 12)}…, not the ` +
      `checkpoint's ${b64encode(root).slice(0, 12)}…`);
  }
  return true;
}

// --- signed notes and checkpoints ----------------------------------------------------------------------------

function validKeyName(name) {
  return typeof name === "string" && name.length > 0 && !/[\s+\u0000-\u001f\u007f\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/u.test(name);
}

export async function keyId(name, type, key) {
  const digest = await sha256(concat(utf8.encode(name), Uint8Array.of(0x0a, type), key));
  return ((digest[0] << 24) | (digest[1] << 16) | (digest[2] << 8) | digest[3]) >>> 0;
}

function idHex(id) {
  return id.toString(16).padStart(8, "0");
}

/** `<name>+<hex id>+<base64(type || key)>`, an Ed25519 key (0x01) or an Ed25519 cosignature key (0x04). */
export async function parseVerifierKey(text) {
  if (typeof text !== "string") throw new VerificationError("the verifier key is not text");
  const trimmed = text.trim();
  const first = trimmed.indexOf("+");
  const second = first < 0 ? -1 : trimmed.indexOf("+", first + 1);
  if (second < 0) throw new VerificationError("a verifier key is <name>+<key id>+<base64 key>");
  const name = trimmed.slice(0, first);
  const claimed = trimmed.slice(first + 1, second);
  if (!validKeyName(name)) throw new VerificationError(`the verifier key's name ${JSON.stringify(name)} is not valid`);
  if (!/^[0-9a-f]{8}$/.test(claimed)) throw new VerificationError("the verifier key's id is not 8 lowercase hex digits");
  const material = b64decode(trimmed.slice(second + 1), "the verifier key");
  const type = material[0];
  const key = material.slice(1);
  if ((type !== ED25519 && type !== COSIGNATURE_ED25519) || key.length !== 32) {
    throw new VerificationError(`the verifier key is of type 0x${(type ?? 0).toString(16)} with ${key.length} bytes; ` +
      "the explorer checks Ed25519 keys (0x01, and 0x04 for witnesses)");
  }
  const id = await keyId(name, type, key);
  if (idHex(id) !== claimed) {
    throw new VerificationError(`the verifier key's id ${claimed} does not match its key, which hashes to ${idHex(id)}`);
  }
  return { name, id, type, key, text: trimmed, label: `${name}+${claimed}` };
}

/** A signed note's text (ending in a newline) and its signature lines, checked for form only. */
export function parseNote(note) {
  const split = note.lastIndexOf("\n\n");
  if (split < 0) throw new VerificationError("the note has no blank line before its signatures");
  const text = note.slice(0, split + 1);
  const block = note.slice(split + 2);
  if (!block.endsWith("\n")) throw new VerificationError("the note's last signature line does not end with a newline");
  const signatures = block.slice(0, -1).split("\n").map((line) => {
    if (!line.startsWith(SIG_PREFIX)) throw new VerificationError("a signature line does not start with an em dash");
    const rest = line.slice(SIG_PREFIX.length);
    const space = rest.indexOf(" ");
    const name = rest.slice(0, space);
    if (space < 0 || !validKeyName(name)) throw new VerificationError("a signature line has no valid key name");
    const raw = b64decode(rest.slice(space + 1), `the signature from ${name}`);
    if (raw.length <= 4) throw new VerificationError(`the signature from ${name} is too short`);
    const id = ((raw[0] << 24) | (raw[1] << 16) | (raw[2] << 8) | raw[3]) >>> 0;
    return { name, id, signature: raw.slice(4) };
  });
  return { text, signatures };
}

/** origin, size (BigInt and Number), root of a checkpoint's text (tlog-checkpoint), strictly. */
export function parseCheckpoint(text) {
  if (!text.endsWith("\n")) throw new VerificationError("the checkpoint text does not end with a newline");
  const lines = text.slice(0, -1).split("\n");
  if (lines.length < 3 || lines.some((l) => l === "")) throw new VerificationError("the checkpoint has fewer than 3 lines or an empty one");
  const [origin, sizeText, rootText] = lines;
  if (!/^(0|[1-9][0-9]{0,18})$/.test(sizeText)) throw new VerificationError(`the checkpoint size ${sizeText.slice(0, 30)} is not a decimal`);
  if (!/^[A-Za-z0-9+/]{43}=$/.test(rootText)) throw new VerificationError("the checkpoint root is not base64 of 32 bytes");
  const size = BigInt(sizeText);
  return { origin, size: Number(size), bigSize: size, root: b64decode(rootText), rootB64: rootText, extensions: lines.slice(3) };
}

function importEd25519(key) {
  return crypto.subtle.importKey("raw", key, { name: "Ed25519" }, false, ["verify"]);
}

async function ed25519Verify(key, signature, message) {
  const imported = key instanceof CryptoKey ? key : await importEd25519(key);
  return crypto.subtle.verify({ name: "Ed25519" }, imported, signature, message);
}

/**
 * Open a signed checkpoint with `verifier` (parseVerifierKey's): the note's signature line of that name and key id
 * must verify over its text. Returns the checkpoint (parseCheckpoint's) with `note`, its text and signatures.
 */
export async function verifyCheckpoint(note, verifier) {
  const parsed = parseNote(note);
  const mine = parsed.signatures.filter((s) => s.name === verifier.name && s.id === verifier.id);
  if (mine.length === 0) {
    const by = parsed.signatures.map((s) => `${s.name}+${idHex(s.id)}`).join(", ");
    throw new VerificationError(`the checkpoint carries no signature by the key ${verifier.label} (it is signed by ${by})`);
  }
  for (const sig of mine) {
    if (sig.signature.length !== 64 || !(await ed25519Verify(verifier.key, sig.signature, utf8.encode(parsed.text)))) {
      throw new VerificationError(`the signature by ${verifier.label} does not verify over the checkpoint`);
    }
  }
  return { ...parseCheckpoint(parsed.text), note, text: parsed.text, signatures: parsed.signatures };
}

/**
 * A witness's cosignature (type 0x04) on `checkpoint` (verifyCheckpoint's), by `verifier` (a 0x04 key): its
 * timestamp (seconds) when one verifies, else a throw.
 */
export async function verifyCosignature(checkpoint, verifier) {
  if (verifier.type !== COSIGNATURE_ED25519) throw new VerificationError(`${verifier.label} is not a cosignature key`);
  const mine = checkpoint.signatures.filter((s) => s.name === verifier.name && s.id === verifier.id);
  if (mine.length === 0) throw new VerificationError(`no cosignature by ${verifier.label}`);
  for (const sig of mine) {
    if (sig.signature.length !== 72) throw new VerificationError(`the cosignature by ${verifier.label} is not 72 bytes`);
    let time = 0n;
    for (let i = 0; i < 8; i++) time = (time << 8n) | BigInt(sig.signature[i]);
    const message = utf8.encode(`cosignature/v1\ntime ${time}\n${checkpoint.text}`);
    if (!(await ed25519Verify(verifier.key, sig.signature.slice(8), message))) {
      throw new VerificationError(`the cosignature by ${verifier.label} does not verify`);
    }
    return Number(time);
  }
}

// --- events --------------------------------------------------------------------------------------------------

function canonicalEqual(a, b) {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== "object") return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === b.length && a.every((v, i) => canonicalEqual(v, b[i]));
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && canonicalEqual(a[k], b[k]));
}

/**
 * RFC 8785 canonical JSON of a value made of objects, arrays, strings, integers, booleans and null: members sorted
 * by UTF-16 code units, no whitespace, strings and numbers as ECMAScript serializes them (which RFC 8785 adopts).
 * The log's own records (a drill, a retention run) are entries of exactly these bytes.
 */
export function canonicalJson(value) {
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(",")}}`;
}

/** The signed envelope an entry's bytes hold, checked to be the one `item` (a listed event) shows beside it. */
export function envelopeShown(item, entry) {
  let envelope;
  try {
    envelope = JSON.parse(fromUtf8.decode(entry));
  } catch {
    throw new VerificationError("its entry is not JSON");
  }
  if (!envelope || envelope.type !== ENVELOPE_TYPE) throw new VerificationError("its entry is not a signed audit event");
  for (const name of ["producer", "key_id", "signature", "event"]) {
    if (!canonicalEqual(envelope[name], item[name])) {
      throw new VerificationError(`the event shown is not the one its entry holds (${name} differs)`);
    }
  }
  return envelope;
}

/**
 * Verify one listed event (an item of GET /api/v1/events or of a timeline: index, entry, producer, key_id,
 * signature, event) against a verified checkpoint with the inclusion proof `proof` (base64 hashes): the leaf hash
 * of its entry bytes, computed here, leads to the checkpoint's root; the event shown is the one the entry holds;
 * and, when given, `expect` (e.g. {run_id: "..."}) holds for the event. Returns the leaf hash; throws why not.
 */
export async function verifyEvent(item, checkpoint, proof, expect = {}) {
  if (!Number.isSafeInteger(item.index) || item.index < 0) throw new VerificationError("the event has no index");
  if (!Array.isArray(proof)) throw new VerificationError("no inclusion proof");
  const entry = b64decode(item.entry || "", "its entry");
  const leaf = await leafHash(entry);
  const hashes = proof.map((h, i) => b64decode(h, `proof hash ${i}`));
  await verifyInclusion(leaf, item.index, checkpoint.bigSize ?? checkpoint.size, hashes, checkpoint.root);
  const envelope = envelopeShown(item, entry);
  for (const [name, value] of Object.entries(expect)) {
    if (value !== undefined && value !== null && value !== "" && envelope.event[name] !== value) {
      throw new VerificationError(`the event is outside what was asked for (${name} is not ${value})`);
    }
  }
  return leaf;
}

/**
 * The first filter of GET /api/v1/events (tenant, run_id, trace_id, actor_id, actor_type, event_type,
 * context.<name>, since, until) that `event` does not satisfy, as "name=value"; null when it satisfies them all.
 */
export function filterMismatch(event, filters) {
  for (const [name, value] of Object.entries(filters)) {
    if (name === "since" || name === "until") {
      const at = Date.parse(event.timestamp);
      const bound = Date.parse(value);
      if (Number.isNaN(at) || (name === "since" ? at < bound : at >= bound)) return `${name}=${value}`;
      continue;
    }
    let actual;
    if (name === "actor_id" || name === "actor_type") actual = event.actor?.[name.slice(6)];
    else if (name.startsWith("context.")) actual = event.context?.[name.slice(8)];
    else if (["case_id", "alert_id", "customer_id"].includes(name)) actual = event.context?.[name];
    else actual = event[name];
    if (actual !== value) return `${name}=${value}`;
  }
  return null;
}

// --- producers' signatures ------------------------------------------------------------------------------------

export const REGISTRY_CHANGE_TYPE = "auditlog.registry-change/v1";
// An envelope entry is canonical JSON, members sorted: the signed event's bytes come first, up to the top-level
// key_id (the last one: a nested "key_id" inside the event comes before it). As log/audit/report.py slices them.
const EVENT_PREFIX = utf8.encode('{"event":');
const EVENT_END = utf8.encode(',"key_id":');
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** A producer key's id (log/audit/registry.py key_id_for): the first 16 hex digits of SHA-256 of its 32 bytes. */
export async function producerKeyId(publicKey) {
  return hex(await sha256(publicKey)).slice(0, 16);
}

function timeMs(text, what) {
  const ms = typeof text === "string" && TIMESTAMP.test(text) ? Date.parse(text) : NaN;
  if (Number.isNaN(ms)) throw new VerificationError(`${what} is not an RFC 3339 UTC time with milliseconds`);
  return ms;
}

async function applyRegistryChange(producers, change, index) {
  const where = `registry entry ${index}`;
  if (!change || change.type !== REGISTRY_CHANGE_TYPE) throw new VerificationError(`${where} is not a registry change`);
  const existing = producers.get(change.producer);
  if (change.change === "producer-registered") {
    if (existing) throw new VerificationError(`${where} registers producer ${change.producer} a second time`);
    if (!Array.isArray(change.tenants) || !change.tenants.length) throw new VerificationError(`${where} names no tenants`);
    producers.set(change.producer, { tenants: new Set(change.tenants), keys: new Map() });
    return;
  }
  if (!existing) throw new VerificationError(`${where} changes producer ${change.producer}, which is not registered`);
  const key = existing.keys.get(change.key_id);
  if (change.change === "key-added") {
    if (key) throw new VerificationError(`${where} adds key ${change.key_id} a second time`);
    const publicKey = b64decode(change.public_key || "", `${where}'s public key`);
    if (publicKey.length !== 32) throw new VerificationError(`${where}'s public key is not 32 bytes`);
    const derived = await producerKeyId(publicKey);
    if (derived !== change.key_id) throw new VerificationError(`${where} names key ${change.key_id}, but its key's id is ${derived}`);
    existing.keys.set(change.key_id, {
      producer: change.producer, keyId: derived, publicKey, notBefore: timeMs(change.not_before, `${where}'s not_before`),
      notAfter: change.not_after === null || change.not_after === undefined ? null : timeMs(change.not_after, `${where}'s not_after`),
      revokedAt: null, imported: null,
    });
    return;
  }
  if (!key) throw new VerificationError(`${where} changes key ${change.key_id}, which producer ${change.producer} does not have`);
  if (key.revokedAt !== null) throw new VerificationError(`${where} changes key ${change.key_id}, which is revoked`);
  if (change.change === "key-retired") {
    if (key.notAfter !== null) throw new VerificationError(`${where} retires key ${change.key_id} a second time`);
    key.notAfter = timeMs(change.not_after, `${where}'s not_after`);
  } else if (change.change === "key-revoked") {
    key.revokedAt = timeMs(change.revoked_at, `${where}'s revoked_at`);
  } else {
    throw new VerificationError(`${where} is a change of unknown kind ${String(change.change).slice(0, 40)}`);
  }
}

/**
 * The producer registry an evidence bundle (log/audit/evidence.py) proves: its `registry` entries, in increasing log
 * order, each included in `checkpoint` (the bundle's own, verified by the caller), folded as log/audit/registry.py
 * folds them. A Map producer -> {tenants: Set, keys: Map key id -> key}; throws the first entry that fails.
 */
export async function registryFromBundle(bundle, checkpoint) {
  if (!bundle || !Array.isArray(bundle.registry)) throw new VerificationError("the evidence bundle has no registry entries");
  const producers = new Map();
  let last = -1;
  for (const record of bundle.registry) {
    if (!Number.isSafeInteger(record?.index) || record.index <= last) {
      throw new VerificationError("the evidence bundle's registry entries are not in increasing log order");
    }
    last = record.index;
    const entry = b64decode(record.entry || "", `registry entry ${record.index}`);
    if (!Array.isArray(record.inclusion_proof)) throw new VerificationError(`registry entry ${record.index} has no inclusion proof`);
    const hashes = record.inclusion_proof.map((x, i) => b64decode(x, `registry entry ${record.index}'s proof hash ${i}`));
    try {
      await verifyInclusion(await leafHash(entry), record.index, checkpoint.bigSize ?? checkpoint.size, hashes, checkpoint.root);
    } catch (error) {
      throw new VerificationError(`registry entry ${record.index}: ${error.message}`);
    }
    let change;
    try {
      change = JSON.parse(fromUtf8.decode(entry));
    } catch {
      throw new VerificationError(`registry entry ${record.index} is not JSON`);
    }
    await applyRegistryChange(producers, change, record.index);
  }
  return producers;
}

function lastIndexOfBytes(haystack, needle) {
  outer: for (let i = haystack.length - needle.length; i >= 0; i--) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/** The exact bytes of the event an envelope entry holds: what the producer signed (RFC 8785 canonical JSON). */
export function signedEventBytes(entry) {
  const end = lastIndexOfBytes(entry, EVENT_END);
  if (end < EVENT_PREFIX.length || !equalBytes(entry.subarray(0, EVENT_PREFIX.length), EVENT_PREFIX)) {
    throw new VerificationError("its entry is not an envelope in canonical form");
  }
  return entry.subarray(EVENT_PREFIX.length, end);
}

/**
 * Check 6 of an evidence bundle for one envelope entry (bytes): its producer and key are in `registry`
 * (registryFromBundle's), the producer may write for the event's tenant, the key was valid at the event's
 * timestamp, and the Ed25519 signature verifies over the event's bytes as the entry holds them. Throws why not.
 */
export async function verifyProducerSignature(entry, registry) {
  let envelope;
  try {
    envelope = JSON.parse(fromUtf8.decode(entry));
  } catch {
    throw new VerificationError("its entry is not JSON");
  }
  if (!envelope || envelope.type !== ENVELOPE_TYPE || !envelope.event) throw new VerificationError("its entry is not a signed audit event");
  const { producer, key_id: keyId, event } = envelope;
  const message = signedEventBytes(entry);
  let sliced;
  try {
    sliced = JSON.parse(fromUtf8.decode(message));
  } catch { sliced = undefined; }
  if (!canonicalEqual(sliced, event)) throw new VerificationError("its entry is not an envelope in canonical form");
  const registered = registry.get(producer);
  if (!registered) throw new VerificationError(`producer ${producer} is not registered (no registry entry in the evidence)`);
  const key = registered.keys.get(keyId);
  if (!key) throw new VerificationError(`key ${keyId} is not registered for producer ${producer}`);
  if (!registered.tenants.has(event.tenant)) throw new VerificationError(`producer ${producer} is not registered for tenant ${event.tenant}`);
  const at = timeMs(event.timestamp, "the event's timestamp");
  if (at < key.notBefore || (key.notAfter !== null && at >= key.notAfter) || (key.revokedAt !== null && at >= key.revokedAt)) {
    throw new VerificationError(`key ${keyId} of ${producer} was not valid at ${event.timestamp}` +
      (key.revokedAt !== null && at >= key.revokedAt ? " (revoked from then on)" : at < key.notBefore ? " (not yet valid)" : " (retired)"));
  }
  const signature = b64decode(envelope.signature || "", "its signature");
  key.imported ||= importEd25519(key.publicKey);
  if (signature.length !== 64 || !(await ed25519Verify(await key.imported, signature, message))) {
    throw new VerificationError(`the signature does not verify with key ${keyId} of ${producer}`);
  }
  return key;
}

// --- RFC 3161 --------------------------------------------------------------------------------------------------

/**
 * The genTime of a DER TimeStampResp, read without verifying it: the first GeneralizedTime (tag 0x18) in the
 * token, which is TSTInfo's (it comes before the certificates and the signer's attributes). Null if none is found.
 */
export function timestampGenTime(der) {
  for (let i = 0; i + 2 < der.length; i++) {
    if (der[i] !== 0x18) continue;
    const length = der[i + 1];
    if (length < 15 || length > 24 || i + 2 + length > der.length) continue;
    const text = String.fromCharCode(...der.subarray(i + 2, i + 2 + length));
    const m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\.\d+)?Z$/.exec(text);
    if (m) return `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}${m[7] || ""}Z`;
  }
  return null;
}
