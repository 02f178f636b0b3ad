// Rendering of untrusted text. Nothing here ever assigns user content to
// innerHTML: bodies become text nodes, and the only elements created are
// links we build ourselves and <mark> from a search highlight.

const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;
const TRAILING = /[.,;:!?'"»)\]}]+$/;

function trimUrl(raw) {
  let url = raw;
  // Trailing punctuation usually belongs to the sentence, except a closing
  // paren that balances one inside the URL (Wikipedia links).
  for (;;) {
    const m = url.match(TRAILING);
    if (!m) break;
    const ch = url[url.length - 1];
    if (ch === ')' && (url.split('(').length - 1) >= (url.split(')').length - 1)) break;
    url = url.slice(0, -1);
  }
  return url;
}

function safeHref(s) {
  try {
    const u = new URL(s);
    if (u.protocol === 'http:' || u.protocol === 'https:') return u.href;
  } catch { /* not a URL */ }
  return null;
}

// linkify returns a fragment of text nodes and <a> elements for http(s) URLs.
export function linkify(text) {
  const frag = document.createDocumentFragment();
  let last = 0;
  for (const m of text.matchAll(URL_RE)) {
    const url = trimUrl(m[0]);
    const href = safeHref(url);
    if (!href) continue;
    if (m.index > last) frag.append(document.createTextNode(text.slice(last, m.index)));
    const a = document.createElement('a');
    a.href = href;
    a.textContent = url;
    a.target = '_blank';
    a.rel = 'noopener noreferrer';
    frag.append(a);
    last = m.index + url.length;
  }
  if (last < text.length) frag.append(document.createTextNode(text.slice(last)));
  return frag;
}

// safeHighlight turns a server highlight (HTML-escaped text with <mark>) into
// a fragment. The server escapes everything but <mark>; we still parse it
// inertly and keep only text and <mark>, so a server bug cannot become XSS.
const DROP = new Set(['script', 'style', 'template', 'noscript', 'iframe', 'object', 'svg', 'math']);

export function safeHighlight(html) {
  const doc = new DOMParser().parseFromString(`<body>${html}</body>`, 'text/html');
  const frag = document.createDocumentFragment();
  const walk = (node, into, inMark) => {
    for (const child of node.childNodes) {
      if (child.nodeType === Node.TEXT_NODE) {
        into.append(document.createTextNode(child.data));
      } else if (child.nodeType === Node.ELEMENT_NODE) {
        if (child.localName === 'mark' && !inMark) {
          const mark = document.createElement('mark');
          walk(child, mark, true);
          into.append(mark);
        } else if (DROP.has(child.localName)) {
          // Never meant as text: leave out what they hold.
        } else {
          // Any other element is flattened to its text.
          walk(child, into, inMark);
        }
      }
    }
  };
  walk(doc.body, frag, false);
  return frag;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

export function formatTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const today = new Date();
  return d.toDateString() === today.toDateString() ? timeFmt.format(d) : dateTimeFmt.format(d);
}

export function fullTime(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : dateTimeFmt.format(d);
}

// dayKey names the local calendar day of a timestamp ('' if invalid): two
// messages are on the same day when their keys are equal.
export function dayKey(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
}

const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', day: 'numeric', month: 'long' });
const dayYearFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', day: 'numeric', month: 'long', year: 'numeric' });

// dayLabel is the heading of a day in the message list: Today, Yesterday,
// or the date (with the year when it is not this year's).
export function dayLabel(iso, now = new Date()) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const key = dayKey(iso);
  if (key === dayKey(now)) return 'Today';
  const y = new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1);
  if (key === dayKey(y)) return 'Yesterday';
  return (d.getFullYear() === now.getFullYear() ? dayFmt : dayYearFmt).format(d);
}

// el builds an element: el('button', {class: 'x', onclick: f}, 'text', child).
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) {
    if (c == null || c === false) continue;
    e.append(typeof c === 'string' ? document.createTextNode(c) : c);
  }
  return e;
}
