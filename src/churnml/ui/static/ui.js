// churnml ui: the page's own script (no inline scripts: the Content-Security-Policy allows
// scripts from this server only). Draws the charts from the JSON the server put in the page
// and submits the forms whose selects are marked "autosubmit".
(function () {
  "use strict";
  document.querySelectorAll("select.autosubmit").forEach(function (el) {
    el.addEventListener("change", function () { el.form.submit(); });
  });
  var COLORS = ["#0b69a3", "#e12d39", "#3ebd93", "#f0b429", "#7c5e10", "#8719e0", "#52606d"];
  var TIER_COLORS = {"thriving": "#27ab83", "healthy": "#57ae5b", "needs attention": "#f0b429",
                     "at risk": "#f35627", "critical": "#ba2525", "insufficient data": "#9aa5b1"};
  function data(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }
  var OUTCOME_COLORS = {"Churn probability": "#ba2525", "Contraction probability": "#f0b429",
                        "Expansion probability": "#27ab83"};
  function day(u, vals) {
    return vals.map(function (v) { return new Date(v * 1000).toISOString().slice(0, 10); });
  }
  function width(el) { return Math.max(300, el.clientWidth - 12); }
  function draw(el, title, x, series, yLabel, pct, range) {
    if (!el || typeof uPlot === "undefined") { return; }
    var opts = {
      title: title, width: width(el), height: 260, padding: [12, 40, 0, 0],
      scales: {x: {time: true}, y: pct ? {range: [0, 1]} : (range ? {range: range} : {})},
      axes: [{values: day, space: 90, incrs: [604800, 1209600, 2419200, 7257600, 31449600]}, {label: yLabel, values: pct ? function (u, v) { return v.map(function (t) { return Math.round(t * 100) + "%"; }); } : undefined}],
      series: [{label: "week", value: function (u, v) { return v == null ? "–" : new Date(v * 1000).toISOString().slice(0, 10); }}].concat(series.map(function (s, i) {
        return {label: s.label, stroke: s.color || OUTCOME_COLORS[s.label] || COLORS[i % COLORS.length], width: 2,
                spanGaps: true, value: pct ? function (u, v) { return v == null ? "–" : (v * 100).toFixed(1) + "%"; } : undefined};
      }))
    };
    el.innerHTML = "";
    new uPlot(opts, [x].concat(series.map(function (s) { return s.values; })), el);
    el.setAttribute("data-drawn", "1");
  }
  var trend = data("trend-data");
  if (trend) {
    draw(document.getElementById("trend-chart"), "Accounts per health tier", trend.x,
         trend.series.map(function (s) { return {label: s.label, values: s.values, color: TIER_COLORS[s.label]}; }),
         "accounts", false);
  }
  var acct = data("account-data");
  if (acct) {
    draw(document.getElementById("health-chart"), "Health score (0-100)", acct.x,
         [{label: "health score", values: acct.health, color: "#27ab83"}], "health", false, [0, 100]);
    draw(document.getElementById("prob-chart"), "Probability of each outcome", acct.x,
         acct.series, "probability", true);
  }
})();
