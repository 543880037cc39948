// Forms that ask before they submit: <form data-confirm="Really?">. A static file rather than
// an inline onsubmit, so the Content-Security-Policy can refuse every inline script.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});
