/* The broker's page: workloads, recent launches and the audit log, filtered. */
"use strict";

(() => {
  const REFRESH_MS = 4000;
  let timer = null;

  function query() {
    const params = new URLSearchParams();
    const pairs = [["workload", "f-workload"], ["decision", "f-decision"], ["q", "f-text"]];
    for (const [name, id] of pairs) {
      const value = document.getElementById(id).value.trim();
      if (value) params.set(name, value);
    }
    const text = params.toString();
    return text ? `?${text}` : "";
  }

  async function refresh() {
    clearTimeout(timer);
    const q = query();
    const results = await Promise.all([
      Dash.load("workloads", "/ui/fragments/workloads"),
      Dash.load("launches", `/ui/fragments/launches${q}`),
      Dash.load("audit", `/ui/fragments/audit${q}`),
    ]);
    if (results.every(Boolean)) Dash.setLive("on", "up to date");
    else Dash.setLive("off", "not loaded");
    if (!document.getElementById("content").hidden) timer = setTimeout(refresh, REFRESH_MS);
  }

  const soon = Dash.debounce(refresh, 200);
  const filters = document.getElementById("filters");
  filters.addEventListener("input", soon);
  filters.addEventListener("change", soon);
  filters.addEventListener("submit", (ev) => { ev.preventDefault(); refresh(); });

  // a link from the host's page names a launch: filter on it
  const given = new URLSearchParams(location.search).get("q");
  if (given) document.getElementById("f-text").value = given;

  Dash.start(refresh);
})();
