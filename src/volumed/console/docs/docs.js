// Starts Swagger UI on this server's OpenAPI document. A file of its own, not an inline
// script: the page's Content-Security-Policy allows scripts from this origin only.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  // The default validator badge loads an image from a public host: nothing leaves.
  validatorUrl: null,
  tryItOutEnabled: false,
  persistAuthorization: false,
});
