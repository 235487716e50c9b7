// The Source Debugger live: new entries arrive over Server-Sent Events from the page's own
// stream route. Pause holds them back until Resume; the search box filters them as they come.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const list = document.getElementById("events");
  const empty = document.getElementById("no-events");
  const pause = document.getElementById("pause");
  const status = document.getElementById("live-status");
  const search = document.getElementById("q");
  if (!list || !window.EventSource) return;
  const held = [];
  let paused = false;

  const row = (entry) => {
    const message = entry.message && typeof entry.message === "object" ? entry.message : {};
    const item = document.createElement("li");
    item.className = entry.status === "accepted" ? "event" : "event dropped";
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    const part = (cls, text) => {
      const span = document.createElement("span");
      span.className = cls;
      span.textContent = text;
      summary.append(span, " ");
    };
    part("kind", String(message.type || "message"));
    part("label", String(message.event || message.name || ""));
    part("when", String(entry.receivedAt || ""));
    if (entry.status !== "accepted") {
      part("status", entry.reason ? `${entry.status}: ${entry.reason}` : String(entry.status));
    }
    const pre = document.createElement("pre");
    pre.className = "code";
    pre.textContent = JSON.stringify(entry.message, null, 2);
    details.append(summary, pre);
    item.append(details);
    return item;
  };

  const matches = (entry) => {
    const needle = search ? search.value.trim().toLowerCase() : "";
    return !needle || JSON.stringify(entry).toLowerCase().includes(needle);
  };

  const show = (entry) => {
    if (!matches(entry)) return;
    list.prepend(row(entry));
    if (empty) empty.hidden = true;
    while (list.children.length > 500) list.lastElementChild.remove();
  };

  pause.hidden = false;
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume" : "Pause";
    if (!paused) held.splice(0).forEach(show);
    status.textContent = paused ? "Paused: new events wait until you resume." : "Live";
  });

  const stream = new EventSource(list.dataset.stream);
  stream.addEventListener("open", () => {
    status.textContent = paused ? status.textContent : "Live";
    list.dataset.live = "true";
  });
  stream.addEventListener("error", () => {
    status.textContent = "Reconnecting…";
    list.dataset.live = "false";
  });
  stream.addEventListener("message", (event) => {
    const entry = JSON.parse(event.data);
    if (paused) held.push(entry);
    else show(entry);
  });
  window.addEventListener("pagehide", () => stream.close());
});
