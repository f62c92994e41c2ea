// Nubo's page behaviour, as files: the Content-Security-Policy allows no inline
// script or on* attribute (see app/__init__.py content_security_policy).
"use strict";

// A form with data-confirm asks before it is sent (the plain-POST buttons of
// templates/_partials/forms.html; htmx forms use hx-confirm).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm !== undefined
      && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
    event.stopImmediatePropagation();
  }
}, true);

// The zone wizard's storage steps: the chosen kind shows its fields
// (<div class="choices" data-sets-kind> inside a .storage-choice; "lower" lower-cases it).
document.addEventListener("change", (event) => {
  const choices = event.target.closest && event.target.closest("[data-sets-kind]");
  const box = choices && choices.closest(".storage-choice");
  if (box) {
    const value = event.target.value;
    box.dataset.kind = choices.dataset.setsKind === "lower" ? value.toLowerCase() : value;
  }
});

// The sidebar (templates/base.html): on a wide screen its <details> is open, on a
// phone it starts closed behind the Menu button; Escape closes it again.
const WIDE = window.matchMedia("(min-width: 900px)");
function placeMenu() {
  const menu = document.querySelector("details.navmenu");
  if (menu) menu.open = WIDE.matches;
}
WIDE.addEventListener("change", placeMenu);
document.addEventListener("keydown", (event) => {
  const menu = document.querySelector("details.navmenu[open]");
  if (event.key === "Escape" && menu && !WIDE.matches) {
    menu.open = false;
    menu.querySelector("summary").focus();
  }
});

// Tables become cards on a phone (nubo.css): each cell is labelled with its column's
// header (data-label), on load and after every htmx swap. Headers spanning several
// columns count for each; a cell that already has a data-label keeps it.
function labelCells(root) {
  for (const table of root.querySelectorAll("table.table")) {
    const heads = [];
    for (const th of table.querySelectorAll(":scope > thead > tr:last-child > th")) {
      for (let i = 0; i < (th.colSpan || 1); i++) heads.push(th.textContent.replace(/[▲▼↕]/g, "").trim());
    }
    if (!heads.length) continue;
    for (const row of table.querySelectorAll(":scope > tbody > tr")) {
      let col = 0;
      for (const cell of row.cells) {
        if (!cell.hasAttribute("data-label")) cell.setAttribute("data-label", heads[col] || "");
        col += cell.colSpan || 1;
      }
    }
  }
}
function ready() {
  placeMenu();
  labelCells(document);
}
if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
else ready();
document.addEventListener("htmx:afterSettle", (event) => labelCells(document));

// A "tick all" box (data-select-all="name"): ticks every box of that name in its form.
document.addEventListener("change", (event) => {
  const all = event.target;
  if (!(all instanceof HTMLInputElement) || !all.dataset.selectAll) return;
  const form = all.form;
  for (const box of document.querySelectorAll(`input[type=checkbox][name="${all.dataset.selectAll}"]`)) {
    if (!form || box.form === form) box.checked = all.checked;
  }
});
