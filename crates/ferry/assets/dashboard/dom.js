// The dashboard's DOM and formatting helpers. Text from the server is only ever set as text.

export function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  set(el, attrs);
  append(el, kids);
  return el;
}
export function s(tag, attrs, ...kids) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  set(el, attrs);
  append(el, kids);
  return el;
}
function set(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') el.textContent = String(v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}
function append(el, kids) {
  for (const kid of kids.flat()) {
    if (kid === undefined || kid === null || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
}
export const $ = (id) => document.getElementById(id);

// Re-rendering keeps the keyboard focus where it was (elements carry data-key).
export function keepFocus(render) {
  const key = document.activeElement && document.activeElement.dataset
    ? document.activeElement.dataset.key : undefined;
  render();
  if (key) {
    const again = document.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (again && again !== document.activeElement) again.focus();
  }
}

// Formatting.
export const num = (n) => (n === null || n === undefined ? '–' : Number(n).toLocaleString('en'));
export function rate(n) {
  if (n === null || n === undefined) return '–';
  return n >= 100 ? Math.round(n).toLocaleString('en') : n.toFixed(n >= 10 ? 1 : 2);
}
export function ago(iso) {
  if (!iso) return '–';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return String(iso);
  const s = Math.round((Date.now() - t) / 1000);
  const abs = Math.abs(s);
  const span = abs < 90 ? `${abs} s` : abs < 5400 ? `${Math.round(abs / 60)} min` : `${(abs / 3600).toFixed(1)} h`;
  return s >= 0 ? `${span} ago` : `in ${span}`;
}
export function secs(n) {
  if (n === null || n === undefined) return '–';
  return n < 90 ? `${Math.round(n)} s` : n < 5400 ? `${Math.round(n / 60)} min` : `${(n / 3600).toFixed(1)} h`;
}
export const time = (ms) => new Date(ms).toLocaleString('en-GB', { hour12: false });
export const clock = (ms) => new Date(ms).toLocaleTimeString('en-GB', { hour12: false });
