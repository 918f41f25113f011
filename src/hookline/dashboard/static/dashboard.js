// The overview's chart: the deliveries per minute of the last 24 hours, stacked by status,
// drawn by Chart.js from the page's JSON (no inline script: the pages' CSP allows none).
// Without JavaScript the page shows the same counts by hour in a table.
(function () {
  "use strict";

  var COLOURS = {
    succeeded: "#1f7a4d",
    failed: "#b3261e",
    pending: "#c99700",
    cancelled: "#8a949f",
  };

  function draw() {
    var source = document.getElementById("chart-data");
    var canvas = document.getElementById("chart");
    if (!source || !canvas || typeof Chart === "undefined") {
      return;
    }
    var data = JSON.parse(source.textContent);
    canvas.parentElement.hidden = false;
    new Chart(canvas, {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: data.series.map(function (series) {
          return {
            label: series.status,
            data: series.counts,
            backgroundColor: COLOURS[series.status] || "#5b6572",
            borderWidth: 0,
            barPercentage: 1,
            categoryPercentage: 1,
          };
        }),
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        scales: {
          x: {
            stacked: true,
            // A label every third hour on the hour (1440 minutes: one bar each).
            ticks: {
              autoSkip: false,
              maxRotation: 0,
              callback: function (value) {
                var label = this.getLabelForValue(value);
                return /:00$/.test(label) && parseInt(label, 10) % 3 === 0 ? label : null;
              },
            },
            grid: { display: false },
          },
          y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } },
        },
        plugins: {
          legend: { position: "bottom" },
          tooltip: { mode: "index", intersect: false },
        },
      },
    });
    canvas.setAttribute("data-drawn", "true");
  }

  document.addEventListener("DOMContentLoaded", draw);
})();
