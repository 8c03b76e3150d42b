document.documentElement.classList.add("js");  // before the first paint: no flash of no-JS layout
