// Unit tests of the UI's pure helpers, run inside Chromium against the
// modules exactly as the server serves them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Server, launch, newPage } from './helpers.mjs';

let browser, server, page;
before(async () => {
  browser = await launch();
  server = await Server.create();
  page = await newPage(browser, server);
});
after(async () => {
  await browser?.close();
  await server?.close();
});

test('ids: BigInt order beyond 2^53, dedupe, next id', async () => {
  const r = await page.evaluate(async () => {
    const { cmpId, nextId, maxId, SortedIds } = await import('/js/ids.js');
    const s = new SortedIds();
    // These differ only past Number precision: Number() would call them equal.
    const ids = ['9007199254740993', '9007199254740992', '384614612567326720', '9007199254740993', '12'];
    const nexts = ids.map((id) => s.insert(id));
    return {
      order: s.ids,
      nexts,
      cmp: cmpId('9007199254740993', '9007199254740992'),
      next: nextId('9223372036854775806'),
      max: maxId(null, '5'),
      has: s.has('9007199254740992'),
    };
  });
  assert.deepEqual(r.order, ['12', '9007199254740992', '9007199254740993', '384614612567326720']);
  assert.equal(r.nexts[3], undefined, 'duplicate id was inserted');
  assert.equal(r.cmp, 1);
  assert.equal(r.next, '9223372036854775807');
  assert.equal(r.max, '5');
  assert.equal(r.has, true);
});

test('safeHighlight keeps only text and bare <mark>', async () => {
  const cases = await page.evaluate(async () => {
    const { safeHighlight } = await import('/js/text.js');
    window.__pwned = 0;
    const render = (html) => {
      const d = document.createElement('div');
      d.append(safeHighlight(html));
      document.body.append(d);
      const out = { html: d.innerHTML, text: d.textContent };
      d.remove();
      return out;
    };
    return [
      render('a &lt;b&gt; <mark>word</mark> &amp; more'),
      render('<mark onclick="window.__pwned=1" style="x">hit</mark><img src=x onerror="window.__pwned=2"><script>window.__pwned=3</script>'),
      render('<mark><mark>nested</mark></mark><a href="javascript:alert(1)">link</a><svg onload="window.__pwned=4"></svg>'),
      render('</mark>unbalanced<mark>'),
    ];
  });
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(await page.evaluate(() => window.__pwned), 0);
  assert.equal(cases[0].html, 'a &lt;b&gt; <mark>word</mark> &amp; more');
  assert.equal(cases[0].text, 'a <b> word & more');
  assert.equal(cases[1].html, '<mark>hit</mark>');
  assert.equal(cases[2].html, '<mark>nested</mark>link');
  assert.equal(cases[3].text, 'unbalanced');
  assert.doesNotMatch(cases[3].html, /<(?!\/?mark>)/);
});

test('linkify: http(s) only, trailing punctuation, no HTML', async () => {
  const out = await page.evaluate(async () => {
    const { linkify } = await import('/js/text.js');
    const run = (t) => {
      const d = document.createElement('div');
      d.append(linkify(t));
      return {
        text: d.textContent,
        links: [...d.querySelectorAll('a')].map((a) => [a.getAttribute('href'), a.textContent, a.rel, a.target]),
        elements: d.querySelectorAll('*').length,
      };
    };
    return {
      plain: run('<b>not bold</b> & <img src=x onerror=alert(1)>'),
      sentence: run('See https://example.com/path, and (http://example.org/x).'),
      paren: run('https://en.wikipedia.org/wiki/Go_(programming_language)'),
      schemes: run('javascript:alert(1) data:text/html,hi ftp://x.org HTTPS://EXAMPLE.COM/Up'),
      quote: run('"https://example.com/q?a=1&b=2"'),
    };
  });
  assert.equal(out.plain.text, '<b>not bold</b> & <img src=x onerror=alert(1)>');
  assert.equal(out.plain.elements, 0);
  assert.deepEqual(out.sentence.links.map((l) => l[0]), ['https://example.com/path', 'http://example.org/x']);
  assert.equal(out.sentence.text, 'See https://example.com/path, and (http://example.org/x).');
  assert.deepEqual(out.paren.links.map((l) => l[1]), ['https://en.wikipedia.org/wiki/Go_(programming_language)']);
  assert.deepEqual(out.schemes.links.map((l) => l[0]), ['https://example.com/Up']);
  assert.deepEqual(out.quote.links.map((l) => l[0]), ['https://example.com/q?a=1&b=2']);
  for (const l of [...out.sentence.links, ...out.schemes.links]) {
    assert.equal(l[2], 'noopener noreferrer');
    assert.equal(l[3], '_blank');
  }
});

test('text: day keys and day headings', async () => {
  const r = await page.evaluate(async () => {
    const { dayKey, dayLabel } = await import('/js/text.js');
    const now = new Date(2026, 10, 27, 0, 5); // 27 Nov 2026, 00:05 local
    const at = (y, mo, d, h = 12) => new Date(y, mo, d, h).toISOString();
    return {
      sameDay: dayKey(at(2026, 10, 27, 0)) === dayKey(at(2026, 10, 27, 23)),
      otherDay: dayKey(at(2026, 10, 27, 0)) !== dayKey(at(2026, 10, 26, 23)),
      today: dayLabel(at(2026, 10, 27, 0), now),
      yesterday: dayLabel(at(2026, 10, 26, 23), now),
      // across a month and a year boundary
      yesterdayJan: dayLabel(at(2025, 11, 31), new Date(2026, 0, 1, 9)),
      thisYear: dayLabel(at(2026, 10, 20), now),
      lastYear: dayLabel(at(2025, 10, 20), now),
      bad: [dayKey('not a date'), dayLabel('not a date', now)],
    };
  });
  assert.ok(r.sameDay && r.otherDay);
  assert.equal(r.today, 'Today');
  assert.equal(r.yesterday, 'Yesterday');
  assert.equal(r.yesterdayJan, 'Yesterday');
  assert.match(r.thisYear, /20/);
  assert.doesNotMatch(r.thisYear, /2026/, 'this year\'s dates leave the year out');
  assert.match(r.lastYear, /2025/);
  assert.deepEqual(r.bad, ['', '']);
});
