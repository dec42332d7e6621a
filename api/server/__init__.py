"""The log server: the aiohttp app, its routes, problem+json errors, metrics, OpenAPI, read workers, and the
witnessing and timestamping jobs that run inside it. Uses `log` and `witness`; nothing here is needed to verify."""
