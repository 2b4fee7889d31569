// The runs list: ask before a Delete button deletes a run (the form posts without this
// script too; the page allows no inline script, so the question lives here).
for (const form of document.querySelectorAll("form.run-delete")) {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm || "Delete this run?")) { event.preventDefault(); }
  });
}
