/* The host manager's page: node info, domains with their launch timelines, live events. */
"use strict";

(() => {
  const MAX_EVENTS = 30;
  let stream = null;

  const refreshDomains = Dash.debounce(() => Dash.load("domains", "/ui/fragments/domains"), 120);

  function describe(ev) {
    if (ev.event === "launch-step") {
      return `step ${ev.step} ${ev.name}: ${ev.outcome}${ev.detail ? " — " + ev.detail : ""}`;
    }
    if (ev.event === "lifecycle") return `${ev.type} (${ev.detail})`;
    if (ev.event === "hypervisor") return `QMP ${ev.qmp_event}`;
    return ev.event;
  }

  function logEvent(ev) {
    const list = document.getElementById("events");
    for (const empty of list.querySelectorAll("li.no-events")) empty.remove();
    const item = document.createElement("li");
    item.className = `event event-${ev.event}${ev.outcome === "failed" ? " failed" : ""}`;
    const at = document.createElement("time");
    at.setAttribute("datetime", new Date(ev.timestamp * 1000).toISOString());
    const who = document.createElement("strong");
    who.textContent = ev.domain || "node";
    const what = document.createElement("span");
    what.textContent = describe(ev);
    item.append(at, " ", who, " ", what);
    Dash.localTimes(item);
    list.prepend(item);
    while (list.children.length > MAX_EVENTS) list.lastChild.remove();
  }

  /* /v1/events is newline-delimited JSON; read it as it streams, reconnect when it ends. */
  async function follow() {
    const controller = new AbortController();
    stream = controller;
    try {
      const response = await Dash.call("/v1/events", { signal: controller.signal });
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, cut).trim();
          buffer = buffer.slice(cut + 1);
          if (line) handle(JSON.parse(line));
        }
      }
      throw new Error("the event stream ended");
    } catch (err) {
      if (err instanceof Dash.AuthError) {
        stream = null;  // follow again once a new token is given
        return;
      }
      Dash.setLive("off", "reconnecting…");
      setTimeout(follow, 2000);
    }
  }

  function handle(ev) {
    if (ev.event === "keepalive") return;
    if (ev.event === "subscribed") {
      Dash.setLive("on", "live");
      refreshDomains();  // catch up on what happened while not subscribed
      return;
    }
    logEvent(ev);
    refreshDomains();
  }

  async function act(button) {
    const { action, domain } = button.dataset;
    if (action === "destroy" && !confirm(`Destroy domain ${domain}? Its guest stops at once.`)) return;
    button.disabled = true;
    try {
      const response = await Dash.call(`/v1/domains/${encodeURIComponent(domain)}/${action}`, {
        method: "POST",
      });
      if (response.ok) Dash.toast(`${domain}: ${action} done`);
      else Dash.toast(`${domain}: ${action} failed: ${await Dash.errorText(response)}`, true);
    } catch (err) {
      if (!(err instanceof Dash.AuthError)) Dash.toast(`${domain}: ${err.message}`, true);
    }
    refreshDomains();
  }

  document.getElementById("domains").addEventListener("click", (ev) => {
    const button = ev.target.closest("button[data-action]");
    if (button && !button.disabled) act(button);
  });

  Dash.start(() => {
    Dash.load("node", "/ui/fragments/node");
    Dash.load("domains", "/ui/fragments/domains").then(() => {
      // a link from the broker's page names a domain: show it
      const target = location.hash && document.getElementById(location.hash.slice(1));
      if (target) {
        target.classList.add("linked");
        target.scrollIntoView();
      }
    });
    if (stream === null) follow();
  });
})();
