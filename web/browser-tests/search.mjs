// Browser test of kino's pages in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core). Started by web/tests/browser.rs, which serves a
// fixture library and passes:
//   KINO_URL        base URL of the running server
//   KINO_OUT        folder for screenshots
//   KINO_QUERY      a phrase whose best moment is known
//   KINO_VIDEO_ID   that moment's video id
//   KINO_START_MS   that moment's start
//   KINO_QUESTION   a question answered from that moment
//   KINO_XSS_QUERY  a query finding the subtitle that contains <script>
//   KINO_CUE_START_MS  start of a transcript line of that video (the video page
//                      test clicks it)
//   KINO_CUE_TEXT      a few words of that line
// Exits non-zero with a message on the first failed check.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const base = env('KINO_URL');
const out = env('KINO_OUT');
const query = env('KINO_QUERY');
const videoId = env('KINO_VIDEO_ID');
const startMs = Number(env('KINO_START_MS'));
const question = env('KINO_QUESTION');
const xssQuery = env('KINO_XSS_QUERY');
const cueStartMs = Number(env('KINO_CUE_START_MS'));
const cueText = env('KINO_CUE_TEXT');
mkdirSync(out, { recursive: true });

function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`);
  console.log(`ok: ${msg}`);
}

const browser = await chromium.launch({
  executablePath: process.env.KINO_CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--autoplay-policy=no-user-gesture-required', '--mute-audio'],
});
let failed = null;
try {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  const dialogs = [];
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));

  // Search: type a phrase, submit, the right moment is first.
  await page.goto(base + '/');
  await page.fill('#q', query);
  await Promise.all([page.waitForURL(/[?&]q=/), page.click('button[value="search"]')]);
  const first = page.locator('ol.moments a.moment').first();
  await first.waitFor();
  check((await first.getAttribute('data-video')) === videoId, `first moment is in video ${videoId}`);
  check(Number(await first.getAttribute('data-start')) === startMs, `first moment starts at ${startMs} ms`);
  check((await first.locator('mark').count()) > 0, 'matching words are highlighted');
  const badges = await page.locator('ol.moments > li').first().locator('ul.sources li').allInnerTexts();
  check(badges.includes('on screen') && badges.includes('picture'), `the first moment shows where its words came from (${badges.join(', ')})`);
  await page.screenshot({ path: join(out, 'search.png'), fullPage: true });

  // Mark the first result right and the second wrong: each is stored and says so.
  const marks = page.locator('ol.moments > li .marks');
  await marks.nth(0).locator('button[data-mark="right"]').click();
  await marks.nth(0).locator('.mark-status', { hasText: 'Marked right' }).waitFor();
  check(await marks.nth(0).locator('button[data-mark="wrong"]').isDisabled(), 'a marked result cannot be marked twice');
  if ((await marks.count()) > 1) {
    await marks.nth(1).locator('button[data-mark="wrong"]').click();
    await marks.nth(1).locator('.mark-status', { hasText: 'Marked wrong' }).waitFor();
  }
  check(true, `marked ${Math.min(2, await marks.count())} results (right, wrong)`);
  await page.screenshot({ path: join(out, 'marked.png'), fullPage: true });

  // Click it: the <video> plays from the moment's start.
  await first.click();
  await page.waitForFunction(() => {
    const v = document.getElementById('video');
    return v && v.readyState >= 2 && !v.seeking && v.currentTime > 0;
  }, null, { timeout: 20000 });
  const t = await page.evaluate(() => document.getElementById('video').currentTime);
  check(Math.abs(t - startMs / 1000) <= 1.0, `video currentTime ${t.toFixed(3)} s is within 1 s of ${startMs / 1000} s`);
  const src = await page.evaluate(() => document.getElementById('video').currentSrc);
  check(src.endsWith(`/media/${videoId}`), `video plays /media/${videoId}`);
  await page.screenshot({ path: join(out, 'playing.png'), fullPage: true });

  // Ask: the answer appears above the results with its citation.
  await page.fill('#q', question);
  await Promise.all([page.waitForURL(/mode=ask/), page.click('button[value="ask"]')]);
  const answer = page.locator('#answer');
  await answer.waitFor();
  const answerText = await answer.locator('.answer-text').innerText();
  check(answerText.length > 0, `an answer is shown: "${answerText.slice(0, 60)}"`);
  const cite = answer.locator('a.cite').first();
  check((await cite.getAttribute('data-video')) === videoId, 'the answer cites the right video');
  check(Number(await cite.getAttribute('data-start')) === startMs, 'the answer cites the right moment');
  check((await answer.locator('ol.citations li').count()) >= 1, 'the citation list is shown');
  const answerAbove = await page.evaluate(() => {
    const a = document.getElementById('answer');
    const r = document.getElementById('results');
    return !r || (a.compareDocumentPosition(r) & Node.DOCUMENT_POSITION_FOLLOWING) !== 0;
  });
  check(answerAbove, 'the answer is above the results');
  await page.screenshot({ path: join(out, 'ask.png'), fullPage: true });

  // A subtitle containing <script> shows as text and runs nothing.
  await page.goto(base + '/?mode=search&q=' + encodeURIComponent(xssQuery));
  const snippet = page.locator('ol.moments .snippet', { hasText: '<script>' }).first();
  await snippet.waitFor();
  check((await snippet.innerText()).includes('<script>window.__kinoXss'), 'the <script> subtitle is shown as text');
  await page.waitForTimeout(300);
  const xss = await page.evaluate(() => window.__kinoXss);
  check(xss === undefined, 'no script from a subtitle ran');
  check(dialogs.length === 0, `no alert() ran (${dialogs.length} dialogs)`);
  check((await page.locator('ol.moments script, ol.moments img[src="x"]').count()) === 0, 'no injected elements in the results');
  await page.screenshot({ path: join(out, 'xss.png'), fullPage: true });

  // Library and History pages.
  await page.goto(base + '/library');
  check((await page.locator('li.video').count()) >= 2, 'the library lists the videos');
  check((await page.locator('.status-failed').count()) >= 1, 'a failed video shows its status');
  check((await page.locator('.timeline .seg').count()) >= 5, 'segment timelines are drawn');
  await page.screenshot({ path: join(out, 'library.png'), fullPage: true });
  await page.goto(base + '/history');
  check((await page.locator('li.qa', { hasText: question }).count()) >= 1, 'the question is in the history');
  await page.screenshot({ path: join(out, 'history.png'), fullPage: true });

  // Video page: from a search result, the transcript with times; a line plays its moment.
  await page.goto(base + '/?mode=search&q=' + encodeURIComponent(query));
  await Promise.all([
    page.waitForURL(new RegExp(`/videos/${videoId}\\?t=${startMs}$`)),
    page.locator('ol.moments > li').first().locator('a.video-link').click(),
  ]);
  const lines = page.locator('ol.transcript a.cue-line');
  await lines.first().waitFor();
  check((await lines.count()) >= 3, `the transcript lists the cues (${await lines.count()} lines)`);
  const times = await page.locator('ol.transcript a.cue-line .range').allInnerTexts();
  check(times.every((t) => /^\d+:\d\d$/.test(t)), `every line shows its time (${times.join(' ')})`);
  const line = page.locator('ol.transcript a.cue-line', { hasText: cueText }).first();
  const mm = Math.floor(cueStartMs / 60000);
  const ss = String(Math.floor(cueStartMs / 1000) % 60).padStart(2, '0');
  check((await line.locator('.range').innerText()) === `${mm}:${ss}`, `the line "${cueText}" shows ${mm}:${ss}`);
  check((await page.locator('ol.transcript .cue-text', { hasText: '<script>' }).count()) === 1, 'a cue with <script> is shown as text');
  await line.click();
  await page.waitForURL(new RegExp(`/videos/${videoId}\\?t=${cueStartMs}$`));
  check(true, `the address moved to ?t=${cueStartMs}`);
  await page.waitForFunction((ms) => {
    const v = document.getElementById('video');
    return v && v.readyState >= 2 && !v.seeking && Math.abs(v.currentTime - ms / 1000) <= 1.0;
  }, cueStartMs, { timeout: 20000 });
  const vt = await page.evaluate(() => document.getElementById('video').currentTime);
  check(Math.abs(vt - cueStartMs / 1000) <= 1.0, `the player moved to ${vt.toFixed(3)} s (line at ${cueStartMs / 1000} s)`);
  check(await line.evaluate((el) => el.classList.contains('playing')), 'the clicked line is marked');
  await page.screenshot({ path: join(out, 'video.png'), fullPage: true });
  // Reloading the moment's address opens the player there.
  await page.reload();
  await page.waitForFunction((ms) => {
    const v = document.getElementById('video');
    return v && v.readyState >= 1 && !v.seeking && Math.abs(v.currentTime - ms / 1000) <= 1.0;
  }, cueStartMs, { timeout: 20000 });
  check(true, `/videos/${videoId}?t=${cueStartMs} opens the player at that time`);
  // The language form saves the override and queues a reindex.
  await page.fill('#language', 'de');
  await page.click('#language-form button[type="submit"]');
  await page.waitForFunction(() => /reindex queued/.test(document.getElementById('language-status').textContent), null, { timeout: 10000 });
  check(true, 'the language form saves and queues a reindex');
  const langNow = await page.evaluate(async (id) => (await (await fetch('/api/videos/' + id)).json()).language, videoId);
  check(langNow === 'de', `the video's language is now ${langNow}`);
  await page.fill('#language', 'DEU');
  await page.click('#language-form button[type="submit"]');
  await page.waitForFunction(() => /Not saved/.test(document.getElementById('language-status').textContent), null, { timeout: 10000 });
  const refusal = await page.locator('#language-status').innerText();
  check(refusal.includes('lowercase letters'), `a bad language code is refused with a message: "${refusal}"`);
  check(await page.evaluate(() => window.__kinoXss) === undefined, 'no script from a cue ran');

  // Whole videos: switch the results to videos, open a video's best moment.
  await page.goto(base + '/?mode=search&q=' + encodeURIComponent(query));
  await Promise.all([page.waitForURL(/by=video/), page.click('#by-video')]);
  const videoResult = page.locator('ol.videos li.video-result').first();
  await videoResult.waitFor();
  check((await videoResult.getAttribute('data-video')) === videoId, `the first video is ${videoId}`);
  check((await page.locator('#by-video[aria-current]').count()) === 1, 'the toggle shows video results are on');
  check(await page.locator('input[name="by"][value="video"]').isChecked(), 'the form keeps the video mode');
  const best = videoResult.locator('a.best-moment').first();
  check(Number(await best.getAttribute('data-at')) === startMs, `its best moment starts at ${startMs} ms`);
  check(/^\d+:\d\d–\d+:\d\d$/.test(await best.locator('.range').innerText()), 'the best moment shows its time span');
  await page.screenshot({ path: join(out, 'videos.png'), fullPage: true });
  await Promise.all([page.waitForURL(new RegExp(`/videos/${videoId}\\?t=${startMs}$`)), best.click()]);
  await page.waitForFunction((ms) => {
    const v = document.getElementById('video');
    return v && v.readyState >= 1 && !v.seeking && Math.abs(v.currentTime - ms / 1000) <= 1.0;
  }, startMs, { timeout: 20000 });
  check(true, `the best moment opens /videos/${videoId}?t=${startMs} with the player there`);
  // The video page shows its summary; a summary sentence plays its moment.
  const summary = page.locator('ol.summary a.summary-line');
  check((await summary.count()) >= 2, `the video page shows its summary (${await summary.count()} sentences)`);
  const last = summary.last();
  const summaryStart = Number(await last.getAttribute('data-start'));
  await last.click();
  await page.waitForURL(new RegExp(`/videos/${videoId}\\?t=${summaryStart}$`));
  await page.waitForFunction((ms) => {
    const v = document.getElementById('video');
    return v && v.readyState >= 2 && !v.seeking && Math.abs(v.currentTime - ms / 1000) <= 1.0;
  }, summaryStart, { timeout: 20000 });
  check(true, `a summary sentence plays its moment at ${summaryStart / 1000} s`);
  await page.screenshot({ path: join(out, 'video-summary.png'), fullPage: true });

  // Phone-sized screen: no horizontal scrolling on the results page.
  const phone = await browser.newContext({ viewport: { width: 375, height: 740 }, isMobile: true });
  const p2 = await phone.newPage();
  await p2.goto(base + '/?mode=search&q=' + encodeURIComponent(query));
  const overflow = await p2.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, `no horizontal overflow on a phone (${overflow} px)`);
  await p2.screenshot({ path: join(out, 'phone-search.png'), fullPage: true });
  check(pageErrors.length === 0, `no JavaScript errors (${pageErrors.join('; ')})`);
} catch (e) {
  failed = e;
} finally {
  await browser.close();
}
if (failed) {
  console.error(String(failed && failed.stack || failed));
  process.exit(1);
}
console.log('browser test passed');
