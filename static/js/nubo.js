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
