// Headwater's web app: pages work without this file; it only adds conveniences.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("[data-copy]")) {
    button.addEventListener("click", async () => {
      const target = document.getElementById(button.dataset.copy);
      if (target && navigator.clipboard) {
        await navigator.clipboard.writeText(target.textContent.trim());
        button.textContent = "Copied";
      }
    });
  }
});
