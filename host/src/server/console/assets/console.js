// The console's only script. Pages work without it; it shows times in the browser's time
// zone (UTC stays in the title, shown on hover) and tells the history filter the zone's
// offset so that the times typed there are read as local times.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const node of document.querySelectorAll("time[data-local]")) {
    const at = new Date(node.getAttribute("datetime"));
    if (!Number.isNaN(at.getTime())) {
      node.textContent = at.toLocaleString(undefined, {
        year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
      });
    }
  }
  for (const field of document.querySelectorAll("input[data-tz]")) {
    field.value = String(new Date().getTimezoneOffset());
  }
});
