"""The log's HTTP faces: `api.server` (the log server), `api.client` (client, monitor, producer SDK, offline
evidence) and `api.cli` (the `auditlog` command). Uses `log` and `witness`, never the other way round."""
