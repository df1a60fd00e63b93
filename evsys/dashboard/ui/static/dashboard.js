// evsys dashboard: the one script. It keeps a running experiment's page current by fetching the
// server-rendered (escaped) fragment of its live part, with the session cookie, and swapping it in.
"use strict";

function startLiveUpdates(section) {
  const url = section.dataset.liveUrl;
  const every = Number(section.dataset.pollMs) || 2000;
  let busy = false;
  async function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const answer = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (answer.status === 401 || answer.redirected) { clearInterval(timer); return; }
      if (!answer.ok) return;
      const html = await answer.text();
      const ticked = new Set([...section.querySelectorAll("input[name=run]:checked")].map((box) => box.value));
      section.innerHTML = html;
      for (const box of section.querySelectorAll("input[name=run]")) box.checked = ticked.has(box.value);
      section.dataset.updatedAt = String(Date.now());
    } catch (_) {
      // The service restarting or the network dropping: try again at the next tick.
    } finally {
      busy = false;
    }
  }
  const timer = setInterval(refresh, every);
}

document.addEventListener("DOMContentLoaded", () => {
  const live = document.getElementById("live");
  if (live && live.dataset.liveUrl) startLiveUpdates(live);
});
