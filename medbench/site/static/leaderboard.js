/* medbench leaderboard: sort by any column, filter rows, choose columns; the view is kept in the
   page's address (#...), so a link reproduces it. Without JavaScript the table keeps its
   server-side order (by rank), shows every column, and the filter form stays hidden.
   No network, no dependencies. */
(function () {
  "use strict";

  var tables = Array.prototype.slice.call(document.querySelectorAll("table.board"));

  function cellValue(cell, type) {
    var text = cell.textContent.trim();
    if (type === "text") return text.toLowerCase();
    var v = parseFloat(text.replace(/,/g, ""));
    return isNaN(v) ? null : v;
  }

  function headers(table) { return Array.prototype.slice.call(table.tHead.rows[0].cells); }

  function sortTable(table, col, asc) {
    var th = headers(table)[col];
    var type = th.getAttribute("data-type") || "num";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows).map(function (row) {
      return { row: row, i: +row.getAttribute("data-i"), v: cellValue(row.cells[col], type) };
    });
    rows.sort(function (a, b) {
      if (a.v === null || a.v === "") return (b.v === null || b.v === "") ? a.i - b.i : 1;
      if (b.v === null || b.v === "") return -1;  // missing values always last
      if (a.v < b.v) return asc ? -1 : 1;
      if (a.v > b.v) return asc ? 1 : -1;
      return a.i - b.i;
    });
    rows.forEach(function (r) { body.appendChild(r.row); });
    headers(table).forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    // tie-group shading means something only in rank order
    var inRankOrder = rows.every(function (r, k) { return r.i === k; });
    table.classList.toggle("resorted", !inRankOrder);
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
    var empty = table.parentNode.nextElementSibling;
    if (empty && empty.classList.contains("nomatch")) empty.hidden = shown > 0;
  }

  function showColumn(table, col, visible) {
    Array.prototype.forEach.call(table.rows, function (row) {
      if (row.cells[col]) row.cells[col].hidden = !visible;
    });
  }

  // --- the view in the address: #<table id>.sort=<col>:<asc|desc>&<table id>.q=...&... ---
  function readState() {
    var out = {};
    var hash = location.hash.slice(1);
    if (hash.indexOf("=") === -1) return out;  // a plain anchor (#datasets): not ours
    hash.split("&").forEach(function (part) {
      var kv = part.split("=");
      try { out[decodeURIComponent(kv[0])] = decodeURIComponent(kv.slice(1).join("=")); } catch (e) { /* ignore */ }
    });
    return out;
  }

  function writeState() {
    var parts = [];
    tables.forEach(function (table) {
      var st = table._state;
      Object.keys(st).sort().forEach(function (k) {
        if (st[k] !== "") parts.push(encodeURIComponent(table.id + "." + k) + "=" + encodeURIComponent(st[k]));
      });
    });
    if (sizeNav && currentSize) parts.unshift("size=" + encodeURIComponent(currentSize));
    var url = location.pathname + location.search + (parts.length ? "#" + parts.join("&") : "");
    try { history.replaceState(null, "", url); } catch (e) { /* file:// in some browsers: keep the view, skip the address */ }
  }

  function init(table, saved) {
    var ths = headers(table);
    table._state = {};
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row, i) { row.setAttribute("data-i", i); });
    function get(k) { return saved[table.id + "." + k]; }

    ths.forEach(function (th, col) {
      var button = document.createElement("button");
      button.type = "button";
      while (th.firstChild) button.appendChild(th.firstChild);
      th.appendChild(button);
      button.addEventListener("click", function () {
        var state = th.getAttribute("aria-sort");
        var type = th.getAttribute("data-type") || "num";
        // first click: text and rank ascending, metrics descending (higher is better); then toggle
        var asc = state ? state === "descending" : (type === "text" || col === 0);
        sortTable(table, col, asc);
        table._state.sort = th.getAttribute("data-col") + ":" + (asc ? "asc" : "desc");
        writeState();
      });
    });

    var form = document.querySelector('form.filters[data-for="' + table.id + '"]');
    if (!form) return;
    form.hidden = false;

    // column chooser: one checkbox per column but the model's; some start hidden to fit the page
    var fieldset = form.querySelector("details.columns fieldset");
    var hiddenCols = get("hide");
    var hide = hiddenCols !== undefined ? hiddenCols.split(",") :
      ths.filter(function (th) { return th.getAttribute("data-hide"); }).map(function (th) { return th.getAttribute("data-col"); });
    ths.forEach(function (th, col) {
      var key = th.getAttribute("data-col");
      if (!key || key === "model" || !fieldset) return;
      var label = document.createElement("label");
      var box = document.createElement("input");
      box.type = "checkbox";
      box.name = "col";
      box.value = key;
      box.checked = hide.indexOf(key) === -1;
      label.appendChild(box);
      label.appendChild(document.createTextNode(" " + th.textContent.trim()));
      fieldset.appendChild(label);
      showColumn(table, col, box.checked);
      box.addEventListener("change", function (e) {
        e.stopPropagation();
        showColumn(table, col, box.checked);
        table._state.hide = Array.prototype.filter.call(fieldset.querySelectorAll("input"), function (b) { return !b.checked; })
          .map(function (b) { return b.value; }).join(",") || "none";
        writeState();
      });
    });
    table._state.hide = hiddenCols !== undefined ? hiddenCols : "";

    ["q", "a", "m", "x"].forEach(function (k) {
      var v = get(k);
      if (v !== undefined && form.elements[k]) {
        form.elements[k].value = v;
        if (form.elements[k].value !== v) form.elements[k].value = "";  // an option that no longer exists
        table._state[k] = form.elements[k].value;
      }
    });
    function onFilter(e) {
      if (e && e.target && e.target.name === "col") return;
      applyFilter(form, table);
      ["q", "a", "m", "x"].forEach(function (k) { table._state[k] = form.elements[k].value; });
      writeState();
    }
    form.addEventListener("input", onFilter);
    form.addEventListener("change", onFilter);
    form.addEventListener("submit", function (e) { e.preventDefault(); });
    applyFilter(form, table);

    var sort = get("sort");
    if (sort) {
      var bits = sort.split(":");
      var col = ths.map(function (th) { return th.getAttribute("data-col"); }).indexOf(bits[0]);
      if (col !== -1) {
        sortTable(table, col, bits[1] === "asc");
        table._state.sort = sort;
      }
    }
  }

  // --- image-size tracks: show one size at a time (all of them without JavaScript) ---
  var sizeNav = document.querySelector("nav.sizes");
  var currentSize = "";
  function showSize(size) {
    var links = sizeNav ? sizeNav.querySelectorAll("a[data-size]") : [];
    if (!links.length) return;
    var known = Array.prototype.some.call(links, function (a) { return a.getAttribute("data-size") === size; });
    if (!known) size = links[0].getAttribute("data-size");
    currentSize = size;
    Array.prototype.forEach.call(links, function (a) {
      if (a.getAttribute("data-size") === size) a.setAttribute("aria-current", "true");
      else a.removeAttribute("aria-current");
    });
    Array.prototype.forEach.call(document.querySelectorAll("section.track[data-size]"), function (sec) {
      sec.hidden = sec.getAttribute("data-size") !== size;
    });
  }

  var saved = readState();
  tables.forEach(function (t) { init(t, saved); });
  if (sizeNav) {
    showSize(saved.size || "");
    sizeNav.addEventListener("click", function (e) {
      var a = e.target.closest ? e.target.closest("a[data-size]") : null;
      if (!a) return;
      e.preventDefault();
      showSize(a.getAttribute("data-size"));
      writeState();
    });
  }
})();
