// Switchyard's /docs page: starts Swagger UI on the OpenAPI document that the page names (data-spec-url).
// A file of its own, not an inline script, so the page's Content-Security-Policy allows scripts from 'self' only.
window.addEventListener("load", function () {
  var node = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: node.getAttribute("data-spec-url"),
    domNode: node,
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: "none", // never send the document to an outside validator
    queryConfigEnabled: false, // ?url=... must not load another document into this origin's page
    persistAuthorization: false, // a key typed into "Authorize" is not kept in the browser's storage
    tryItOutEnabled: false,
  });
});
