// Human review, read as log/audit/review.py reads it (that module is the definition; this mirrors it for the page,
// and tests/e2e/test_explorer_browser.py holds the two to the same answers).
//
// A review is a "human_review" event, or an "approval" naming its approval.approver. Its verdict is
// extensions.review.decision when the producer states one; else "rejected" when outcome.status is failure or
// cancelled or policy.decision is deny; "edited" when input and output name different blobs; else "approved".
// The diff from the draft (input) to the final text (output) is word by word, whitespace kept: the units are words
// (letters, digits, underscore), runs of whitespace, or single other characters, matched as Python's
// difflib.SequenceMatcher (autojunk off) matches them, so that the page and the reports show the same edits.

export const VERDICTS = ["approved", "edited", "rejected"];
const REJECTING_OUTCOMES = ["failure", "cancelled"];
const UNITS = /[\p{L}\p{N}_]+|\s+|[^\p{L}\p{N}_\s]/gu;

const isObject = (value) => typeof value === "object" && value !== null && !Array.isArray(value);

export function isReview(event) {
  if (event.event_type === "human_review") return true;
  return event.event_type === "approval" && isObject(event.approval) && isObject(event.approval.approver);
}

function sha256Of(event, field) {
  return isObject(event[field]) ? event[field].sha256 ?? null : null;
}

/** "approved", "edited" or "rejected" for a review; null for any other event. */
export function reviewVerdict(event) {
  if (!isReview(event)) return null;
  const stated = isObject(event.extensions) && isObject(event.extensions.review) ? event.extensions.review : {};
  if (VERDICTS.includes(stated.decision)) return stated.decision;
  const outcome = isObject(event.outcome) ? event.outcome : {};
  const policy = isObject(event.policy) ? event.policy : {};
  if (REJECTING_OUTCOMES.includes(outcome.status) || policy.decision === "deny") return "rejected";
  const draft = sha256Of(event, "input");
  const final = sha256Of(event, "output");
  if (draft !== null && final !== null && draft !== final) return "edited";
  return "approved";
}

function units(text) {
  return text.match(UNITS) || [];
}

/** difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks(), for lists of strings. */
function matchingBlocks(a, b) {
  const b2j = new Map();
  b.forEach((unit, j) => {
    if (!b2j.has(unit)) b2j.set(unit, []);
    b2j.get(unit).push(j);
  });
  const longest = (alo, ahi, blo, bhi) => {
    let besti = alo;
    let bestj = blo;
    let bestsize = 0;
    let j2len = new Map();
    for (let i = alo; i < ahi; i++) {
      const next = new Map();
      for (const j of b2j.get(a[i]) || []) {
        if (j < blo) continue;
        if (j >= bhi) break;
        const k = (j2len.get(j - 1) || 0) + 1;
        next.set(j, k);
        if (k > bestsize) {
          besti = i - k + 1;
          bestj = j - k + 1;
          bestsize = k;
        }
      }
      j2len = next;
    }
    return [besti, bestj, bestsize];
  };
  const found = [];
  const queue = [[0, a.length, 0, b.length]];
  while (queue.length) {
    const [alo, ahi, blo, bhi] = queue.pop();
    const [i, j, k] = longest(alo, ahi, blo, bhi);
    if (k) {
      found.push([i, j, k]);
      if (alo < i && blo < j) queue.push([alo, i, blo, j]);
      if (i + k < ahi && j + k < bhi) queue.push([i + k, ahi, j + k, bhi]);
    }
  }
  found.sort((x, y) => x[0] - y[0] || x[1] - y[1] || x[2] - y[2]);
  const blocks = [];
  let [i1, j1, k1] = [0, 0, 0];
  for (const [i2, j2, k2] of found) {
    if (i1 + k1 === i2 && j1 + k1 === j2) {
      k1 += k2;
    } else {
      if (k1) blocks.push([i1, j1, k1]);
      [i1, j1, k1] = [i2, j2, k2];
    }
  }
  if (k1) blocks.push([i1, j1, k1]);
  blocks.push([a.length, b.length, 0]);
  return blocks;
}

/** The change from `draft` to `final` as runs [op, text]: "=" kept, "-" removed, "+" added, word by word. */
export function textDiff(draft, final) {
  const a = units(draft);
  const b = units(final);
  const out = [];
  const add = (op, text) => {
    if (!text) return;
    if (out.length && out[out.length - 1][0] === op) out[out.length - 1][1] += text;
    else out.push([op, text]);
  };
  let i = 0;
  let j = 0;
  for (const [ai, bj, size] of matchingBlocks(a, b)) {
    if (i < ai || j < bj) {
      add("-", a.slice(i, ai).join(""));
      add("+", b.slice(j, bj).join(""));
    }
    i = ai + size;
    j = bj + size;
    if (size) add("=", a.slice(ai, i).join(""));
  }
  return out;
}
