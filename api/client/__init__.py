"""The client side: the verifying HTTP client, the monitor, the producer SDK and offline evidence verification.

Imports neither aiohttp's server parts nor SQLAlchemy (tests/test_architecture.py holds that), so a producer or an
auditor installs no server to sign an event or check a bundle."""
