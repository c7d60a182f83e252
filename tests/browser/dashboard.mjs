// The caseworker dashboard in a real browser: Debian's headless Chromium,
// driven by playwright-core. Run by the Rust end-to-end test
// tests/e2e/dashboard.rs against a real `ondol run`; it can also be run by
// hand against any server (see README.md, "Test it").
//
// Environment:
//   ONDOL_URL            the server's HTTP base URL (http://127.0.0.1:PORT)
//   ONDOL_TOKEN          the caseworker's bearer token (never printed)
//   ONDOL_RESIDENT_ID    the resident whose alert is expected
//   ONDOL_RULE           the expected alert's rule (default missed_checkin)
//   ONDOL_OUTCOME        the outcome to resolve it with (default resident_ok)
//   ONDOL_NOTE           the note to resolve it with
//   ONDOL_SUPERVISOR_TOKEN  a supervisor of the resident's region (optional:
//                        without it the overview is not checked)
//   ONDOL_OVERVIEW       what the supervisor's overview must show, JSON:
//                        {"unseen":[resident ids],"low_battery":[device ids],
//                         "escalations":[resident ids],
//                         "tiers":{"low":{"total":1,"under_15_min":1}},
//                         "history":{"r-1":{"alerts":1,"outcomes":"..."}},
//                         "absent":[ids that must not appear]}
//   ONDOL_ARTIFACTS      directory for screenshots (default target/e2e-artifacts)
//   ONDOL_ALERT_WAIT_MS  how long to wait for the alert (default 240000)
//   CHROMIUM             the browser binary (default /usr/bin/chromium)
//
// On success it prints one JSON line to stdout:
//   {"alert_id":12,"screenshots":["..."]}
// and exits 0; any failed check exits 1 with the reason on stderr (and a
// screenshot of the page as it was, named dashboard-failure.png).

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);

const env = (name, fallback) => {
  const value = process.env[name];
  if (value === undefined || value === '') {
    if (fallback === undefined) throw new Error(`${name} is not set`);
    return fallback;
  }
  return value;
};

const baseUrl = env('ONDOL_URL').replace(/\/$/, '');
const token = env('ONDOL_TOKEN');
const residentId = env('ONDOL_RESIDENT_ID');
const rule = env('ONDOL_RULE', 'missed_checkin');
const outcome = env('ONDOL_OUTCOME', 'resident_ok');
const note = env('ONDOL_NOTE', 'Phoned the resident; all well.');
const artifacts = path.resolve(env('ONDOL_ARTIFACTS', 'target/e2e-artifacts'));
const alertWaitMs = Number(env('ONDOL_ALERT_WAIT_MS', '240000'));
const executablePath = env('CHROMIUM', '/usr/bin/chromium');
const supervisorToken = env('ONDOL_SUPERVISOR_TOKEN', '');
const expectedOverview = JSON.parse(env('ONDOL_OVERVIEW', '{}'));

const OUTCOME_LABELS = {
  resident_ok: 'Resident is OK',
  needed_help: 'Needed help (given)',
  emergency_services: 'Emergency services called',
  hospitalised: 'Hospitalised',
  false_alarm_device: 'False alarm: device',
  false_alarm_behaviour: 'False alarm: behaviour',
  no_contact: 'Could not make contact',
};

const log = (message) => process.stderr.write(`[dashboard.mjs] ${message}\n`);

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

fs.mkdirSync(artifacts, { recursive: true });
const screenshots = [];
async function screenshot(page, name) {
  const file = path.join(artifacts, name);
  await page.screenshot({ path: file, fullPage: true });
  screenshots.push(file);
  log(`screenshot ${file}`);
}

/** Fails if the page is wider than the viewport (content cut off or scrolling sideways). */
async function checkNoHorizontalOverflow(page, width) {
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  check(overflow <= 0, `at ${width} px the page scrolls sideways by ${overflow} px`);
}

/** Fails on WCAG 2 A/AA violations found by axe-core (contrast, names, roles, ...). */
async function checkAccessibility(page, where) {
  const loaded = await page.evaluate(() => typeof window.axe !== 'undefined');
  // Evaluated, not added as a <script>: the page's CSP allows no inline script.
  if (!loaded) await page.evaluate(fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8'));
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
    });
    return result.violations.map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  });
  check(violations.length === 0, `accessibility violations on ${where}:\n  ${violations.join('\n  ')}`);
}

/** Fails if any interactive control is smaller than 44 x 44 CSS px. */
async function checkTouchTargets(page, where) {
  const small = await page.evaluate(() => {
    const found = [];
    for (const node of document.querySelectorAll('button, a[href], summary, input, select, textarea')) {
      if (node.closest('[hidden]') || node.closest('dialog:not([open])')) continue;
      const target = node.closest('label') || node;
      const box = target.getBoundingClientRect();
      if (box.width === 0 && box.height === 0) continue; // not rendered
      if (node.classList.contains('skip-link')) continue;
      // Links inside running text are exempt (WCAG 2.5.8 inline exception).
      if (node.tagName === 'A' && node.closest('p')) continue;
      if (box.height < 44 || box.width < 44) found.push(`${node.tagName.toLowerCase()} "${(node.textContent || '').trim().slice(0, 30)}" ${Math.round(box.width)}x${Math.round(box.height)}`);
    }
    return found;
  });
  check(small.length === 0, `touch targets under 44 px on ${where}: ${small.join('; ')}`);
}

/** The rows' `data-id`s (or another attribute) of an overview table, in order. */
async function rowIds(page, table, attribute = 'data-id') {
  return page.locator(`#${table} tbody tr`).evaluateAll((rows, name) => rows.map((r) => r.getAttribute(name)), attribute);
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

/**
 * The supervisor signs in and lands on the overview of their region; its
 * figures must be what was seeded (ONDOL_OVERVIEW). Alerting may still be
 * escalating when the page first loads, so the overview is reloaded (as the
 * page does every 30 s) until it matches or a minute has passed.
 */
async function checkOverview(page) {
  await page.setViewportSize({ width: 1280, height: 900 });
  // A fresh start at / (the caseworker's last view is still in the address).
  await page.goto(`${baseUrl}/`);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await page.getByLabel('Access token').fill(supervisorToken);
  await page.getByLabel('Access token').press('Enter');
  await page.getByRole('heading', { name: /^Overview: / }).waitFor();
  check(await page.getByRole('link', { name: 'Overview' }).getAttribute('aria-current') === 'page', 'supervisors start on the overview');
  log('supervisor signed in to the overview');

  const expected = expectedOverview;
  const mismatches = async () => {
    const found = [];
    const compare = async (what, table, want, attribute) => {
      if (want === undefined) return;
      const ids = (await page.locator(`#${table}`).count()) ? await rowIds(page, table, attribute) : [];
      if (!same(ids, want)) found.push(`${what}: ${JSON.stringify(ids)}, expected ${JSON.stringify(want)}`);
    };
    await compare('unseen residents', 'ov-unseen-table', expected.unseen);
    await compare('low battery', 'ov-battery-table', expected.low_battery);
    await compare('escalations waiting', 'ov-escalation-table', expected.escalations, 'data-resident');
    for (const [severity, bands] of Object.entries(expected.tiers || {})) {
      for (const [band, want] of Object.entries(bands)) {
        const cell = page.locator(`#ov-tier-table tr[data-severity="${severity}"] td[data-band="${band}"]`);
        const got = Number(await cell.textContent());
        if (got !== want) found.push(`${severity} alerts ${band}: ${got}, expected ${want}`);
      }
    }
    for (const [resident, want] of Object.entries(expected.history || {})) {
      const row = page.locator(`#ov-history-table tr[data-id="${resident}"]`);
      if (!(await row.count())) {
        found.push(`${resident} is not in the alert history`);
        continue;
      }
      const alerts = Number(await row.locator('td[data-field="alerts"]').textContent());
      if (alerts !== want.alerts) found.push(`${resident}: ${alerts} alerts, expected ${want.alerts}`);
      const outcomes = await row.locator('td[data-field="outcomes"]').textContent();
      if (want.outcomes !== undefined && outcomes !== want.outcomes) found.push(`${resident}: outcomes "${outcomes}", expected "${want.outcomes}"`);
    }
    const text = await page.locator('#view-overview').textContent();
    for (const id of expected.absent || []) {
      if (text.includes(id)) found.push(`${id} (another region) is on the page`);
    }
    return found;
  };
  const deadline = Date.now() + 60000;
  let found = await mismatches();
  while (found.length && Date.now() < deadline) {
    await page.waitForTimeout(1000);
    // Away and back: the overview loads again.
    await page.getByRole('link', { name: /^Alerts/ }).click();
    await page.getByRole('heading', { name: 'Open alerts' }).waitFor();
    await page.getByRole('link', { name: 'Overview' }).click();
    await page.locator('#overview-updated').filter({ hasText: 'Updated' }).waitFor();
    found = await mismatches();
  }
  check(found.length === 0, `the overview does not show what was seeded:\n  ${found.join('\n  ')}`);
  // The figures at the top agree with the tables.
  for (const [figure, table, want] of [['unseen', 'ov-unseen-table', expected.unseen], ['battery', 'ov-battery-table', expected.low_battery], ['escalations', 'ov-escalation-table', expected.escalations]]) {
    if (want === undefined) continue;
    const shown = Number(await page.locator(`[data-figure="${figure}"] .figure`).textContent());
    check(shown === want.length, `the ${figure} figure says ${shown}, the ${table} table has ${want.length} rows`);
  }
  log('the overview shows the seeded figures');

  await checkAccessibility(page, 'the supervisor overview');
  await checkTouchTargets(page, 'the supervisor overview at 1280 px');
  await checkNoHorizontalOverflow(page, 1280);
  await screenshot(page, 'dashboard-overview.png');
  for (const width of [768, 390]) {
    await page.setViewportSize({ width, height: 1024 });
    await checkNoHorizontalOverflow(page, width);
    await checkTouchTargets(page, `the supervisor overview at ${width} px`);
  }
  await checkAccessibility(page, 'the supervisor overview at 390 px');
  await screenshot(page, 'dashboard-overview-390.png');

  // From the history to the resident's page: each alert with its outcome.
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.locator(`#ov-history-table tr[data-id="${residentId}"] a`).click();
  const history = page.locator(`#resident-alert-table tr[data-status="resolved"]`).first();
  await history.waitFor();
  check((await history.textContent()).includes(`Resolved: ${OUTCOME_LABELS[outcome]}`), `the resident's page shows the outcome to the supervisor: ${await history.textContent()}`);
  log('the supervisor drills down to a resident\'s alert history');
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  // As root in a closed network: no sandbox, and none of Chromium's own
  // background connections (they are refused here and only slow it down).
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--disable-dev-shm-usage',
  ],
});

let page;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, reducedMotion: 'reduce' });
  page = await context.newPage();
  page.setDefaultTimeout(30000);

  // Everything the page loads must come from the server itself (works
  // without external network), and the token must never be in a URL.
  const origin = new URL(baseUrl).origin;
  const requests = [];
  page.on('request', (request) => requests.push(request.url()));
  const consoleLines = [];
  page.on('console', (message) => consoleLines.push(message.text()));
  const pageErrors = [];
  page.on('pageerror', (error) => pageErrors.push(String(error)));
  // The page's own CSP must not be blocking anything it needs.
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content Security Policy/i.test(message.text())) pageErrors.push(message.text());
  });
  let navigations = 0;
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame()) navigations += 1;
  });

  log(`opening ${baseUrl}/`);
  const response = await page.goto(`${baseUrl}/`);
  check(response && response.ok(), `GET / answered ${response && response.status()}`);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();

  // A wrong token is refused with a clear message.
  await page.getByLabel('Access token').fill('not-a-valid-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('That token was not accepted').waitFor();
  await checkAccessibility(page, 'the sign-in page');

  // Sign in with the keyboard: type the token, press Enter.
  await page.getByLabel('Access token').fill(token);
  await page.getByLabel('Access token').press('Enter');
  await page.getByRole('heading', { name: 'Open alerts' }).waitFor();
  const stored = await page.evaluate(() => Object.keys(sessionStorage));
  check(stored.includes('ondol.token'), 'the token is kept in sessionStorage');
  check(await page.getByLabel('Access token').inputValue() === '', 'the token field is cleared after sign-in');
  log('signed in');

  // The alert must not be there yet: it has to arrive by polling.
  const alertItem = page.locator(`#alert-list li[data-rule="${rule}"]`).filter({ has: page.locator(`a[href="#/residents/${residentId}"]`) });
  await page.locator('#alerts-updated').filter({ hasText: 'Updated' }).waitFor();
  check(await alertItem.count() === 0, `the ${rule} alert for ${residentId} was already on the page at sign-in; the test could not see it arrive (was the browser too slow to start?)`);
  const navigationsBefore = navigations;
  log(`waiting up to ${alertWaitMs} ms for the ${rule} alert to appear`);

  await alertItem.waitFor({ timeout: alertWaitMs });
  check(navigations === navigationsBefore, 'the page was reloaded or navigated to show the alert');
  const alertId = Number(await alertItem.getAttribute('data-id'));
  check(Number.isInteger(alertId) && alertId > 0, `alert id ${alertId}`);
  await page.locator('#announcer').filter({ hasText: 'New alert' }).waitFor();
  const announced = await page.locator('#announcer').textContent();
  log(`announced: ${announced}`);
  check(await alertItem.getByText('Missed check-in').count() === 1, 'the alert shows its rule');
  check(await alertItem.locator('.tier').textContent() !== '', 'the alert shows its tier');
  check(await alertItem.getByText('Open, not yet acknowledged').count() === 1, 'the alert is shown as open');
  await checkAccessibility(page, 'the alert list');
  await checkTouchTargets(page, 'the alert list at 1280 px');
  await checkNoHorizontalOverflow(page, 1280);
  await screenshot(page, 'dashboard.png');

  // One click acknowledges; focus moves to the alert's Resolve button.
  await alertItem.getByRole('button', { name: /^Acknowledge/ }).click();
  await page.locator(`#alert-list li[data-id="${alertId}"][data-status="acknowledged"]`).waitFor();
  check(await alertItem.getByRole('button', { name: /^Acknowledge/ }).isHidden(), 'Acknowledge is gone once acknowledged');
  check(await page.evaluate(() => document.activeElement && document.activeElement.classList.contains('resolve')), 'focus is on Resolve after acknowledging');
  log('acknowledged');

  // At tablet width the list still fits and works.
  await page.setViewportSize({ width: 768, height: 1024 });
  await checkNoHorizontalOverflow(page, 768);
  await checkTouchTargets(page, 'the alert list at 768 px');
  await screenshot(page, 'dashboard-768.png');

  // Escape closes the resolve dialog and gives focus back to its button.
  const resolveButton = alertItem.getByRole('button', { name: /^Resolve/ });
  await resolveButton.click();
  const dialog = page.getByRole('dialog', { name: 'Resolve alert' });
  await dialog.waitFor();
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden' });
  check(await page.evaluate(() => document.activeElement && document.activeElement.classList.contains('resolve')), 'focus returns to Resolve after Escape');

  // Resolve with an outcome and a note; submitting without an outcome is refused.
  await resolveButton.click();
  await dialog.waitFor();
  await dialog.getByRole('button', { name: 'Resolve' }).click();
  await dialog.getByText('Choose an outcome.').waitFor();
  await dialog.getByLabel(OUTCOME_LABELS[outcome]).check();
  await dialog.getByLabel('Note (optional)').fill(note);
  await checkAccessibility(page, 'the resolve dialog');
  await checkTouchTargets(page, 'the resolve dialog');
  await screenshot(page, 'dashboard-resolve.png');
  await dialog.getByRole('button', { name: 'Resolve' }).click();
  await dialog.waitFor({ state: 'hidden' });
  await page.locator(`#alert-list li[data-id="${alertId}"]`).waitFor({ state: 'detached' });
  await page.locator('#info-banner').filter({ hasText: 'resolved' }).waitFor();
  log('resolved');

  // A failing server shows: the banner says the list may be stale and why,
  // and goes away once polling succeeds again. (The failure is injected in
  // the browser: the real server is not made to fail.)
  await page.route('**/api/v1/alerts?*', (route) => route.fulfill({
    status: 500,
    contentType: 'application/json',
    body: JSON.stringify({ error: { code: 'internal', message: 'internal error' } }),
  }));
  const banner = page.locator('#error-banner');
  await banner.filter({ hasText: 'Alerts may be out of date' }).waitFor();
  check((await banner.textContent()).includes('internal error'), 'the banner gives the server\'s message');
  await page.unroute('**/api/v1/alerts?*');
  await banner.waitFor({ state: 'hidden' });
  // A poll that hangs is given up after a while and said so: polling goes on.
  const held = [];
  await page.route('**/api/v1/alerts?*', (route) => { held.push(route); });
  await banner.filter({ hasText: 'did not answer' }).waitFor();
  await page.unroute('**/api/v1/alerts?*');
  // Let go of the held requests (the page gave up on them already).
  await Promise.all(held.map((route) => route.abort().catch(() => {})));
  await banner.waitFor({ state: 'hidden' });
  log('a failing or hanging poll is shown, and cleared when the server answers again');

  // The status board and the resident's page with charts.
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.getByRole('link', { name: 'Residents' }).click();
  await page.getByRole('heading', { name: 'Residents' }).waitFor();
  const row = page.locator(`#resident-rows tr[data-id="${residentId}"]`);
  await row.waitFor();
  await checkAccessibility(page, 'the residents board');
  await checkNoHorizontalOverflow(page, 1280);
  await row.getByRole('link').click();
  // The resolved alert is in the resident's history with its outcome.
  const history = page.locator(`#resident-alert-table tr[data-id="${alertId}"][data-status="resolved"]`);
  await history.waitFor();
  check((await history.textContent()).includes(`Resolved: ${OUTCOME_LABELS[outcome]}`), `the resident's alert history shows the outcome: ${await history.textContent()}`);
  await page.locator('#vitals figure.chart[data-type="heart_rate"] svg path.line').waitFor();
  await page.locator('#activity figure.chart[data-type="activity"] svg rect.bar').first().waitFor();
  const summary = await page.locator('#vitals figure.chart[data-type="heart_rate"] .chart-summary').textContent();
  check(/latest \d+ \/min/.test(summary), `the heart-rate chart has a text summary (${summary})`);
  await page.locator('#vitals figure.chart[data-type="heart_rate"] summary').click();
  check(await page.locator('#vitals figure.chart[data-type="heart_rate"] table tbody tr').count() > 0, 'the heart-rate readings are also a table');
  await checkAccessibility(page, "the resident's page");
  await screenshot(page, 'dashboard-resident.png');
  await page.setViewportSize({ width: 768, height: 1024 });
  await checkNoHorizontalOverflow(page, 768);
  log('resident page shows charts');

  // Signing out forgets the token.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  check((await page.evaluate(() => Object.keys(sessionStorage))).length === 0, 'sign-out empties sessionStorage');

  if (supervisorToken) {
    await checkOverview(page);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  }

  for (const url of requests) {
    check(url.startsWith(`${origin}/`), `the page loaded something from elsewhere: ${url}`);
    for (const secret of [token, supervisorToken].filter(Boolean)) {
      check(!url.includes(secret), 'a token appeared in a request URL');
    }
  }
  for (const secret of [token, supervisorToken].filter(Boolean)) {
    check(!consoleLines.some((line) => line.includes(secret)), 'a token appeared in the console');
  }
  check(pageErrors.length === 0, `script errors: ${pageErrors.join('; ')}`);

  process.stdout.write(`${JSON.stringify({ alert_id: alertId, screenshots })}\n`);
} catch (error) {
  let message = String(error && error.stack ? error.stack : error).split(token).join('<token>');
  if (supervisorToken) message = message.split(supervisorToken).join('<token>');
  log(message);
  if (page) {
    try {
      await screenshot(page, 'dashboard-failure.png');
    } catch {
      // The page is gone; the message above says why.
    }
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
