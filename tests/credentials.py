"""The admin credential tests give the servers they start, so that they can read what is private (entry contents,
events, blobs, the registry) and append plain entries, as the operator does with `<data dir>/admin.token`."""

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
