// The one request builder for everything the page submits about a scenario: a run (Run ▶,
// Verify) and a comparison send the same scenario part — the source and its form fields,
// typed YAML or example, and the capture uploaded with the form — plus their own fields.
// Always a multipart form, so a capture travels with either (the server reads the JSON
// fields, builder and vary, from their text).

/**
 * @param {object} scenario  {source: "builder"|"yaml"|"example", builder (a Builder),
 *                            yamlText, example}
 * @param {object} fields    the request's own fields (mode, seed, delay_ms, vary …); objects
 *                           are sent as JSON, empty values left out
 * @returns {FormData}
 */
export function scenarioRequest({ source, builder, yamlText, example }, fields = {}) {
  const form = new FormData();
  form.append("source", source);
  for (const [name, value] of Object.entries(fields)) {
    if (value === undefined || value === null || value === "") { continue; }
    form.append(name, typeof value === "object" ? JSON.stringify(value) : String(value));
  }
  if (source === "builder") {
    form.append("builder", JSON.stringify(builder.read()));
    const file = builder.pcapFile();
    if (file) { form.append("pcap", file, file.name); }
  } else if (source === "yaml") {
    form.append("scenario", yamlText);
  } else {
    form.append("example", example);
  }
  return form;
}
