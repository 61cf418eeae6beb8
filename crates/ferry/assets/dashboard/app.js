// Ferry's dashboard: plain JavaScript, no framework, no build step. Everything it shows comes
// from the API that docs/api.md describes; every text from the server is set with textContent.
import { h, s, $, keepFocus, num, rate, ago, secs, time, clock } from './dom.js';
import { chart } from './charts.js';

(() => {
  const AUTH = (document.querySelector('meta[name="ferry-auth"]') || {}).content || 'open';
  const REFRESH_MS = 5000;
  const LIVE_MAX = 100;
  const TIMELINE_CAMERAS = 12;

  // Errors of the page itself, for the browser tests (never expected).
  const pageErrors = (window.ferryErrors = []);
  window.addEventListener('error', (e) => pageErrors.push(String(e.message)));
  window.addEventListener('unhandledrejection', (e) => pageErrors.push(String(e.reason)));

  const state = {
    token: sessionStorage.getItem('ferry-token') || '',
    view: (location.hash || '#overview').slice(1),
    overview: null,
    timer: null,
    live: null,
    run: null,
    cameraFilter: '',
    typeFilter: '',
  };


  // ---- API --------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }
  function headers(json) {
    const out = { Accept: 'application/json' };
    if (state.token) out.Authorization = `Bearer ${state.token}`;
    if (json) out['Content-Type'] = 'application/json';
    return out;
  }
  async function api(path, options = {}) {
    const method = options.method || 'GET';
    const body = options.body === undefined ? undefined : JSON.stringify(options.body);
    const res = await fetch(path, { method, headers: headers(body !== undefined), body });
    const text = await res.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = { error: text };
    }
    if (!res.ok) throw new ApiError(res.status, (data && data.error) || res.statusText);
    return data;
  }
  function explain(e) {
    if (e.status === 401) {
      return AUTH === 'public-read'
        ? 'Refused: this action needs the admin token. Enter it above.'
        : 'Refused: this server needs a token. Enter the admin token (or the read token, to look only) above.';
    }
    if (e.status === 403) return `Refused: ${e.message}`;
    return e.message || String(e);
  }
  function notice(text, kind) {
    const n = $('notice');
    n.textContent = text;
    n.className = `notice ${kind || ''}`;
    n.hidden = !text;
  }
  // An action (POST, admin token) started from a button.
  async function act(button, path, body, done) {
    if (needsToken()) {
      notice('This action needs the admin token: enter it above.', 'error');
      $('token-input').focus();
      return;
    }
    button.disabled = true;
    try {
      const out = await api(path, { method: 'POST', body });
      notice(done ? done(out) : 'Done.', 'ok');
      refresh();
    } catch (e) {
      notice(explain(e), 'error');
    } finally {
      button.disabled = false;
    }
  }
  const needsToken = () => AUTH === 'token' && !state.token;

  // ---- Token ------------------------------------------------------------------------------
  function showTokenState() {
    const text = state.token
      ? 'token set'
      : AUTH === 'token' ? 'this server needs a token'
      : AUTH === 'public-read' ? 'read-only without a token' : 'open server';
    $('token-state').textContent = text;
  }
  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    state.token = $('token-input').value.trim();
    $('token-input').value = '';
    if (state.token) sessionStorage.setItem('ferry-token', state.token);
    else sessionStorage.removeItem('ferry-token');
    showTokenState();
    notice('', '');
    start();
  });
  $('token-clear').addEventListener('click', () => {
    state.token = '';
    sessionStorage.removeItem('ferry-token');
    if (AUTH === 'token') {
      for (const id of ['cards', 'keys-runs', 'keys-run', 'keys-plan', 'tier-summary', 'tier-timelines',
        'tier-passes', 'events-summary', 'events-charts', 'live']) $(id).replaceChildren();
      state.overview = null;
    }
    showTokenState();
    start();
  });

  // ---- Tabs -------------------------------------------------------------------------------
  const VIEWS = { overview: 'Overview', keys: 'keys', tier: 'tier', events: 'events' };
  function renderTabs() {
    const kinds = new Set(((state.overview && state.overview.jobs) || []).map((j) => j.kind));
    const views = Object.keys(VIEWS).filter((v) => v === 'overview' || kinds.has(v));
    // A view asked for by the address stays until the overview says its job is not here.
    if (!VIEWS[state.view] || (state.overview && !views.includes(state.view))) state.view = 'overview';
    if (!state.overview && state.view !== 'overview') views.push(state.view);
    const nav = $('tabs');
    keepFocus(() => {
      nav.replaceChildren(...views.map((v) => h('button', {
        type: 'button', role: 'tab', id: `tab-${v}`, 'aria-controls': `view-${v}`,
        'aria-selected': v === state.view ? 'true' : 'false', 'data-key': `tab-${v}`,
        text: VIEWS[v], onclick: () => show(v),
      })));
    });
    for (const v of Object.keys(VIEWS)) $(`view-${v}`).hidden = v !== state.view;
  }
  function show(view) {
    state.view = view;
    history.replaceState(null, '', `#${view}`);
    renderTabs();
    if (view !== 'events') stopLive();
    refresh();
  }

  // ---- Charts -----------------------------------------------------------------------------
  async function charts(specs) {
    const metrics = [...new Set(specs.map((c) => c.metric))];
    if (!metrics.length) return new Map();
    const out = new Map();
    for (let i = 0; i < metrics.length; i += 20) {
      const q = encodeURIComponent(metrics.slice(i, i + 20).join(','));
      const data = await api(`/api/v1/metrics/history?metrics=${q}&minutes=15`);
      for (const series of data.series) {
        if (!out.has(series.metric)) out.set(series.metric, []);
        out.get(series.metric).push(series);
      }
    }
    return out;
  }

  // ---- Overview ---------------------------------------------------------------------------
  function card(job, history) {
    const el = h('article', { class: 'card', 'data-job': job.id, 'aria-label': `${job.kind}: ${job.title}` });
    el.append(h('header', {},
      h('div', {}, h('div', { class: 'kind', text: job.kind }), h('h3', { text: job.title })),
      h('span', { class: `badge s-${job.state}`, text: job.state })));
    if (job.reason) el.append(h('div', { class: 'reason', text: job.reason }));
    if (job.progress && job.progress.total > 0) {
      const pct = Math.min(100, (job.progress.done / job.progress.total) * 100);
      const bar = h('div');
      bar.style.width = `${pct.toFixed(1)}%`;
      el.append(h('div', {
        class: 'progress', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100,
        'aria-valuenow': pct.toFixed(0), 'aria-label': `${num(job.progress.done)} of ${num(job.progress.total)}`,
      }, bar));
    }
    const facts = [
      ['last run', ago(job.last_run)],
      ...(job.next_run ? [['next run', ago(job.next_run)]] : []),
      ['throughput', job.throughput === null ? '–' : `${rate(job.throughput)} ${job.throughput_unit}/s`],
      ['errors', num(job.errors)],
      ...(job.progress ? [['progress', `${num(job.progress.done)} / ${num(job.progress.total)}`]] : []),
      ...job.facts.map((f) => [f.label, f.value]),
    ];
    el.append(h('dl', { class: 'facts' }, facts.flatMap(([k, v]) => [h('dt', { text: k }), h('dd', { text: v })])));
    if (job.stores.length) {
      el.append(h('ul', { class: 'stores', 'aria-label': 'stores' }, job.stores.map((st) =>
        h('li', { class: st.ok ? 'ok' : 'bad', title: st.detail, text: `${st.role}: ${st.kind}${st.ok ? '' : ' – ' + st.detail}` }))));
    }
    if (job.charts.length) {
      el.append(h('div', { class: 'charts' }, job.charts.map((c) => chart(c.title, history.get(c.metric) || [], c.show))));
    }
    const buttons = job.actions.map((a) => h('button', {
      type: 'button', 'data-key': `${job.id}:${a.path}`, text: a.label,
      onclick: (e) => act(e.currentTarget, a.path, undefined, (out) => `${a.label}: ${summary(out)}`),
    }));
    if (job.pausable) {
      const paused = job.state === 'paused';
      const verb = paused ? 'resume' : 'pause';
      buttons.push(h('button', {
        type: 'button', class: 'quiet', 'data-key': `${job.id}:switch`, text: paused ? 'Resume' : 'Pause',
        onclick: (e) => act(e.currentTarget, `/api/v1/jobs/${encodeURIComponent(job.id)}/${verb}`, undefined,
          () => `${job.id}: ${paused ? 'resumed' : 'paused'}`),
      }));
    }
    if (buttons.length) el.append(h('div', { class: 'actions' }, buttons));
    return el;
  }
  function summary(out) {
    if (!out || typeof out !== 'object') return 'done';
    if (out.verify) return `verify of ${out.run} ${out.verify} (its result appears on the keys view)`;
    const run = out.run || out;
    const keys = ['events_written', 'captions_migrated', 'entries_deleted', 'failed'];
    const parts = keys.filter((k) => run[k] !== undefined).map((k) => `${k.replace(/_/g, ' ')} ${num(run[k])}`);
    return parts.length ? parts.join(', ') : 'done';
  }
  async function overview() {
    const data = await api('/api/v1/overview');
    state.overview = data;
    $('version').textContent = `v${data.version}`;
    renderTabs();
    if (state.view !== 'overview') return;
    const history = await charts(data.jobs.flatMap((j) => j.charts));
    keepFocus(() => {
      $('cards').replaceChildren(...(data.jobs.length
        ? data.jobs.map((j) => card(j, history))
        : [h('p', { class: 'muted', text: 'No job is configured on this server.' })]));
    });
    $('overview-updated').textContent = `Updated ${clock(Date.now())}; refreshes every ${REFRESH_MS / 1000} s.`;
    document.body.dataset.overview = 'loaded';
  }

  // ---- keys -------------------------------------------------------------------------------
  function table(el, head, rows) {
    el.replaceChildren(h('thead', {}, h('tr', {}, head.map((c) => h('th', { scope: 'col', text: c })))),
      h('tbody', {}, rows));
  }
  const cell = (v, n) => h('td', { class: n ? 'n' : undefined, text: v });
  async function keysView() {
    const { runs } = await api('/api/v1/keys/runs');
    keepFocus(() => table($('keys-runs'),
      ['run', 'state', 'progress', 'keys/s', 'ETA', 'scanned', 'migrated', 'failed', 'updated', 'verify', ''],
      runs.length ? runs.map((r) => {
        const st = r.state || { stats: {} };
        // The estimate is DBSIZE at the start: a completed run is all done.
        const pct = r.status === 'completed' ? 100
          : st.estimated_total ? Math.min(99.9, (st.stats.scanned / st.estimated_total) * 100) : null;
        const verify = r.verify ? r.verify.state : '–';
        return h('tr', { class: r.run_name === state.run ? 'selected' : undefined },
          cell(r.run_name), cell(r.status), cell(pct === null ? '–' : `${pct.toFixed(1)} %`, true),
          cell(rate(r.rate_per_s), true), cell(secs(r.eta_s), true), cell(num(st.stats.scanned), true),
          cell(num(st.stats.migrated), true), cell(num(st.stats.failed), true), cell(ago(st.updated_at)),
          cell(verify),
          h('td', {}, h('button', { type: 'button', class: 'quiet', 'data-key': `run:${r.run_name}`, text: 'Details',
            onclick: () => { state.run = r.run_name; refresh(); } })));
      }) : [h('tr', {}, h('td', { colspan: 11, class: 'muted', text: 'No run in the checkpoint store yet.' }))]));
    if (state.run) await keysRun(state.run);
  }
  function countsTable(title, counts) {
    const rows = Object.entries(counts || {}).filter(([, v]) => typeof v === 'number');
    return h('div', {}, h('h3', { text: title }), h('div', { class: 'scroll' }, h('table', { class: 'grid' },
      h('tbody', {}, rows.map(([k, v]) => h('tr', {}, h('th', { scope: 'row', text: k.replace(/_/g, ' ') }), cell(num(v), true)))))));
  }
  async function keysRun(run) {
    const data = await api(`/api/v1/keys/runs/${encodeURIComponent(run)}`);
    const st = data.run.state;
    const perRule = Object.entries(st.per_rule || {});
    const ruleCols = [...new Set(perRule.flatMap(([, v]) => Object.keys(v)))];
    const verify = data.run.verify;
    const box = h('div', { class: 'run' },
      h('h2', { text: `Run ${run}` }),
      h('dl', { class: 'facts' }, [['state', data.run.status], ['held by', data.run.holder || 'nobody'], ['source', st.source], ['target', st.target],
        ['started', st.started_at], ['updated', st.updated_at], ['keys/s', rate(data.run.rate_per_s)],
        ['ETA', secs(data.run.eta_s)], ['ledger entries', num(data.ledger_entries)], ['backups kept', num(data.backups)]]
        .flatMap(([k, v]) => [h('dt', { text: k }), h('dd', { text: v })])),
      h('h3', { text: 'Masters' }),
      h('div', { class: 'scroll' }, h('table', { class: 'grid' }, h('thead', {}, h('tr', {}, ['master', 'state', 'SCAN cursor'].map((c) => h('th', { scope: 'col', text: c })))),
        h('tbody', {}, data.run.masters.map((m) => h('tr', {}, cell(m.node), cell(m.state), cell(m.cursor === null ? '–' : String(m.cursor), true)))))),
      countsTable('Counts by outcome', st.stats),
      h('h3', { text: 'Counts by rule' }),
      h('div', { class: 'scroll' }, h('table', { class: 'grid' },
        h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'rule' }), ruleCols.map((c) => h('th', { scope: 'col', text: c.replace(/_/g, ' ') })))),
        h('tbody', {}, perRule.map(([name, v]) => h('tr', {}, cell(name), ruleCols.map((c) => cell(num(v[c]), true))))))),
      h('h3', { text: 'Verify' }),
      verify ? h('p', { text: `${verify.state}, started ${ago(verify.started_at)}${verify.error ? ': ' + verify.error : ''}` })
        : h('p', { class: 'muted', text: 'Not verified from this server yet.' }),
      verify && verify.outcome ? countsTable('Verify results', verify.outcome) : null,
      h('p', {}, h('button', { type: 'button', 'data-key': `verify:${run}`, text: 'Run verify',
        onclick: (e) => act(e.currentTarget, `/api/v1/keys/runs/${encodeURIComponent(run)}/verify`, undefined,
          () => `Verify of ${run} started; its result appears here.`) })));
    keepFocus(() => $('keys-run').replaceChildren(box));
  }
  function renderValue(v) {
    if (v === null || v === undefined) return h('span', { class: 'muted', text: '–' });
    if (Array.isArray(v)) {
      if (!v.length) return h('span', { class: 'muted', text: 'none' });
      return h('ul', {}, v.slice(0, 50).map((x) => h('li', {}, typeof x === 'object' ? h('pre', { text: JSON.stringify(x) }) : String(x))));
    }
    if (typeof v === 'object') {
      return h('dl', { class: 'facts' }, Object.entries(v).flatMap(([k, x]) =>
        [h('dt', { text: k.replace(/_/g, ' ') }), h('dd', {}, typeof x === 'object' && x !== null ? renderValue(x) : String(x))]));
    }
    return h('span', { text: String(v) });
  }
  async function keysPlan(fresh, button) {
    button.disabled = true;
    $('keys-plan').replaceChildren(h('p', { class: 'muted', text: 'Computing the plan (it scans the source)…' }));
    try {
      const data = await api('/api/v1/keys/plan', { method: fresh ? 'POST' : 'GET' });
      $('keys-plan').replaceChildren(h('p', { class: 'muted', text: `Computed ${ago(data.computed_at)}.` }), renderValue(data.plan));
    } catch (e) {
      $('keys-plan').replaceChildren(h('p', { class: 'reason', text: explain(e) }));
    } finally {
      button.disabled = false;
    }
  }
  $('keys-plan-show').addEventListener('click', (e) => keysPlan(false, e.currentTarget));
  $('keys-plan-redo').addEventListener('click', (e) => keysPlan(true, e.currentTarget));

  // ---- tier -------------------------------------------------------------------------------
  function timeline(camera, events, hot) {
    const spans = events.flatMap((e) => [e.start_ms, e.end_ms]).concat(hot.map((c) => c.ts_ms));
    const W = 1000, H = 64;
    const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `timeline of ${camera}` });
    if (spans.length) {
      let t0 = Math.min(...spans), t1 = Math.max(...spans);
      if (t1 - t0 < 1000) { t0 -= 500; t1 += 500; }
      const x = (t) => 6 + ((t - t0) / (t1 - t0)) * (W - 12);
      const byId = new Map(events.map((e) => [e.id, e]));
      for (const e of events) {
        if (e.previous_event_id && byId.has(e.previous_event_id)) {
          const p = byId.get(e.previous_event_id);
          const a = x(p.end_ms), b = x(e.start_ms);
          svg.append(s('path', { class: 'link', d: `M${a},10 C${a},0 ${b},0 ${b},10` }));
        }
      }
      for (const e of events) {
        const w = Math.max(3, x(e.end_ms) - x(e.start_ms));
        svg.append(s('rect', { class: `ev ${e.status}`, x: x(e.start_ms).toFixed(1), y: 10, width: w.toFixed(1), height: 22, rx: 2, 'data-event': e.id },
          s('title', { text: `${e.caption}\n${time(e.start_ms)} – ${time(e.end_ms)}, ${e.frame_count} frames${e.previous_event_id ? ', continues an earlier event' : ''}` })));
      }
      for (const c of hot) {
        const cx = x(c.ts_ms).toFixed(1);
        svg.append(s('line', { class: 'hot', x1: cx, x2: cx, y1: 38, y2: 50 }, s('title', { text: `${clock(c.ts_ms)} ${c.caption === null ? c.error : c.caption}` })));
      }
      svg.append(s('text', { class: 'axis', x: 6, y: 62, text: time(t0) }));
      svg.append(s('text', { class: 'axis', x: W - 6, y: 62, 'text-anchor': 'end', text: time(t1) }));
    }
    const list = h('details', {}, h('summary', { 'data-key': `timeline:${camera}`, text: `${events.length} stored events, ${hot.length} hot captions` }),
      h('div', { class: 'scroll' }, h('table', { class: 'grid tier-events' },
        h('thead', {}, h('tr', {}, ['start', 'end', 'caption', 'frames', 'status', 'continues'].map((c) => h('th', { scope: 'col', text: c })))),
        h('tbody', {}, events.map((e) => h('tr', {}, cell(time(e.start_ms)), cell(time(e.end_ms)), cell(e.caption),
          cell(num(e.frame_count), true), cell(e.status), cell(e.previous_event_id ? 'yes' : '')))))));
    return h('article', { class: 'timeline', 'data-camera': camera },
      h('header', {}, h('h3', { text: camera }), h('span', { class: 'muted', text: `${events.length} events · ${hot.length} hot` })),
      svg, list);
  }
  async function tierView() {
    const [status, recent, passes] = await Promise.all([
      api('/api/v1/tier/status'), api('/api/v1/tier/events?limit=1000&centroid=false'), api('/api/v1/tier/history?limit=10'),
    ]);
    const due = status.cameras.filter((c) => c.due).length;
    $('tier-summary').replaceChildren(...[['store', status.store], ['similarity', status.similarity],
      ['cameras with captions in Redis', num(status.cameras.length)], ['captions pending', num(status.pending_captions)],
      ['cameras due', num(due)], ['events stored', num(status.counts.events)],
      ['last pass', status.last_run ? ago(new Date(status.last_run.finished_ms).toISOString()) : 'none']]
      .flatMap(([k, v]) => [h('dt', { text: k }), h('dd', { text: v })]));
    const byCamera = new Map();
    for (const e of recent) {
      if (!byCamera.has(e.camera_id)) byCamera.set(e.camera_id, []);
      byCamera.get(e.camera_id).push(e);
    }
    for (const c of status.cameras) if (!byCamera.has(c.camera_id)) byCamera.set(c.camera_id, []);
    const wanted = $('tier-camera').value.trim();
    // A camera named exactly is shown even when none of its events is among the newest.
    if (wanted && !byCamera.has(wanted)) byCamera.set(wanted, []);
    const all = [...byCamera.keys()].sort().filter((c) => !wanted || c.includes(wanted));
    const cameras = all.slice(0, TIMELINE_CAMERAS);
    $('tier-shown').textContent = all.length > cameras.length
      ? `Showing ${cameras.length} of ${all.length} cameras: narrow them with the filter.`
      : `${all.length} camera${all.length === 1 ? '' : 's'}.`;
    const hotCameras = new Set(status.cameras.map((c) => c.camera_id));
    // Each shown camera's own events and hot captions (the list above is only the newest
    // events of all cameras, to find them).
    const q = (c) => encodeURIComponent(c);
    const [own, hot] = await Promise.all([
      Promise.all(cameras.map((c) => api(`/api/v1/tier/events?camera_id=${q(c)}&limit=300&centroid=false`))),
      Promise.all(cameras.map((c) => (hotCameras.has(c)
        ? api(`/api/v1/tier/hot?camera_id=${q(c)}&limit=300`).then((x) => x.captions)
        : Promise.resolve([])))),
    ]);
    cameras.forEach((c, i) => byCamera.set(c, own[i]));
    const open = new Set([...document.querySelectorAll('.timeline details[open]')].map((d) => d.closest('.timeline').dataset.camera));
    const nodes = cameras.map((c, i) => timeline(c, byCamera.get(c).sort((a, b) => a.start_ms - b.start_ms), hot[i]));
    for (const n of nodes) if (open.has(n.dataset.camera)) n.querySelector('details').open = true;
    keepFocus(() => $('tier-timelines').replaceChildren(...(nodes.length ? nodes
      : [h('p', { class: 'muted', text: 'No camera has captions or events yet.' })])));
    table($('tier-passes'), ['finished', 'trigger', 'cameras', 'captions read', 'migrated', 'events written', 'deleted', 'failed', 'error'],
      passes.map((p) => h('tr', {}, cell(time(p.finished_ms)), cell(p.trigger), cell(num(p.cameras), true),
        cell(num(p.captions_read), true), cell(num(p.captions_migrated), true), cell(num(p.events_written), true),
        cell(num(p.entries_deleted), true), cell(num(p.failed), true), cell(p.error || ''))));
  }
  $('tier-filter').addEventListener('submit', (e) => {
    e.preventDefault();
    refresh();
  });
  $('tier-camera').addEventListener('change', () => refresh());
  $('tier-pass').addEventListener('click', (e) => act(e.currentTarget, '/api/v1/tier/migrate', undefined,
    (out) => `Tier pass: ${summary(out)}`));

  // ---- events -----------------------------------------------------------------------------
  async function eventsView() {
    const stats = await api('/api/v1/events/stats');
    $('events-summary').replaceChildren(...[['events stored', num(stats.events)], ['outbox backlog', num(stats.unpublished)],
      ['oldest unpublished', stats.oldest_unpublished_ms === null ? '–' : secs(stats.oldest_unpublished_ms / 1000)],
      ['held back', num(stats.held_back)], ['transactions in flight', num(stats.in_flight_transactions)]]
      .flatMap(([k, v]) => [h('dt', { text: k }), h('dd', { text: v })]));
    const specs = [
      { title: 'Events published /s', metric: 'ferry_events_published_total', show: 'rate' },
      { title: 'Publish lag (s)', metric: 'ferry_events_publish_lag_seconds', show: 'value' },
      { title: 'Outbox backlog', metric: 'ferry_events_outbox_backlog', show: 'value' },
    ];
    const history = await charts(specs);
    $('events-charts').replaceChildren(...specs.map((c) => chart(c.title, history.get(c.metric) || [], c.show)));
    if (!state.live) live();
  }
  function liveState(text) {
    $('live-state').textContent = text;
  }
  // The server's subscription dropped (Redis unreachable) or came back.
  function liveStatus(what) {
    if (what === 'gap') {
      liveState('live: Redis unreachable, reconnecting; events published meanwhile will not appear here (they are stored: GET /api/v1/events)');
      document.body.dataset.live = 'gap';
    } else if (what === 'back') {
      liveState('live: connected again; events published while it was away are not in this list');
      document.body.dataset.live = 'connected';
    }
  }
  function stopLive() {
    if (state.live) state.live.abort();
    state.live = null;
  }
  function addLive(data) {
    let e;
    try {
      e = JSON.parse(data);
    } catch (_) {
      return;
    }
    const list = $('live');
    for (const old of list.querySelectorAll('li.new')) old.classList.remove('new');
    const when = e.timestamp || e.created_at || '';
    const li = h('li', { class: 'new', 'data-event-id': e.id },
      h('div', {}, h('strong', { text: e.event_type }), ' · ', h('span', { text: e.camera_id })),
      h('div', { class: 'meta', text: `#${e.id} ${when}` }),
      e.event_data !== undefined && e.event_data !== null ? h('pre', { text: JSON.stringify(e.event_data) }) : null);
    list.prepend(li);
    while (list.children.length > LIVE_MAX) list.lastElementChild.remove();
  }
  async function live() {
    stopLive();
    const ctl = new AbortController();
    state.live = ctl;
    const q = new URLSearchParams();
    if (state.cameraFilter) q.set('camera_id', state.cameraFilter);
    if (state.typeFilter) q.set('event_type', state.typeFilter);
    try {
      const res = await fetch(`/api/v1/events/live?${q}`, { headers: headers(false), signal: ctl.signal });
      if (!res.ok) {
        liveState(res.status === 401 ? 'live view needs a token' : `live view refused (${res.status})`);
        state.live = null;
        return;
      }
      liveState('live: connected');
      document.body.dataset.live = 'connected';
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n/g, '\n');
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const lines = block.split('\n');
          const kind = (lines.find((l) => l.startsWith('event:')) || 'event: message').slice(6).trim();
          const data = lines.filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, '')).join('\n');
          if (kind === 'status') liveStatus(data);
          else if (data) addLive(data);
        }
      }
    } catch (_) {
      if (ctl.signal.aborted) return;
    }
    if (state.live === ctl) {
      liveState('live: reconnecting…');
      document.body.dataset.live = 'reconnecting';
      state.live = null;
      setTimeout(() => { if (state.view === 'events' && !state.live) live(); }, 2000);
    }
  }
  $('events-filter').addEventListener('submit', (e) => {
    e.preventDefault();
    state.cameraFilter = $('filter-camera').value.trim();
    state.typeFilter = $('filter-type').value.trim();
    $('live').replaceChildren();
    live();
  });

  // ---- Refresh loop -----------------------------------------------------------------------
  let refreshing = false;
  async function refresh() {
    if (refreshing) return;
    refreshing = true;
    try {
      if (needsToken()) {
        $('cards').replaceChildren(h('p', { text: 'This server needs a token: enter the admin token or the read token above to see its jobs.' }));
        renderTabs();
        return;
      }
      // The other views need the job list once (for the tabs), not at every refresh.
      if (state.view === 'overview' || !state.overview) await overview();
      if (state.view === 'keys') await keysView();
      if (state.view === 'tier') await tierView();
      if (state.view === 'events') await eventsView();
    } catch (e) {
      notice(explain(e), 'error');
    } finally {
      refreshing = false;
    }
  }
  function start() {
    clearInterval(state.timer);
    stopLive();
    refresh();
    state.timer = setInterval(refresh, REFRESH_MS);
  }

  window.addEventListener('hashchange', () => {
    const view = location.hash.slice(1);
    if (view && view !== state.view && VIEWS[view]) show(view);
  });

  showTokenState();
  renderTabs();
  if (needsToken()) {
    notice('This server needs a token: enter the admin token (or the read token, to look only) above.', '');
    $('token-input').focus();
  }
  start();
})();
