// syncway console: the little the pages need beyond HTML forms.
//
// - Auto-refresh: the selector in the header (Off by default, the choice
//   kept in this browser) re-reads the page and swaps its main region in
//   place; it waits while the tab is hidden, a dialog is open or a form
//   field has the focus, so it never fights the person using the page.
// - Confirmations: a form with data-confirm asks in a <dialog> first.
// - Live progress: an element with data-events follows the job's event
//   stream and writes each field into the elements that name it.
// No inline script anywhere: the Content-Security-Policy forbids it.
"use strict";

(function () {
  const STORE = "syncway.console.refresh";

  function busy() {
    if (document.hidden) return true;
    if (document.querySelector("dialog[open]")) return true;
    const active = document.activeElement;
    return !!(active && active.closest && active.closest("main form") &&
      active.matches("input, select, textarea"));
  }

  // Counted on <body> (data-refreshed, data-refresh-skipped): what a
  // person sees as "it refreshed" or "it waited", and what tests wait on.
  function count(name) {
    const body = document.body;
    body.dataset[name] = String(Number(body.dataset[name] || 0) + 1);
  }

  async function refreshMain() {
    const main = document.querySelector("main[data-refresh]");
    if (!main) return;
    if (busy()) {
      count("refreshSkipped");
      return;
    }
    try {
      const response = await fetch(window.location.href, { credentials: "same-origin" });
      if (!response.ok) return;
      const text = await response.text();
      const page = new DOMParser().parseFromString(text, "text/html");
      const fresh = page.querySelector("main[data-refresh]");
      if (fresh && !busy()) {
        main.replaceChildren(...fresh.childNodes);
        bindConfirmations(main);
        count("refreshed");
      } else {
        count("refreshSkipped");
      }
    } catch (_) {
      // The next tick tries again.
    }
  }

  function setUpRefresh() {
    const select = document.getElementById("refresh");
    if (!select) return;
    const stored = window.localStorage.getItem(STORE);
    if (stored !== null && select.querySelector(`option[value="${CSS.escape(stored)}"]`)) {
      select.value = stored;
    }
    let timer = null;
    const apply = () => {
      if (timer) window.clearInterval(timer);
      timer = null;
      const seconds = Number(select.value);
      const status = document.getElementById("refresh-status");
      if (seconds > 0) {
        timer = window.setInterval(refreshMain, seconds * 1000);
        if (status) status.textContent = `Refreshing every ${seconds} s`;
      } else if (status) {
        status.textContent = "Auto-refresh off";
      }
    };
    select.addEventListener("change", () => {
      window.localStorage.setItem(STORE, select.value);
      apply();
    });
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && Number(select.value) > 0) refreshMain();
    });
    apply();
  }

  function bindConfirmations(root) {
    root.querySelectorAll("form[data-confirm]").forEach((form) => {
      if (form.dataset.bound) return;
      form.dataset.bound = "1";
      form.addEventListener("submit", (event) => {
        if (form.dataset.confirmed) return;
        event.preventDefault();
        const dialog = document.getElementById("confirm");
        if (!dialog) return;
        dialog.querySelector("[data-message]").textContent = form.dataset.confirm;
        const yes = dialog.querySelector("[data-yes]");
        const no = dialog.querySelector("[data-no]");
        const close = (confirmed) => {
          dialog.close();
          yes.onclick = null;
          no.onclick = null;
          if (confirmed) {
            form.dataset.confirmed = "1";
            form.requestSubmit();
          }
        };
        yes.onclick = () => close(true);
        no.onclick = () => close(false);
        dialog.showModal();
        yes.focus();
      });
    });
  }

  function followEvents() {
    const live = document.querySelector("[data-events]");
    if (!live || typeof EventSource === "undefined") return;
    const state = document.getElementById("live-state");
    const source = new EventSource(live.dataset.events, { withCredentials: true });
    const write = (job) => {
      for (const [name, value] of Object.entries(job)) {
        document.querySelectorAll(`[data-field="${name}"]`).forEach((el) => {
          el.textContent = value === null || value === undefined ? "—" :
            (typeof value === "object" ? (value.message || JSON.stringify(value)) : String(value));
          if (name === "status") el.className = `status status-${value}`;
        });
      }
    };
    for (const kind of ["status", "progress", "end"]) {
      source.addEventListener(kind, (event) => {
        try {
          write(JSON.parse(event.data));
        } catch (_) {
          return;
        }
        if (state) state.textContent = kind === "end" ? "Finished" : "Live";
        if (kind === "end") source.close();
      });
    }
    source.onerror = () => {
      if (state && source.readyState === EventSource.CLOSED) state.textContent = "Not live";
    };
  }

  document.addEventListener("DOMContentLoaded", () => {
    setUpRefresh();
    bindConfirmations(document);
    followEvents();
  });
})();
