"""The ChatbotMobile stand-in's parts: store, validation, downloads, idempotency, routes, app."""
