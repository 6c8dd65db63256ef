/* sevlaunch dashboards: what the host and broker pages share.
 * The token (when the daemon needs one) lives in sessionStorage; every request for data
 * carries it as a bearer token. Fragments are HTML rendered and escaped by the server. */
"use strict";

const Dash = (() => {
  const body = document.body;
  const app = body.dataset.app;
  const needsToken = body.dataset.auth === "token";
  const key = `sevlaunch.${app}.token`;
  let onReady = () => {};

  function token() {
    return needsToken ? sessionStorage.getItem(key) : null;
  }

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    const t = token();
    if (t) h.Authorization = `Bearer ${t}`;
    return h;
  }

  class AuthError extends Error {}

  /* fetch() with the token; a refused token (401, 403) is forgotten and asked for again. */
  async function call(url, options) {
    const opts = Object.assign({}, options || {});
    opts.headers = headers(opts.headers);
    opts.cache = "no-store";
    const response = await fetch(url, opts);
    if (response.status === 401 || response.status === 403) {
      sessionStorage.removeItem(key);
      showLogin(`The token was refused (${await errorText(response)}): enter it again.`);
      authFailed = true;
      throw new AuthError("unauthenticated");
    }
    return response;
  }

  /* The message of a JSON error from either daemon's API. */
  async function errorText(response) {
    try {
      const data = await response.json();
      const e = data.error;
      if (e && typeof e === "object") return e.message || e.code;
      return data.detail ? `${e}: ${data.detail}` : String(e);
    } catch (_) {
      return `HTTP ${response.status}`;
    }
  }

  const shown = new Map();
  let authFailed = false;

  /* A token that just worked: the words about a refused one are stale now. */
  function tokenWorked() {
    if (!authFailed) return;
    authFailed = false;
    const error = document.getElementById("login-error");
    error.textContent = "";
    error.hidden = true;
    const el = document.getElementById("toast");
    if (el.classList.contains("auth")) el.hidden = true;
  }

  /* Replace the contents of #id with a server-rendered fragment. */
  async function load(id, url) {
    const target = document.getElementById(id);
    try {
      const response = await call(url);
      if (!response.ok) {
        target.innerHTML = "";
        shown.delete(id);
        target.append(alertBox(await errorText(response)));
        return false;
      }
      tokenWorked();
      const html = await response.text();
      if (shown.get(id) !== html) {  // unchanged: keep the DOM (and the user's hover, focus)
        target.innerHTML = html;
        shown.set(id, html);
        localTimes(target);
      }
      target.classList.remove("loading");
      return true;
    } catch (err) {
      if (!(err instanceof AuthError)) toast(`Cannot load ${url}: ${err.message}`, true);
      return false;
    }
  }

  function alertBox(text) {
    const box = document.createElement("div");
    box.className = "alert alert-failed";
    box.textContent = text;
    return box;
  }

  /* Server times are ISO 8601 in UTC; show them in the viewer's zone, still ISO 8601 with
   * the date and the offset, so that a time copied off the page is never ambiguous. */
  function iso(at) {
    const pad = (n, w) => String(Math.abs(n)).padStart(w || 2, "0");
    const off = -at.getTimezoneOffset();
    const zone = `${off < 0 ? "-" : "+"}${pad(Math.trunc(off / 60))}:${pad(off % 60)}`;
    const day = `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())}`;
    const hour = `${pad(at.getHours())}:${pad(at.getMinutes())}:${pad(at.getSeconds())}.${pad(at.getMilliseconds(), 3)}`;
    return [day, `${hour}${zone}`];
  }

  function localTimes(root) {
    for (const el of root.querySelectorAll("time[datetime]")) {
      const at = new Date(el.getAttribute("datetime"));
      if (isNaN(at)) continue;
      const [day, hour] = iso(at);
      el.replaceChildren(`${day}T`, document.createElement("wbr"), hour);
      el.title = `${day}T${hour} (UTC ${el.getAttribute("datetime")})`;
    }
  }

  /* Every button.copy puts its data-copy on the clipboard; without the clipboard API (a page
   * not served from a secure context) the value is selected for Ctrl+C instead. */
  async function copy(button) {
    const text = button.dataset.copy;
    try {
      await navigator.clipboard.writeText(text);
      toast(`Copied: ${text}`);
    } catch (_) {
      const value = button.parentElement.querySelector(".value");
      if (value) window.getSelection().selectAllChildren(value);
      toast("Selected: press Ctrl+C to copy it");
    }
  }

  document.addEventListener("click", (ev) => {
    const button = ev.target.closest("button.copy[data-copy]");
    if (button) copy(button);
  });

  let toastTimer = null;
  function toast(text, bad, auth) {
    const el = document.getElementById("toast");
    el.textContent = text;
    el.classList.toggle("bad", Boolean(bad));
    el.classList.toggle("auth", Boolean(auth));
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.hidden = true; }, 6000);
  }

  function setLive(state, text) {
    const el = document.getElementById("live");
    el.className = `live ${state}`;
    el.textContent = text;
  }

  function showLogin(message) {
    document.getElementById("content").hidden = true;
    document.getElementById("forget-token").hidden = true;
    const form = document.getElementById("login");
    form.hidden = false;
    const error = document.getElementById("login-error");
    error.textContent = message || "";
    error.hidden = !message;
    if (message) toast(message, true, true);
    document.getElementById("token").focus();
  }

  function showContent() {
    document.getElementById("login").hidden = true;
    document.getElementById("content").hidden = false;
    document.getElementById("forget-token").hidden = !needsToken;
    onReady();
  }

  function start(ready) {
    onReady = ready;
    document.getElementById("login").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const input = document.getElementById("token");
      sessionStorage.setItem(key, input.value.trim());
      input.value = "";
      showContent();
    });
    document.getElementById("forget-token").addEventListener("click", () => {
      sessionStorage.removeItem(key);
      location.reload();
    });
    if (needsToken && !token()) showLogin();
    else showContent();
  }

  function debounce(fn, ms) {
    let timer = null;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
  }

  return { call, load, errorText, toast, setLive, start, debounce, localTimes, AuthError };
})();
