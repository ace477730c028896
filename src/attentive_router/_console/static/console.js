// The console's only script: the live events list refreshes itself, and its rows open on click.
"use strict";

(function () {
  const POLL_MS = 2000;

  function openRow(event) {
    const row = event.target.closest("tr[data-href]");
    if (row && !event.target.closest("a, input, button")) {
      window.location.href = row.dataset.href;
    }
  }

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  function render(tbody, rows, seen) {
    const fresh = document.createDocumentFragment();
    for (const row of rows) {
      const tr = document.createElement("tr");
      tr.dataset.href = row.href;
      tr.dataset.id = row.destination + "/" + row.id;
      if (seen.size && !seen.has(tr.dataset.id)) tr.className = "fresh";
      const first = document.createElement("td");
      const link = document.createElement("a");
      link.href = row.href;
      link.textContent = row.time;
      first.appendChild(link);
      tr.appendChild(first);
      for (const value of [row.destination, row.source, row.call, row.name, row.user]) {
        tr.appendChild(cell(value));
      }
      const outcome = document.createElement("td");
      const badge = document.createElement("span");
      badge.className = "outcome " + row.outcome;
      badge.textContent = row.outcome;
      outcome.appendChild(badge);
      tr.appendChild(outcome);
      const reason = cell(row.reason);
      if (row.message) {
        const message = document.createElement("div");
        message.className = "message";
        message.textContent = row.message.length > 140 ? row.message.slice(0, 137) + "..." : row.message;
        reason.appendChild(message);
      }
      tr.appendChild(reason);
      fresh.appendChild(tr);
    }
    if (!rows.length) {
      const tr = document.createElement("tr");
      tr.className = "empty";
      const td = cell("No events yet.");
      td.colSpan = 8;
      tr.appendChild(td);
      fresh.appendChild(tr);
    }
    tbody.replaceChildren(fresh);
  }

  function startLive(table) {
    const tbody = table.querySelector("tbody");
    const toggle = document.getElementById("live-toggle");
    const query = window.location.search;
    let busy = false;
    async function poll() {
      if (busy || (toggle && !toggle.checked) || document.hidden) return;
      busy = true;
      try {
        const answer = await fetch(table.dataset.poll + query, {
          credentials: "same-origin",
          headers: { Accept: "application/json" },
        });
        if (answer.ok) {
          const data = await answer.json();
          const seen = new Set([...tbody.querySelectorAll("tr[data-id]")].map((tr) => tr.dataset.id));
          render(tbody, data.rows, seen);
        } else if (answer.status === 401) {
          window.location.reload();
        }
      } catch (error) {
        // The server restarting: the next poll tries again.
      } finally {
        busy = false;
      }
    }
    window.setInterval(poll, POLL_MS);
  }

  document.addEventListener("DOMContentLoaded", function () {
    const every = Number(document.body.dataset.refresh || 0);
    if (every > 0) {
      // A hidden tab waits: it reloads at the first check after it is shown again.
      window.setInterval(function () {
        if (!document.hidden) window.location.reload();
      }, every * 1000);
    }
    const table = document.getElementById("events");
    if (table) {
      table.addEventListener("click", openRow);
      if (table.dataset.poll) startLive(table);
    }
  });
})();
