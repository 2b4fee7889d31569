// HTTP helpers for the lab API: CSRF, JSON, and one error shape for everything.
// Every failure becomes {errors: [{field, line, message}]} so the page shows all of them alike.

function csrfToken() {
  const input = document.querySelector("#workbench input[name=csrfmiddlewaretoken]");
  if (input && input.value) { return input.value; }
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

async function readJson(response) {
  const text = await response.text();
  if (!text) { return {}; }
  try {
    return JSON.parse(text);
  } catch (err) {
    return { errors: [{ field: null, line: null,
      message: `the server answered HTTP ${response.status} with something that is not JSON` }] };
  }
}

/** Thrown for any non-2xx answer; ``errors`` is the API's list (or one made up here). */
export class ApiError extends Error {
  constructor(status, errors) {
    super(errors.map((e) => e.message).join("; ") || `HTTP ${status}`);
    this.status = status;
    this.errors = errors;
  }
}

async function request(url, options) {
  let response;
  try {
    response = await fetch(url, { credentials: "same-origin", ...options });
  } catch (err) {
    throw new ApiError(0, [{ field: null, line: null, message: `network error: ${err.message}` }]);
  }
  const data = await readJson(response);
  if (!response.ok) {
    const errors = Array.isArray(data.errors) && data.errors.length ? data.errors
      : [{ field: null, line: null, message: `HTTP ${response.status} ${response.statusText}` }];
    throw new ApiError(response.status, errors);
  }
  return data;
}

export function getJson(url, params) {
  const query = params ? "?" + new URLSearchParams(
    Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== "")).toString() : "";
  return request(url + query, { headers: { Accept: "application/json" } });
}

export function postForm(url, formData) {
  return request(url, { method: "POST", body: formData,
    headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" } });
}

export function postJson(url, body) {
  return request(url, { method: "POST", body: JSON.stringify(body),
    headers: { "X-CSRFToken": csrfToken(), "Content-Type": "application/json",
               Accept: "application/json" } });
}
