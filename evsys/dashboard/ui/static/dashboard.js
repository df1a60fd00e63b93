// evsys dashboard: the one script. It keeps an experiment's page current by fetching the
// server-rendered (escaped) fragment of its live part, with the session cookie, and swapping it
// in: every 2 s while the sweep runs, every 30 s once it has finished (a resumed sweep still shows).
// Each poll sends back the fragment's ETag; the service answers 304 (nothing to swap) while the
// experiment, its arms and generations are as they were.
"use strict";

const FINISHED = new Set(["completed", "failed", "cancelled", "canceled"]);

function startLiveUpdates(section) {
  const url = section.dataset.liveUrl;
  const running = Number(section.dataset.pollMs) || 2000;
  let version = section.dataset.liveVersion || null; // the ETag of the fragment shown

  function delay() {
    const outcome = section.querySelector("[data-status]");
    return outcome && FINISHED.has(outcome.dataset.status) ? 15 * running : running;
  }

  async function refresh() {
    if (!document.hidden) {
      try {
        const headers = { Accept: "text/html" };
        if (version) headers["If-None-Match"] = version;
        const answer = await fetch(url, { credentials: "same-origin", cache: "no-store", headers });
        if (answer.status === 401 || answer.redirected) return; // logged out: stop polling
        if (answer.ok) {
          version = answer.headers.get("ETag");
          const html = await answer.text();
          const ticked = new Set([...section.querySelectorAll("input[name=run]:checked")].map((box) => box.value));
          section.innerHTML = html;
          for (const box of section.querySelectorAll("input[name=run]")) box.checked = ticked.has(box.value);
        }
      } catch (_) {
        // The service restarting or the network dropping: try again at the next tick.
      }
    }
    setTimeout(refresh, delay());
  }
  setTimeout(refresh, delay());
}

document.addEventListener("DOMContentLoaded", () => {
  const live = document.getElementById("live");
  if (live && live.dataset.liveUrl) startLiveUpdates(live);
});
