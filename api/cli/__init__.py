"""The `auditlog` command line: running the server, and the client commands of producers, monitors and auditors."""
