// A table that scrolls sideways in its own box (on a phone or tablet) can be scrolled with the
// keyboard too (WCAG 2.1.1): the box takes the focus while, and only while, it scrolls.
(function () {
  "use strict";
  function update() {
    document.querySelectorAll(".table-responsive").forEach(function (box) {
      if (box.scrollWidth > box.clientWidth + 1) {
        box.tabIndex = 0;
      } else {
        box.removeAttribute("tabindex");
      }
    });
  }
  update();
  window.addEventListener("resize", update);
})();
