/* medbench leaderboard: sort by any column, filter rows. Without JavaScript the table keeps its
   server-side order (by rank) and the filter form stays hidden. No network, no dependencies. */
(function () {
  "use strict";

  function cellValue(cell, type) {
    var text = cell.textContent.trim();
    if (type === "text") return text.toLowerCase();
    var v = parseFloat(text.replace(/,/g, ""));
    return isNaN(v) ? null : v;
  }

  function sortTable(table, col, th) {
    var type = th.getAttribute("data-type") || "num";
    var state = th.getAttribute("aria-sort");
    // first click: text and rank ascending, metrics descending (higher is better); then toggle
    var asc = state ? state === "descending" : (type === "text" || col === 0);
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows).map(function (row, i) {
      return { row: row, i: i, v: cellValue(row.cells[col], type) };
    });
    rows.sort(function (a, b) {
      if (a.v === null || a.v === "") return (b.v === null || b.v === "") ? a.i - b.i : 1;
      if (b.v === null || b.v === "") return -1;  // missing values always last
      if (a.v < b.v) return asc ? -1 : 1;
      if (a.v > b.v) return asc ? 1 : -1;
      return a.i - b.i;
    });
    rows.forEach(function (r) { body.appendChild(r.row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
  }

  function applyFilter(form, table) {
    var q = form.elements.q.value.trim().toLowerCase();
    var want = { a: form.elements.a.value, m: form.elements.m.value, x: form.elements.x.value };
    var shown = 0, rows = table.tBodies[0].rows;
    for (var i = 0; i < rows.length; i++) {
      var row = rows[i];
      if (row._text === undefined) row._text = row.textContent.toLowerCase();
      var ok = (!q || row._text.indexOf(q) !== -1) &&
        (!want.a || row.getAttribute("data-a") === want.a) &&
        (!want.m || row.getAttribute("data-m") === want.m) &&
        (!want.x || row.getAttribute("data-x") === want.x);
      row.hidden = !ok;
      if (ok) shown++;
    }
    form.elements.count.value = shown + " of " + rows.length + " shown";
  }

  function init(table) {
    var headers = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(headers, function (th, col) {
      var button = document.createElement("button");
      button.type = "button";
      while (th.firstChild) button.appendChild(th.firstChild);
      th.appendChild(button);
      button.addEventListener("click", function () { sortTable(table, col, th); });
    });
    var form = document.querySelector('form.filters[data-for="' + table.id + '"]');
    if (!form) return;
    form.hidden = false;
    form.addEventListener("input", function () { applyFilter(form, table); });
    form.addEventListener("change", function () { applyFilter(form, table); });
    form.addEventListener("submit", function (e) { e.preventDefault(); });
    applyFilter(form, table);
  }

  document.querySelectorAll("table.board").forEach(init);
})();
