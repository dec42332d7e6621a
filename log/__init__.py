"""The transparency log: RFC 6962/9162 Merkle tree, C2SP tiles and signed notes, storage and the sequencer.

Nothing in this package imports from `api` or `witness`, and nothing here knows about HTTP.
"""
