// Ondol caseworker dashboard: plain JavaScript, no build step, no network
// beyond this server's own /api/v1. The bearer token lives only in this
// tab's sessionStorage and in the Authorization header; it never goes into
// a URL, the DOM after sign-in, or the console.
//
// Views (by location.hash, which never holds anything secret):
//   #/overview            supervisors and admins: their region at a glance
//                         (the start page for them)
//   #/alerts              open and acknowledged alerts, most urgent first
//   #/residents           status board of the caller's residents
//   #/residents/{id}      one resident: status and 7 days of vitals and activity
//
// Alerts are polled every 3 s on every view, so a new alert is on screen and
// announced (aria-live) within one poll, without a reload.
'use strict';

(() => {
  const API = '/api/v1';
  const TOKEN_KEY = 'ondol.token';
  const POLL_MS = 3000;
  const BOARD_REFRESH_MS = 30000;
  // One request per poll in practice (each request is an audit entry).
  const PAGE_LIMIT = 200;
  const MAX_ALERT_PAGES = 20;
  const READINGS_LIMIT = 1000;
  const MAX_READING_PAGES = 20;
  // A request that hangs must not stop polling silently: it fails after this.
  const REQUEST_TIMEOUT_MS = 10000;
  const DAY_MS = 24 * 3600 * 1000;
  const HOUR_MS = 3600 * 1000;

  const SEVERITY = {
    critical: { label: 'Critical', rank: 5 },
    danger: { label: 'Danger', rank: 4 },
    alarm: { label: 'Alarm', rank: 3 },
    caution: { label: 'Caution', rank: 2 },
    low: { label: 'Low', rank: 1 },
  };
  const RULES = {
    missed_checkin: 'Missed check-in',
    inactivity: 'No activity',
    help_request: 'Help requested',
    device_offline: 'Device offline',
    vital_out_of_band: 'Vital sign out of range',
    system_outage: 'System outage',
  };
  const CAUSES = {
    no_checkin: 'No check-in in the window',
    no_activity: 'No movement seen',
    no_data: 'No data: every device is silent',
    silent: 'Nothing heard from it for a while',
    will_offline: 'It reported going offline',
    stalled: 'Ondol itself stopped running for a while',
    ingest_stalled: 'Ondol held device data without storing it',
  };
  // The outcomes staff may record (cleared_by_resident is Ondol's own).
  const OUTCOMES = [
    ['resident_ok', 'Resident is OK'],
    ['needed_help', 'Needed help (given)'],
    ['emergency_services', 'Emergency services called'],
    ['hospitalised', 'Hospitalised'],
    ['false_alarm_device', 'False alarm: device'],
    ['false_alarm_behaviour', 'False alarm: behaviour'],
    ['no_contact', 'Could not make contact'],
  ];
  const OUTCOME_LABEL = Object.fromEntries(OUTCOMES);
  OUTCOME_LABEL.cleared_by_resident = 'Cleared by the resident';
  const DEVICE_KINDS = { gateway: 'Gateway', wearable: 'Wearable', button: 'Button', sensor: 'Sensor' };
  // Why Ondol cannot see a resident (the overview's `reasons`).
  const UNSEEN_REASONS = {
    no_data_alert: 'Open alert: no data from any device',
    all_devices_offline: 'Every device is offline',
    no_devices: 'No device installed',
  };
  // The overview's age bands of open alerts, in its order.
  const AGE_BANDS = [
    ['under_15_min', 'Under 15 min'],
    ['under_1_h', '15 min to 1 h'],
    ['under_24_h', '1 h to 24 h'],
    ['older', '24 h or more'],
  ];

  const VITALS = [
    { type: 'heart_rate', title: 'Heart rate', unit: '/min', digits: 0 },
    { type: 'spo2', title: 'Blood oxygen (SpO₂)', unit: '%', digits: 0 },
    { type: 'blood_pressure', title: 'Blood pressure', unit: 'mmHg', digits: 0 },
    { type: 'body_temperature', title: 'Body temperature', unit: '°C', digits: 1 },
    { type: 'blood_glucose', title: 'Blood glucose', unit: 'mg/dL', digits: 0 },
    { type: 'body_weight', title: 'Weight', unit: 'kg', digits: 1 },
  ];
  const ACTIVITY_TYPES = ['motion', 'door', 'steps'];

  const state = {
    me: null,
    alerts: [], // last list, in the server's order
    knownIds: null, // ids seen so far; null until the first successful poll
    pollTimer: null,
    pollGeneration: 0,
    boardTimer: null,
    skewMs: 0, // server clock minus ours, from the Date header
    lastAlertsAt: null,
    freshIds: new Set(), // alerts new in the last poll (highlighted)
    resolving: null, // the alert the resolve dialog is for
    residentRequest: 0,
  };

  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------ DOM helpers

  /** An element with attributes (class, text, on*, and plain ones) and children. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const SVG_NS = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === 'text') node.textContent = value;
      else if (key === 'class') node.setAttribute('class', value);
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? '' : String(value));
    }
  }

  // ------------------------------------------------------------ time

  const now = () => Date.now() + state.skewMs;

  function parseTime(iso) {
    if (!iso) return null;
    const ms = Date.parse(iso);
    return Number.isNaN(ms) ? null : ms;
  }

  /** "under a minute", "12 min", "3 h 5 min", "2 d 4 h". */
  function formatDuration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return 'under a minute';
    const minutes = Math.floor(s / 60);
    if (minutes < 60) return `${minutes} min`;
    const hours = Math.floor(minutes / 60);
    if (hours < 24) return `${hours} h ${minutes % 60} min`;
    return `${Math.floor(hours / 24)} d ${hours % 24} h`;
  }

  function formatAgo(iso) {
    const ms = parseTime(iso);
    if (ms === null) return 'never';
    return `${formatDuration((now() - ms) / 1000)} ago`;
  }

  const formatters = new Map();
  function formatter(timeZone, options) {
    const key = `${timeZone || ''}|${JSON.stringify(options)}`;
    let f = formatters.get(key);
    if (!f) {
      try {
        f = new Intl.DateTimeFormat('en-GB', { ...options, timeZone: timeZone || undefined });
      } catch {
        // An unknown zone: fall back to the browser's own.
        f = new Intl.DateTimeFormat('en-GB', options);
      }
      formatters.set(key, f);
    }
    return f;
  }

  function formatDateTime(ms, timeZone) {
    return formatter(timeZone, {
      weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23',
    }).format(ms);
  }

  function formatDay(ms, timeZone) {
    return formatter(timeZone, { weekday: 'short', day: 'numeric', month: 'short' }).format(ms);
  }

  function formatShortDay(ms, timeZone) {
    return formatter(timeZone, { weekday: 'short', day: 'numeric' }).format(ms);
  }

  /** Local calendar date "YYYY-MM-DD" and hour 0–23 of `ms` in `timeZone`. */
  function localParts(ms, timeZone) {
    const parts = formatter(timeZone, {
      year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', hourCycle: 'h23',
    }).formatToParts(ms);
    const get = (type) => parts.find((p) => p.type === type)?.value ?? '00';
    return { day: `${get('year')}-${get('month')}-${get('day')}`, hour: Number(get('hour')) % 24 };
  }

  function timeElement(iso, text, timeZone) {
    const ms = parseTime(iso);
    return el('time', { datetime: iso || null, title: ms === null ? null : formatDateTime(ms, timeZone) }, text);
  }

  // ------------------------------------------------------------ API

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path, { method = 'GET', body } = {}) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), REQUEST_TIMEOUT_MS);
    let response;
    let data = null;
    try {
      response = await fetch(API + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
        credentials: 'omit',
        referrerPolicy: 'no-referrer',
        signal: abort.signal,
      });
      const text = await response.text();
      if (text) {
        try {
          data = JSON.parse(text);
        } catch {
          data = null; // not JSON (a proxy's error page): the status still counts
        }
      }
    } catch {
      throw abort.signal.aborted
        ? new ApiError(0, 'timeout', `The Ondol server did not answer within ${REQUEST_TIMEOUT_MS / 1000} seconds.`)
        : new ApiError(0, 'network', 'Cannot reach the Ondol server. Check the network connection.');
    } finally {
      clearTimeout(timer);
    }
    const date = parseTime(response.headers.get('Date'));
    if (date !== null) state.skewMs = date + 500 - Date.now();
    if (!response.ok) {
      const error = data && data.error;
      const message = (error && typeof error.message === 'string' && error.message)
        || `The server answered ${response.status} ${response.statusText}.`;
      throw new ApiError(response.status, (error && error.code) || `http_${response.status}`, message);
    }
    if (data === null) throw new ApiError(response.status, 'bad_response', 'The server sent an answer this page cannot read.');
    return data;
  }

  /** Handles what every caller handles alike; returns true if it did. */
  function handleCommonError(error) {
    if (error instanceof ApiError && error.status === 401) {
      signOut('Your sign-in is no longer accepted. Please sign in again.');
      return true;
    }
    return false;
  }

  // ------------------------------------------------------------ banners

  let errorSource = null;
  function showError(message, source = 'action') {
    const banner = $('error-banner');
    banner.textContent = message;
    banner.hidden = false;
    errorSource = source;
  }
  function clearError(source) {
    if (source && errorSource !== source) return;
    $('error-banner').hidden = true;
    $('error-banner').textContent = '';
    errorSource = null;
  }
  let infoTimer = null;
  function showInfo(message) {
    const banner = $('info-banner');
    banner.textContent = message;
    banner.hidden = false;
    clearTimeout(infoTimer);
    infoTimer = setTimeout(() => { banner.hidden = true; }, 8000);
  }
  function announce(message) {
    const region = $('announcer');
    // A change of text is what screen readers announce; clear first so the
    // same words twice are still read.
    region.textContent = '';
    setTimeout(() => { region.textContent = message; }, 50);
  }

  // ------------------------------------------------------------ sign-in

  async function signIn(event) {
    event.preventDefault();
    const input = $('token');
    const token = input.value.trim();
    const errorBox = $('sign-in-error');
    errorBox.hidden = true;
    if (!token) {
      errorBox.textContent = 'Enter your access token.';
      errorBox.hidden = false;
      input.focus();
      return;
    }
    const button = $('sign-in-button');
    button.disabled = true;
    sessionStorage.setItem(TOKEN_KEY, token);
    try {
      const me = await api('/me');
      if (me.role === 'evaluator') {
        sessionStorage.removeItem(TOKEN_KEY);
        errorBox.textContent = 'Evaluators see reports, not resident data: this dashboard is for caseworkers and supervisors.';
        errorBox.hidden = false;
        return;
      }
      input.value = '';
      startSession(me);
    } catch (error) {
      sessionStorage.removeItem(TOKEN_KEY);
      errorBox.textContent = error instanceof ApiError && error.status === 401
        ? 'That token was not accepted. Check it and try again.'
        : `Could not sign in: ${error.message}`;
      errorBox.hidden = false;
      input.focus();
    } finally {
      button.disabled = false;
    }
  }

  function startSession(me) {
    state.me = me;
    $('who-name').textContent = `${me.name} (${me.role})`;
    $('who').hidden = false;
    $('nav').hidden = false;
    $('nav-overview').hidden = !supervises(me);
    clearError();
    route(true);
    startPolling();
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    stopPolling();
    clearInterval(state.boardTimer);
    state.me = null;
    state.alerts = [];
    state.knownIds = null;
    state.freshIds = new Set();
    state.lastAlertsAt = null;
    state.residentRequest += 1;
    $('alert-list').replaceChildren();
    $('resident-rows').replaceChildren();
    $('vitals').replaceChildren();
    $('activity').replaceChildren();
    $('resident-summary').replaceChildren();
    $('resident-alerts').replaceChildren();
    for (const id of OVERVIEW_PARTS) $(id).replaceChildren();
    $('alert-count').textContent = '';
    $('who').hidden = true;
    $('nav').hidden = true;
    document.title = 'Ondol';
    const dialog = $('resolve-dialog');
    if (dialog.open) dialog.close();
    clearError();
    showView('sign-in');
    if (message) showError(message, 'session');
    else showInfo('Signed out.');
    $('token').focus();
  }

  // ------------------------------------------------------------ routing

  function showView(name) {
    for (const view of document.querySelectorAll('.view')) view.hidden = view.id !== `view-${name}`;
    for (const link of document.querySelectorAll('.views a')) {
      const current = (name === 'alerts' && link.id === 'nav-alerts')
        || (name === 'overview' && link.id === 'nav-overview')
        || ((name === 'residents' || name === 'resident') && link.id === 'nav-residents');
      if (current) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
  }

  function route(initial) {
    if (!state.me) {
      showView('sign-in');
      return;
    }
    clearInterval(state.boardTimer);
    const hash = location.hash.replace(/^#/, '');
    const resident = hash.match(/^\/residents\/([^/]+)$/);
    let heading;
    if (resident) {
      showView('resident');
      loadResident(decodeURIComponent(resident[1]));
      heading = $('resident-title');
    } else if (hash === '/residents') {
      showView('residents');
      loadBoard();
      state.boardTimer = setInterval(loadBoard, BOARD_REFRESH_MS);
      heading = $('residents-title');
    } else if (onOverview()) {
      showView('overview');
      loadOverview();
      state.boardTimer = setInterval(loadOverview, BOARD_REFRESH_MS);
      heading = $('overview-title');
    } else {
      showView('alerts');
      renderAlerts();
      heading = $('alerts-title');
    }
    if (!initial) {
      // Screen reader and keyboard users land on the new view's heading.
      heading.setAttribute('tabindex', '-1');
      heading.focus();
    }
  }

  // ------------------------------------------------------------ alerts

  function startPolling() {
    stopPolling();
    const generation = ++state.pollGeneration;
    const tick = async () => {
      await pollAlerts(generation);
      if (generation === state.pollGeneration) state.pollTimer = setTimeout(tick, POLL_MS);
    };
    tick();
  }

  function stopPolling() {
    state.pollGeneration += 1;
    clearTimeout(state.pollTimer);
    state.pollTimer = null;
  }

  async function fetchActiveAlerts() {
    const items = [];
    let cursor = null;
    for (let page = 0; page < MAX_ALERT_PAGES; page += 1) {
      const query = new URLSearchParams({ status: 'active', limit: String(PAGE_LIMIT) });
      if (cursor) query.set('cursor', cursor);
      const data = await api(`/alerts?${query}`);
      items.push(...(data.items || []));
      cursor = data.next_cursor;
      if (!cursor) break;
    }
    return items;
  }

  async function pollAlerts(generation) {
    let items;
    try {
      items = await fetchActiveAlerts();
    } catch (error) {
      if (generation !== state.pollGeneration) return;
      if (handleCommonError(error)) return;
      const since = state.lastAlertsAt ? ` (last updated ${formatter(null, { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' }).format(state.lastAlertsAt)})` : '';
      showError(`Alerts may be out of date${since}: ${error.message} Retrying every ${POLL_MS / 1000} seconds.`, 'poll');
      return;
    }
    if (generation !== state.pollGeneration) return;
    clearError('poll');
    state.lastAlertsAt = Date.now();
    noticeNewAlerts(items);
    state.alerts = items;
    renderAlerts();
  }

  function noticeNewAlerts(items) {
    const previous = new Map(state.alerts.map((a) => [a.id, a]));
    const fresh = [];
    for (const alert of items) {
      const before = previous.get(alert.id);
      if (state.knownIds && !state.knownIds.has(alert.id)) fresh.push(['New alert', alert]);
      else if (before && rank(alert.severity) > rank(before.severity)) fresh.push(['Alert raised', alert]);
    }
    state.knownIds = new Set([...(state.knownIds || []), ...items.map((a) => a.id)]);
    if (fresh.length) {
      announce(fresh.map(([what, a]) => `${what}: ${severityLabel(a.severity)}, ${a.resident_name || a.resident_id || 'system'}, ${ruleLabel(a.rule)}.`).join(' '));
      state.freshIds = new Set(fresh.map(([, a]) => a.id));
    } else {
      state.freshIds = new Set();
    }
  }

  const rank = (severity) => (SEVERITY[severity] ? SEVERITY[severity].rank : 0);
  const severityLabel = (severity) => (SEVERITY[severity] ? SEVERITY[severity].label : severity);
  const ruleLabel = (rule) => RULES[rule] || rule;
  const causeLabel = (cause) => CAUSES[cause] || cause;

  function renderAlerts() {
    const count = state.alerts.length;
    $('alert-count').textContent = count ? String(count) : '';
    document.title = count ? `(${count}) Ondol` : 'Ondol';
    if (state.lastAlertsAt) {
      $('alerts-updated').textContent = `Updated ${formatter(null, { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' }).format(state.lastAlertsAt)}`;
    }
    $('alerts-empty').hidden = count > 0 || state.knownIds === null;

    const list = $('alert-list');
    const existing = new Map([...list.children].map((li) => [li.dataset.id, li]));
    state.alerts.forEach((alert, index) => {
      const key = String(alert.id);
      let item = existing.get(key);
      if (item) existing.delete(key);
      else item = buildAlertItem(alert);
      updateAlertItem(item, alert);
      const here = list.children[index];
      // Only move what is out of place: moving a node loses its focus.
      if (here !== item) list.insertBefore(item, here || null);
    });
    for (const gone of existing.values()) {
      const hadFocus = gone.contains(document.activeElement);
      gone.remove();
      if (hadFocus) focusFirstAlertAction();
    }
  }

  function buildAlertItem(alert) {
    const item = el('li', { class: 'alert', 'data-id': alert.id });
    const resident = el('span', { class: 'alert-resident' });
    const title = el('h2', { class: 'alert-title' }, el('span', { class: 'tier' }), resident);
    const facts = el('dl', { class: 'alert-facts' });
    const ack = el('button', { type: 'button', class: 'primary ack', onclick: () => acknowledge(item.dataset.id, ack) }, 'Acknowledge');
    const resolve = el('button', { type: 'button', class: 'secondary resolve', onclick: () => openResolve(item.dataset.id, resolve) }, 'Resolve');
    item.append(el('div', { class: 'alert-main' }, title, facts), el('div', { class: 'alert-actions' }, ack, resolve));
    return item;
  }

  function updateAlertItem(item, alert) {
    const who = alert.resident_name || alert.resident_id || 'System';
    item.className = `alert sev-${alert.severity}${state.freshIds && state.freshIds.has(alert.id) ? ' is-new' : ''}`;
    item.dataset.status = alert.status;
    item.dataset.rule = alert.rule;
    const tier = item.querySelector('.tier');
    tier.className = `tier tier-${alert.severity}`;
    tier.textContent = severityLabel(alert.severity);
    const resident = item.querySelector('.alert-resident');
    const wanted = alert.resident_id ? `#/residents/${encodeURIComponent(alert.resident_id)}` : null;
    const link = resident.firstElementChild;
    if (!link || link.getAttribute('href') !== wanted || link.textContent !== who) {
      resident.replaceChildren(wanted ? el('a', { href: wanted }, who) : who);
    }

    const facts = [
      ['Rule', ruleLabel(alert.rule)],
      ['Cause', causeLabel(alert.cause)],
      ...(alert.detail ? [['What happened', alert.detail]] : []),
      ['Open for', timeElement(alert.opened_at, formatDuration(alert.open_seconds ?? ((now() - parseTime(alert.opened_at)) / 1000)))],
    ];
    if (alert.status === 'acknowledged') {
      const mine = state.me && alert.acknowledged_by === state.me.id;
      const by = alert.acknowledged_by ? ` by ${mine ? 'you' : alert.acknowledged_by}` : '';
      facts.push(['Status', el('span', { class: 'status-acknowledged' }, `Acknowledged${by}, ${formatAgo(alert.acknowledged_at)}`)]);
    } else {
      facts.push(['Status', 'Open, not yet acknowledged']);
    }
    if (alert.device_id) facts.push(['Device', alert.device_id]);
    if (alert.escalations > 0) facts.push(['Escalated', `${alert.escalations} time${alert.escalations === 1 ? '' : 's'}`]);
    item.querySelector('.alert-facts').replaceChildren(
      ...facts.map(([term, value]) => el('div', null, el('dt', null, `${term}:`), el('dd', null, value))),
    );

    const ack = item.querySelector('button.ack');
    ack.hidden = alert.status !== 'open';
    ack.setAttribute('aria-label', `Acknowledge alert for ${who}`);
    item.querySelector('button.resolve').setAttribute('aria-label', `Resolve alert for ${who}`);
  }

  function focusFirstAlertAction() {
    const next = document.querySelector('#alert-list button:not([hidden])');
    if (next) next.focus();
    else {
      $('alerts-title').setAttribute('tabindex', '-1');
      $('alerts-title').focus();
    }
  }

  const findAlert = (id) => state.alerts.find((a) => String(a.id) === String(id));

  function replaceAlert(updated) {
    const index = state.alerts.findIndex((a) => a.id === updated.id);
    if (updated.status === 'resolved') {
      if (index >= 0) state.alerts.splice(index, 1);
    } else if (index >= 0) {
      state.alerts[index] = updated;
    }
    renderAlerts();
  }

  async function acknowledge(id, button) {
    const alert = findAlert(id);
    const who = alert ? (alert.resident_name || alert.resident_id) : `alert ${id}`;
    button.disabled = true;
    try {
      const updated = await api(`/alerts/${encodeURIComponent(id)}/ack`, { method: 'POST', body: {} });
      clearError('action');
      replaceAlert(updated);
      announce(`Alert for ${who} acknowledged.`);
      const resolve = button.closest('li')?.querySelector('button.resolve');
      if (resolve && resolve.isConnected) resolve.focus();
    } catch (error) {
      if (handleCommonError(error)) return;
      if (error.status === 409) showError(`The alert for ${who} was already acknowledged or resolved, perhaps by a colleague. The list is being refreshed.`);
      else showError(`Could not acknowledge the alert for ${who}: ${error.message}`);
      startPolling();
    } finally {
      button.disabled = false;
    }
  }

  // ------------------------------------------------------------ resolve dialog

  function buildOutcomeChoices() {
    const box = $('outcome-choices');
    box.replaceChildren(...OUTCOMES.map(([value, label]) => el('label', null,
      el('input', { type: 'radio', name: 'outcome', value, required: true }), label)));
  }

  function openResolve(id, opener) {
    const alert = findAlert(id);
    if (!alert) return;
    state.resolving = { id: alert.id, opener, who: alert.resident_name || alert.resident_id || 'System' };
    $('resolve-subject').textContent = `${severityLabel(alert.severity)} · ${ruleLabel(alert.rule)} · ${state.resolving.who}`;
    $('resolve-form').reset();
    $('resolve-error').hidden = true;
    const dialog = $('resolve-dialog');
    dialog.showModal(); // modal: the rest of the page is inert, focus stays inside
    dialog.querySelector('input[name="outcome"]').focus();
  }

  function closeResolve() {
    const dialog = $('resolve-dialog');
    if (dialog.open) dialog.close();
  }

  async function submitResolve(event) {
    event.preventDefault();
    const target = state.resolving;
    if (!target) return;
    const form = $('resolve-form');
    const outcome = form.querySelector('input[name="outcome"]:checked')?.value;
    const errorBox = $('resolve-error');
    if (!outcome) {
      errorBox.textContent = 'Choose an outcome.';
      errorBox.hidden = false;
      form.querySelector('input[name="outcome"]').focus();
      return;
    }
    const note = $('resolve-note').value.trim();
    const body = note ? { outcome, note } : { outcome };
    const submit = $('resolve-submit');
    submit.disabled = true;
    try {
      const updated = await api(`/alerts/${encodeURIComponent(target.id)}/resolve`, { method: 'POST', body });
      state.resolving = null;
      closeResolve();
      clearError('action');
      replaceAlert(updated);
      announce(`Alert for ${target.who} resolved: ${OUTCOME_LABEL[outcome]}.`);
      showInfo(`Alert for ${target.who} resolved: ${OUTCOME_LABEL[outcome]}.`);
      focusFirstAlertAction();
    } catch (error) {
      if (handleCommonError(error)) return;
      if (error.status === 409) {
        state.resolving = null;
        closeResolve();
        showError(`The alert for ${target.who} was already resolved, perhaps by a colleague.`);
        startPolling();
      } else {
        errorBox.textContent = `Could not resolve: ${error.message}`;
        errorBox.hidden = false;
      }
    } finally {
      submit.disabled = false;
    }
  }

  function onResolveClosed() {
    const target = state.resolving;
    state.resolving = null;
    // Back to where the caseworker was, if that button still exists.
    if (target && target.opener && target.opener.isConnected && !target.opener.hidden) target.opener.focus();
  }

  // ------------------------------------------------------------ supervisor's overview

  /** Supervisors and admins have the overview of their region. */
  const supervises = (me) => Boolean(me) && (me.role === 'supervisor' || me.role === 'admin');
  /** The overview is where supervisors start, and where #/overview leads. */
  const onOverview = () => supervises(state.me) && ['', '/overview'].includes(location.hash.replace(/^#/, ''));
  const OVERVIEW_PARTS = ['overview-figures', 'ov-tiers', 'ov-escalations', 'ov-unseen', 'ov-battery', 'ov-history'];

  function batteryText(d) {
    if (typeof d.battery_pct !== 'number') return null;
    return d.battery_low ? el('span', { class: 'offline' }, `battery ${d.battery_pct}% (low)`) : `battery ${d.battery_pct}%`;
  }

  /**
   * A table with a caption, column headers and (when a row starts with a
   * <th>) row headers, in a region that scrolls sideways on narrow screens
   * and takes focus, so the keyboard can scroll it too.
   */
  function dataTable(id, caption, headers, rows, foot) {
    const captionId = `${id}-caption`;
    return el('div', { class: 'table-wrap', role: 'region', tabindex: '0', 'aria-labelledby': captionId },
      el('table', { class: 'board', id },
        el('caption', { id: captionId, class: 'visually-hidden' }, caption),
        el('thead', null, el('tr', null, headers.map((h) => el('th', { scope: 'col' }, h)))),
        el('tbody', null, rows),
        foot ? el('tfoot', null, foot) : null));
  }

  const residentLink = (id, name) => el('a', { href: `#/residents/${encodeURIComponent(id)}` }, name || id);

  async function loadOverview() {
    let data;
    try {
      data = await api('/overview');
    } catch (error) {
      if (handleCommonError(error)) return;
      showError(`Could not load the overview: ${error.message}`, 'overview');
      return;
    }
    if (!onOverview()) return; // the user moved on meanwhile
    clearError('overview');
    renderOverview(data);
  }

  function renderOverview(o) {
    $('overview-title').textContent = o.region ? `Overview: ${o.region}` : 'Overview: all regions';
    $('overview-updated').textContent = `Updated ${formatter(null, { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(Date.now())}`;
    const open = o.open_alerts;
    const residents = `${o.residents} resident${o.residents === 1 ? '' : 's'}`;
    $('overview-scope').textContent = o.region
      ? `${residents} in ${o.region}. System alerts, which concern every region, are counted too.`
      : `${residents} in every region.`;

    const figure = (key, term, value, detail) => el('div', { 'data-figure': key },
      el('dl', null, el('dt', null, term), el('dd', null, el('span', { class: 'figure' }, String(value)), detail ? ` ${detail}` : null)));
    $('overview-figures').replaceChildren(
      figure('open', 'Open alerts', open.total, open.total ? `(${open.unacknowledged} not acknowledged)` : null),
      figure('escalations', 'Escalations waiting', o.escalations_waiting.length),
      figure('unseen', 'Residents Ondol cannot see', o.unseen_residents.length),
      figure('battery', `Devices at ${o.low_battery_pct}% battery or less`, o.low_battery.length),
    );

    // Open alerts: one row per tier, one column per age band.
    const counts = (t) => [
      ...AGE_BANDS.map(([key]) => el('td', { class: 'num', 'data-band': key }, t[key])),
      el('td', { class: 'num', 'data-band': 'total' }, t.total),
      el('td', { class: 'num', 'data-band': 'unacknowledged' }, t.unacknowledged),
    ];
    const sum = (key) => open.by_tier.reduce((n, t) => n + t[key], 0);
    const all = Object.fromEntries(AGE_BANDS.map(([key]) => [key, sum(key)]));
    $('ov-tiers').replaceChildren(dataTable('ov-tier-table',
      'Open and acknowledged alerts by tier (rows) and how long they have been open (columns)',
      ['Tier', ...AGE_BANDS.map(([, label]) => label), 'Total', 'Not acknowledged'],
      open.by_tier.map((t) => el('tr', { 'data-severity': t.severity },
        el('th', { scope: 'row' }, el('span', { class: `tier tier-${t.severity}` }, severityLabel(t.severity))),
        counts(t))),
      el('tr', { 'data-severity': 'all' },
        el('th', { scope: 'row' }, 'All tiers'),
        counts({ ...all, total: open.total, unacknowledged: open.unacknowledged }))));

    const empty = (text) => el('p', { class: 'empty' }, text);
    const caseworkers = new Map(o.history.map((h) => [h.id, h.caseworker]));

    $('ov-escalations').replaceChildren(o.escalations_waiting.length
      ? dataTable('ov-escalation-table', 'Escalated alerts nobody has acknowledged, most urgent first',
        ['Tier', 'Resident', 'Rule', 'Open for', 'Escalated', 'Caseworker'],
        o.escalations_waiting.map((a) => el('tr', { 'data-id': a.id, 'data-resident': a.resident_id || null },
          el('td', null, el('span', { class: `tier tier-${a.severity}` }, severityLabel(a.severity))),
          el('td', null, a.resident_id ? residentLink(a.resident_id, a.resident_name) : 'System'),
          el('td', null, `${ruleLabel(a.rule)} (${causeLabel(a.cause)})`),
          el('td', null, timeElement(a.opened_at, formatDuration(a.open_seconds))),
          el('td', null, `${a.escalations} time${a.escalations === 1 ? '' : 's'}`),
          el('td', null, caseworkers.get(a.resident_id) || '—'))))
      : empty('None: every escalated alert has been acknowledged.'));

    $('ov-unseen').replaceChildren(o.unseen_residents.length
      ? dataTable('ov-unseen-table', 'Residents Ondol cannot see, longest silent first',
        ['Resident', 'Why', 'Last heard from', 'Caseworker'],
        o.unseen_residents.map((r) => el('tr', { 'data-id': r.id },
          el('td', null, residentLink(r.id, r.name), r.away ? el('span', { class: 'away' }, 'Away (rules paused)') : null),
          el('td', null, r.reasons.map((why) => UNSEEN_REASONS[why] || why).join('; ')),
          el('td', null, timeElement(r.last_heard_at, formatAgo(r.last_heard_at))),
          el('td', null, r.caseworker || '—'))))
      : empty('None: Ondol hears from every resident.'));

    $('ov-battery-title').textContent = `Devices with low battery (${o.low_battery_pct}% or less)`;
    $('ov-battery').replaceChildren(o.low_battery.length
      ? dataTable('ov-battery-table', `Devices at ${o.low_battery_pct}% battery or less, emptiest first`,
        ['Device', 'Battery', 'Resident', 'Status', 'Last heard from'],
        o.low_battery.map((d) => el('tr', { 'data-id': d.id },
          el('td', null, `${DEVICE_KINDS[d.kind] || d.kind} ${d.id}`),
          el('td', { class: 'num' }, `${d.battery_pct}%`),
          el('td', null, residentLink(d.resident_id, d.resident_name)),
          el('td', null, d.online === true ? 'online' : d.online === false ? el('span', { class: 'offline' }, 'offline') : 'unknown'),
          el('td', null, timeElement(d.last_seen_at, formatAgo(d.last_seen_at))))))
      : empty(`No device is at ${o.low_battery_pct}% battery or less.`));

    $('ov-history-hint').textContent = `Alerts opened in the last ${o.history_days} days and how they ended; each resident's page lists them one by one.`;
    $('ov-history').replaceChildren(o.history.length
      ? dataTable('ov-history-table', `Alerts per resident over the last ${o.history_days} days, with outcomes; residents with the most urgent open alert first`,
        ['Resident', 'Open now', `Alerts, ${o.history_days} days`, 'Outcomes', 'Last alert', 'Caseworker'],
        o.history.map((h) => {
          const resolved = Object.values(h.outcomes).reduce((n, c) => n + c, 0);
          const outcomes = Object.entries(h.outcomes).map(([key, n]) => `${OUTCOME_LABEL[key] || key}: ${n}`);
          if (h.alerts > resolved) outcomes.push(`not yet resolved: ${h.alerts - resolved}`);
          return el('tr', { 'data-id': h.id },
            el('td', null, residentLink(h.id, h.name)),
            el('td', null, h.open_alerts
              ? [el('span', { class: `tier tier-${h.highest_severity}` }, severityLabel(h.highest_severity)), ` ${h.open_alerts}`]
              : 'None'),
            el('td', { class: 'num', 'data-field': 'alerts' }, h.alerts),
            el('td', { 'data-field': 'outcomes' }, outcomes.length ? outcomes.join('; ') : '—'),
            el('td', null, h.last_alert_at ? timeElement(h.last_alert_at, formatAgo(h.last_alert_at)) : '—'),
            el('td', null, h.caseworker || '—'));
        }))
      : empty('No residents.'));
  }

  // ------------------------------------------------------------ residents board

  async function loadBoard() {
    let data;
    try {
      data = await api('/residents');
    } catch (error) {
      if (handleCommonError(error)) return;
      showError(`Could not load your residents: ${error.message}`, 'board');
      return;
    }
    clearError('board');
    const items = data.items || [];
    $('residents-empty').hidden = items.length > 0;
    $('resident-board').hidden = items.length === 0;
    $('residents-updated').textContent = `Updated ${formatter(null, { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(Date.now())}`;
    $('resident-rows').replaceChildren(...items.map(residentRow));
  }

  function residentRow(r) {
    const name = el('td', null,
      el('a', { href: `#/residents/${encodeURIComponent(r.id)}` }, r.name || r.id),
      r.away ? el('span', { class: 'away' }, 'Away (rules paused)') : null);
    const alerts = el('td', null, r.open_alerts
      ? [el('span', { class: `tier tier-${r.highest_severity}` }, severityLabel(r.highest_severity)), ` ${r.open_alerts} open`]
      : 'None');
    return el('tr', { 'data-id': r.id },
      name,
      alerts,
      el('td', null, timeElement(r.last_activity_at, formatAgo(r.last_activity_at), r.timezone)),
      el('td', null, timeElement(r.last_checkin_at, formatAgo(r.last_checkin_at), r.timezone)),
      el('td', null, deviceList(r.devices || [])));
  }

  function deviceList(devices) {
    if (!devices.length) return 'No devices';
    return el('ul', { class: 'devices' }, devices.map((d) => {
      const online = d.online === true ? 'online' : d.online === false ? el('span', { class: 'offline' }, 'offline') : 'status unknown';
      const battery = batteryText(d);
      return el('li', null, `${DEVICE_KINDS[d.kind] || d.kind} ${d.id}: `, online, battery ? ', ' : null, battery);
    }));
  }

  // ------------------------------------------------------------ resident page

  async function fetchReadings(id, types, fromMs, toMs) {
    const items = [];
    let cursor = null;
    let truncated = false;
    for (let page = 0; ; page += 1) {
      if (page === MAX_READING_PAGES) {
        truncated = true;
        break;
      }
      const query = new URLSearchParams({
        type: types.join(','),
        from: new Date(fromMs).toISOString(),
        to: new Date(toMs).toISOString(),
        limit: String(READINGS_LIMIT),
      });
      if (cursor) query.set('cursor', cursor);
      const data = await api(`/residents/${encodeURIComponent(id)}/readings?${query}`);
      items.push(...(data.items || []));
      cursor = data.next_cursor;
      if (!cursor) break;
    }
    return { items, truncated };
  }

  async function loadResident(id) {
    const request = ++state.residentRequest;
    const current = () => request === state.residentRequest;
    $('resident-title').textContent = 'Resident';
    $('resident-summary').replaceChildren(el('p', { class: 'hint' }, 'Loading…'));
    $('resident-alerts').replaceChildren();
    $('vitals').replaceChildren();
    $('activity').replaceChildren();
    $('vitals-hint').textContent = '';
    let resident;
    try {
      resident = await api(`/residents/${encodeURIComponent(id)}`);
    } catch (error) {
      if (!current() || handleCommonError(error)) return;
      const message = error.status === 404 ? 'This resident is not on your list.' : `Could not load this resident: ${error.message}`;
      $('resident-summary').replaceChildren(el('p', { class: 'form-error', role: 'alert' }, message));
      return;
    }
    if (!current()) return;
    const tz = resident.timezone;
    $('resident-title').textContent = resident.name || resident.id;
    const fact = (term, value) => el('div', null, el('dl', null, el('dt', null, term), el('dd', null, value)));
    $('resident-summary').replaceChildren(
      fact('Open alerts', resident.open_alerts ? `${resident.open_alerts} (highest: ${severityLabel(resident.highest_severity)})` : 'None'),
      fact('Last activity', timeElement(resident.last_activity_at, formatAgo(resident.last_activity_at), tz)),
      fact('Last check-in', timeElement(resident.last_checkin_at, formatAgo(resident.last_checkin_at), tz)),
      fact('Devices', deviceList(resident.devices || [])),
      fact('Region and time zone', `${resident.region || '—'}, ${tz || '—'}${resident.away ? ' · away, rules paused' : ''}`),
    );

    loadResidentAlerts(resident, current);
    const toMs = now();
    const fromMs = toMs - 7 * DAY_MS;
    $('vitals-hint').textContent = `Times are the resident's local time (${tz}).`;
    const [vitals, activity] = await Promise.allSettled([
      fetchReadings(resident.id, VITALS.map((v) => v.type), fromMs, toMs),
      fetchReadings(resident.id, ACTIVITY_TYPES, fromMs, toMs),
    ]);
    if (!current()) return;
    for (const [result, box, what] of [[vitals, $('vitals'), 'vitals'], [activity, $('activity'), 'activity']]) {
      if (result.status === 'rejected') {
        if (handleCommonError(result.reason)) return;
        box.replaceChildren(el('p', { class: 'form-error', role: 'alert' }, `Could not load ${what}: ${result.reason.message}`));
      }
    }
    if (vitals.status === 'fulfilled') renderVitals(vitals.value, fromMs, toMs, tz);
    if (activity.status === 'fulfilled') renderActivity(activity.value, fromMs, toMs, tz);
  }

  /** The resident's open alerts and the last ten resolved, with outcomes. */
  async function loadResidentAlerts(resident, current) {
    const box = $('resident-alerts');
    const query = (status, limit) => new URLSearchParams({ resident: resident.id, status, limit: String(limit) });
    let active;
    let resolved;
    try {
      [active, resolved] = await Promise.all([
        api(`/alerts?${query('active', PAGE_LIMIT)}`),
        api(`/alerts?${query('resolved', 10)}`),
      ]);
    } catch (error) {
      if (!current() || handleCommonError(error)) return;
      box.replaceChildren(el('p', { class: 'form-error', role: 'alert' }, `Could not load this resident's alerts: ${error.message}`));
      return;
    }
    if (!current()) return;
    const items = [...(active.items || []), ...(resolved.items || [])];
    if (!items.length) {
      box.replaceChildren(el('p', { class: 'empty' }, 'No alerts.'));
      return;
    }
    const tz = resident.timezone;
    const statusText = (a) => {
      if (a.status === 'resolved') {
        const by = a.resolved_by ? `, by ${a.resolved_by}` : '';
        return `Resolved: ${OUTCOME_LABEL[a.outcome] || a.outcome || 'no outcome'}${by}`;
      }
      return a.status === 'acknowledged' ? `Acknowledged by ${a.acknowledged_by || 'someone'}` : 'Open';
    };
    box.replaceChildren(el('div', { class: 'table-wrap' }, el('table', { class: 'board', id: 'resident-alert-table' },
      el('caption', { class: 'visually-hidden' }, 'Open alerts, then the last ten resolved, newest first'),
      el('thead', null, el('tr', null, ['Tier', 'Rule', 'Opened', 'Status'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', null, items.map((a) => el('tr', { 'data-id': a.id, 'data-status': a.status },
        el('td', null, el('span', { class: `tier tier-${a.severity}` }, severityLabel(a.severity))),
        el('td', null, `${ruleLabel(a.rule)} (${causeLabel(a.cause)})`),
        el('td', null, timeElement(a.opened_at, formatDateTime(parseTime(a.opened_at), tz), tz)),
        el('td', null, statusText(a), a.status !== 'resolved' ? [' · ', el('a', { href: '#/alerts' }, 'Open alerts')] : null)))))));
  }

  function renderVitals({ items, truncated }, fromMs, toMs, tz) {
    const charts = [];
    for (const vital of VITALS) {
      const readings = items.filter((r) => r.type === vital.type);
      if (!readings.length) continue;
      const series = vital.type === 'blood_pressure'
        ? [
          { name: 'Systolic', points: points(readings, 'systolic') },
          { name: 'Diastolic', points: points(readings, 'diastolic') },
        ]
        : [{ name: vital.title, points: points(readings, 'value') }];
      charts.push(lineChart(vital, series, fromMs, toMs, tz));
    }
    const box = $('vitals');
    if (!charts.length) {
      box.replaceChildren(el('p', { class: 'empty' }, 'No vital signs in the last 7 days.'));
      return;
    }
    box.replaceChildren(...charts);
    if (truncated) box.append(el('p', { class: 'hint' }, 'Only the oldest readings fit; the newest are not shown.'));
  }

  function points(readings, field) {
    return readings
      .map((r) => ({ t: parseTime(r.at), v: r[field] }))
      .filter((p) => p.t !== null && typeof p.v === 'number' && Number.isFinite(p.v))
      .sort((a, b) => a.t - b.t);
  }

  /** Round numbers for an axis between lo and hi. */
  function niceTicks(lo, hi, count) {
    if (hi <= lo) {
      hi = lo + 1;
      lo -= 1;
    }
    const raw = (hi - lo) / count;
    const magnitude = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) || raw;
    const start = Math.floor(lo / step) * step;
    const end = Math.ceil(hi / step) * step;
    const ticks = [];
    for (let v = start; v <= end + step / 2; v += step) ticks.push(Number(v.toFixed(6)));
    return ticks;
  }

  /** Local midnights between from and to (hour steps, so any whole-hour zone). */
  function dayStarts(fromMs, toMs, tz) {
    const starts = [];
    for (let t = Math.ceil(fromMs / HOUR_MS) * HOUR_MS; t <= toMs; t += HOUR_MS) {
      if (localParts(t, tz).hour === 0) starts.push(t);
    }
    return starts;
  }

  // Drawn at about the size shown (one or two charts a row), so 12 px text
  // stays readable.
  const W = 560;
  const H = 220;
  const PAD = { left: 44, right: 12, top: 12, bottom: 26 };

  function frame(fromMs, toMs, yTicks, tz, format) {
    const x = (t) => PAD.left + ((t - fromMs) / (toMs - fromMs)) * (W - PAD.left - PAD.right);
    const lo = yTicks[0];
    const hi = yTicks[yTicks.length - 1];
    const y = (v) => H - PAD.bottom - ((v - lo) / (hi - lo || 1)) * (H - PAD.top - PAD.bottom);
    const g = svg('g', { 'aria-hidden': 'true' });
    for (const v of yTicks) {
      g.append(svg('line', { class: 'grid', x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }));
      g.append(svg('text', { x: PAD.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, format(v)));
    }
    for (const t of dayStarts(fromMs, toMs, tz)) {
      g.append(svg('line', { class: 'grid', x1: x(t), x2: x(t), y1: PAD.top, y2: H - PAD.bottom }));
      if (x(t) < W - PAD.right - 30) {
        g.append(svg('text', { x: x(t) + 3, y: H - PAD.bottom + 16 }, formatShortDay(t, tz)));
      }
    }
    g.append(svg('line', { class: 'axis', x1: PAD.left, x2: W - PAD.right, y1: H - PAD.bottom, y2: H - PAD.bottom }));
    g.append(svg('line', { class: 'axis', x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: H - PAD.bottom }));
    return { x, y, g };
  }

  let chartSeq = 0;

  function lineChart(vital, series, fromMs, toMs, tz) {
    const id = `chart-${++chartSeq}`;
    const fmt = (v) => v.toFixed(vital.digits);
    const all = series.flatMap((s) => s.points.map((p) => p.v));
    const yTicks = niceTicks(Math.min(...all), Math.max(...all), 4);
    const { x, y, g } = frame(fromMs, toMs, yTicks, tz, (v) => String(v));
    const plot = svg('g', { 'aria-hidden': 'true' });
    series.forEach((s, index) => {
      // Break the line where readings stop for more than 6 hours: no line
      // pretends to know what happened in a gap.
      let d = '';
      let previous = null;
      for (const p of s.points) {
        const move = previous === null || p.t - previous.t > 6 * HOUR_MS;
        d += `${move ? 'M' : 'L'}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`;
        previous = p;
      }
      plot.append(svg('path', { class: `line series-${index}`, d }));
      if (s.points.length <= 60) {
        for (const p of s.points) plot.append(svg('circle', { class: `series-${index}`, cx: x(p.t).toFixed(1), cy: y(p.v).toFixed(1), r: 2.5 }));
      }
    });

    const summary = series.map((s) => {
      const values = s.points.map((p) => p.v);
      const last = s.points[s.points.length - 1];
      const prefix = series.length > 1 ? `${s.name}: ` : '';
      return `${prefix}latest ${fmt(last.v)} ${vital.unit} (${formatDateTime(last.t, tz)}); lowest ${fmt(Math.min(...values))}, highest ${fmt(Math.max(...values))}, ${values.length} reading${values.length === 1 ? '' : 's'}.`;
    }).join(' ');

    const legend = series.length > 1
      ? el('ul', { class: 'legend', 'aria-hidden': 'true' }, series.map((s, i) => el('li', null, el('span', { class: `swatch${i ? ' dashed' : ''}` }), s.name)))
      : null;

    // The text alternative: every reading, newest first.
    const rows = [];
    const byTime = new Map();
    series.forEach((s, i) => {
      for (const p of s.points) {
        if (!byTime.has(p.t)) byTime.set(p.t, []);
        byTime.get(p.t)[i] = p.v;
      }
    });
    const times = [...byTime.keys()].sort((a, b) => b - a);
    for (const t of times) {
      const values = byTime.get(t);
      rows.push(el('tr', null, el('td', null, formatDateTime(t, tz)), series.map((_, i) => el('td', null, values[i] === undefined ? '—' : fmt(values[i])))));
    }
    const table = el('table', null,
      el('caption', { class: 'visually-hidden' }, `${vital.title} readings, newest first`),
      el('thead', null, el('tr', null, el('th', { scope: 'col' }, 'Time'), series.map((s) => el('th', { scope: 'col' }, `${series.length > 1 ? s.name : 'Value'} (${vital.unit})`)))),
      el('tbody', null, rows));

    return el('figure', { class: 'chart', 'data-type': vital.type },
      el('figcaption', { id: `${id}-title` }, `${vital.title} (${vital.unit})`),
      el('p', { class: 'chart-summary', id: `${id}-desc` }, summary),
      svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': `${id}-title`, 'aria-describedby': `${id}-desc` }, g, plot),
      legend,
      el('details', null, el('summary', null, 'Show readings as a table'), el('div', { class: 'table-scroll', tabindex: '0', role: 'region', 'aria-label': `${vital.title} readings` }, table)));
  }

  function renderActivity({ items, truncated }, fromMs, toMs, tz) {
    const box = $('activity');
    // Events per hour (motion detected, door opened) and steps per local day.
    const firstHour = Math.floor(fromMs / HOUR_MS) * HOUR_MS;
    const hours = Math.ceil((toMs - firstHour) / HOUR_MS);
    const perHour = new Array(hours).fill(0);
    const days = new Map();
    const dayOf = (t) => {
      const key = localParts(t, tz).day;
      if (!days.has(key)) days.set(key, { key, start: t, motion: 0, door: 0, steps: 0 });
      return days.get(key);
    };
    for (let t = firstHour; t < toMs; t += HOUR_MS) dayOf(Math.max(t, fromMs));
    let events = 0;
    let lastEvent = null;
    for (const r of items) {
      const t = parseTime(r.at);
      if (t === null || t < fromMs || t > toMs) continue;
      const day = dayOf(t);
      let event = false;
      if (r.type === 'motion' && Number(r.value) === 1) {
        day.motion += 1;
        event = true;
      } else if (r.type === 'door' && r.text === 'open') {
        day.door += 1;
        event = true;
      } else if (r.type === 'steps' && typeof r.value === 'number') {
        day.steps += r.value;
        if (r.value > 0) event = true;
      }
      if (event) {
        const index = Math.floor((t - firstHour) / HOUR_MS);
        if (index >= 0 && index < hours) perHour[index] += 1;
        events += 1;
        lastEvent = lastEvent === null ? t : Math.max(lastEvent, t);
      }
    }
    if (!events) {
      box.replaceChildren(el('p', { class: 'empty' }, 'No activity (motion, door or steps) recorded in the last 7 days.'));
      return;
    }

    // Longest run of hours without any event, for the text alternative.
    let longest = { length: 0, start: 0 };
    let run = 0;
    perHour.forEach((n, i) => {
      run = n === 0 ? run + 1 : 0;
      if (run > longest.length) longest = { length: run, start: i - run + 1 };
    });

    const id = `chart-${++chartSeq}`;
    const max = Math.max(...perHour);
    const yTicks = niceTicks(0, max, 3);
    const { x, y, g } = frame(firstHour, firstHour + hours * HOUR_MS, yTicks, tz, (v) => String(v));
    const bars = svg('g', { 'aria-hidden': 'true' });
    const barWidth = Math.max(1, x(firstHour + HOUR_MS) - x(firstHour) - 0.6);
    perHour.forEach((n, i) => {
      if (!n) return;
      const t = firstHour + i * HOUR_MS;
      bars.append(svg('rect', { class: 'bar series-0', x: x(t).toFixed(2), y: y(n).toFixed(1), width: barWidth.toFixed(2), height: (y(0) - y(n)).toFixed(1) }));
    });
    const longestText = longest.length
      ? ` Longest stretch without activity: ${longest.length} h, from ${formatDateTime(firstHour + longest.start * HOUR_MS, tz)}.`
      : '';
    const hourly = el('figure', { class: 'chart', 'data-type': 'activity' },
      el('figcaption', { id: `${id}-title` }, 'Activity events per hour (motion, door opened, steps)'),
      el('p', { class: 'chart-summary', id: `${id}-desc` },
        `${events} events; last at ${formatDateTime(lastEvent, tz)} (${formatAgo(new Date(lastEvent).toISOString())}). ${perHour.filter((n) => n > 0).length} of ${hours} hours had activity.${longestText}`),
      svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': `${id}-title`, 'aria-describedby': `${id}-desc` }, g, bars),
      el('details', null, el('summary', null, 'Show activity per day as a table'),
        el('table', null,
          el('caption', { class: 'visually-hidden' }, 'Activity per day'),
          el('thead', null, el('tr', null, ['Day', 'Motion', 'Door opened', 'Steps'].map((h) => el('th', { scope: 'col' }, h)))),
          el('tbody', null, [...days.values()].map((d) => el('tr', null,
            el('td', null, formatDay(d.start, tz)), el('td', null, d.motion), el('td', null, d.door), el('td', null, d.steps)))))));

    const charts = [hourly];
    const dayList = [...days.values()];
    if (dayList.some((d) => d.steps > 0)) charts.push(stepsChart(dayList, tz));
    box.replaceChildren(...charts);
    if (truncated) box.append(el('p', { class: 'hint' }, 'Only the oldest readings fit; the newest are not shown.'));
  }

  function stepsChart(days, tz) {
    const id = `chart-${++chartSeq}`;
    const max = Math.max(...days.map((d) => d.steps));
    const yTicks = niceTicks(0, max, 3);
    const lo = yTicks[0];
    const hi = yTicks[yTicks.length - 1];
    const slot = (W - PAD.left - PAD.right) / days.length;
    const y = (v) => H - PAD.bottom - ((v - lo) / (hi - lo || 1)) * (H - PAD.top - PAD.bottom);
    const g = svg('g', { 'aria-hidden': 'true' });
    for (const v of yTicks) {
      g.append(svg('line', { class: 'grid', x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }));
      g.append(svg('text', { x: PAD.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, v >= 1000 ? `${v / 1000}k` : String(v)));
    }
    days.forEach((d, i) => {
      const left = PAD.left + i * slot;
      if (d.steps > 0) g.append(svg('rect', { class: 'bar series-0', x: (left + slot * 0.15).toFixed(1), y: y(d.steps).toFixed(1), width: (slot * 0.7).toFixed(1), height: (y(0) - y(d.steps)).toFixed(1) }));
      g.append(svg('text', { x: (left + slot / 2).toFixed(1), y: H - PAD.bottom + 16, 'text-anchor': 'middle' }, formatShortDay(d.start, tz)));
    });
    g.append(svg('line', { class: 'axis', x1: PAD.left, x2: W - PAD.right, y1: H - PAD.bottom, y2: H - PAD.bottom }));
    const total = days.reduce((sum, d) => sum + d.steps, 0);
    const best = days.reduce((a, b) => (b.steps > a.steps ? b : a));
    return el('figure', { class: 'chart', 'data-type': 'steps' },
      el('figcaption', { id: `${id}-title` }, 'Steps per day'),
      el('p', { class: 'chart-summary', id: `${id}-desc` },
        `${Math.round(total)} steps in 7 days, ${Math.round(total / days.length)} a day on average; most on ${formatDay(best.start, tz)} (${Math.round(best.steps)}).`),
      svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': `${id}-title`, 'aria-describedby': `${id}-desc` }, g));
  }

  // ------------------------------------------------------------ start

  function init() {
    buildOutcomeChoices();
    $('sign-in-form').addEventListener('submit', signIn);
    $('sign-out').addEventListener('click', () => signOut());
    $('resolve-form').addEventListener('submit', submitResolve);
    $('outcome-choices').addEventListener('change', () => { $('resolve-error').hidden = true; });
    $('resolve-cancel').addEventListener('click', closeResolve);
    $('resolve-dialog').addEventListener('close', onResolveClosed);
    window.addEventListener('hashchange', () => route(false));
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible' && state.me) startPolling();
    });

    if (sessionStorage.getItem(TOKEN_KEY)) {
      // Still signed in in this tab (a reload): check the token is still good.
      api('/me').then(startSession).catch((error) => {
        if (!handleCommonError(error)) {
          showView('sign-in');
          showError(`Could not reach the server to restore your sign-in: ${error.message}`, 'session');
        }
      });
    } else {
      showView('sign-in');
      $('token').focus();
    }
  }

  init();
})();
