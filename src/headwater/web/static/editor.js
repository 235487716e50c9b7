// Code editors: Tab in a textarea marked data-tab-spaces inserts that many spaces (Shift+Tab
// removes them at the line's start). After Escape, Tab moves focus on as usual, so the
// keyboard is never trapped.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const area of document.querySelectorAll("textarea[data-tab-spaces]")) {
    const width = Number(area.dataset.tabSpaces) || 2;
    const indent = " ".repeat(width);
    let escaped = false;
    area.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        escaped = true;
        return;
      }
      if (event.key !== "Tab" || escaped || event.ctrlKey || event.altKey || event.metaKey) {
        escaped = false;
        return;
      }
      event.preventDefault();
      const { selectionStart: start, selectionEnd: end, value } = area;
      if (event.shiftKey) {
        const lineStart = value.lastIndexOf("\n", start - 1) + 1;
        const removed = value.slice(lineStart, lineStart + width).match(/^ */)[0].length;
        area.setRangeText("", lineStart, lineStart + removed, "preserve");
        area.setSelectionRange(Math.max(lineStart, start - removed), Math.max(lineStart, end - removed));
      } else {
        area.setRangeText(indent, start, end, "end");
      }
      area.dispatchEvent(new Event("input", { bubbles: true }));
    });
    area.addEventListener("blur", () => { escaped = false; });
  }
});
