"""One module per group of routes; ``grounded.api.app.ROUTERS`` lists them."""
