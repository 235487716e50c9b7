// The destination filter editor's live preview: as the FQL or the actions change, the form is
// posted to the page's preview route, which answers the preview's HTML and the errors by field.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("filter-form");
  const preview = document.getElementById("preview");
  const status = document.getElementById("preview-status");
  if (!form || !preview || !window.fetch) return;
  const statement = document.getElementById("if");
  const ifError = document.getElementById("if-error");
  const actionsError = document.getElementById("actions-error");
  let timer = null;
  let asked = 0;

  const show = (element, field, message) => {
    if (!element) return;
    element.textContent = message || "";
    element.hidden = !message;
    if (field) field.setAttribute("aria-invalid", message ? "true" : "false");
  };

  const refresh = async () => {
    const mine = ++asked;
    const data = new FormData(form);
    data.set("action", "preview");
    status.textContent = "Updating…";
    try {
      const answer = await fetch(form.dataset.preview, {
        method: "POST",
        body: new URLSearchParams(data),
        credentials: "same-origin",
        headers: { accept: "application/json" },
      });
      const found = await answer.json();
      if (mine !== asked) return; // a newer request is on its way
      const errors = found.errors || {};
      show(ifError, statement, errors.if);
      show(actionsError, null, errors.actions || errors.sample || errors.drop_properties || errors.allow_properties || errors.form);
      if (found.html !== undefined) preview.innerHTML = found.html;
      status.textContent = Object.keys(errors).length ? "Fix the filter to preview it." : "Up to date.";
    } catch (problem) {
      if (mine === asked) status.textContent = "The preview could not be updated.";
    }
  };

  const soon = () => {
    clearTimeout(timer);
    timer = setTimeout(refresh, 400);
  };
  form.addEventListener("input", soon);
  form.addEventListener("change", soon);
});
