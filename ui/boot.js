// Starts the console's wasm. A file of its own, not an inline script: the
// Content-Security-Policy (the server's, and the desktop app's) allows no inline
// script.
import init from "/ui.js";

init().catch((err) => {
  const boot = document.getElementById("boot");
  if (boot) boot.textContent = "The console failed to start: " + err;
  console.error(err);
});
