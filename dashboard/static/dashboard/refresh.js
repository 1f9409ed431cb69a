// Re-fetch the dashboard panels every few seconds and swap them in place (no library needed).
(function () {
  "use strict";
  var box = document.getElementById("dashboard-panels");
  var status = document.getElementById("dash-refresh");
  if (!box || !status) { return; }
  var seconds = parseInt(status.getAttribute("data-interval"), 10) || 5;
  var busy = false;
  function refresh() {
    if (busy || document.hidden) { return; }
    busy = true;
    fetch(box.getAttribute("data-url"), { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (r) {
        if (r.redirected || !r.ok) { throw new Error("HTTP " + r.status); }
        return r.text();
      })
      .then(function (html) {
        box.innerHTML = html;
        status.textContent = "auto-refresh every " + seconds + " s · updated " + new Date().toISOString().substr(11, 8) + " UTC";
        status.classList.remove("error");
      })
      .catch(function (e) {
        status.textContent = "refresh failed (" + e.message + "), retrying";
        status.classList.add("error");
      })
      .finally(function () { busy = false; });
  }
  setInterval(refresh, seconds * 1000);
})();
