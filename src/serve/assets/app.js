// cojobs dashboard: live updates from the page's one event stream
// (/events). Everything from the server is set as text, never as markup.
"use strict";
(function () {
  if (!window.EventSource) {
    return;
  }
  var job = document.body.dataset.job;
  var url = "/events" + (job ? "?job=" + encodeURIComponent(job) : "");
  var source = new EventSource(url);
  source.addEventListener("update", function (ev) {
    var d;
    try {
      d = JSON.parse(ev.data);
    } catch (e) {
      return;
    }
    var counts = d.counts || {};
    Object.keys(counts).forEach(function (status) {
      document.querySelectorAll("[data-count]").forEach(function (el) {
        if (el.dataset.count === status) {
          el.textContent = String(counts[status]);
        }
      });
    });
    if (job && d.job) {
      var st = document.getElementById("status");
      if (st && st.dataset.status !== d.job.status) {
        // The status changed: the page's buttons and columns follow it.
        source.close();
        window.location.reload();
        return;
      }
      var bar = document.getElementById("progress");
      if (bar && typeof d.job.percent === "number") {
        bar.value = d.job.percent;
      }
      var line = document.getElementById("status-line");
      if (line) {
        line.textContent = d.job.status_line || "–";
      }
    }
  });
})();
