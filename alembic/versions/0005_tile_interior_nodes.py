"""Full tiles keep all their interior nodes (254 hashes) instead of the 16 of height 4 ("middle" layer).

Proof serving then slices a fresh tile's siblings instead of hashing up to 30 nodes (log/tiles.py: interior_nodes).
The column is renamed and every full tile's value recomputed from the tile itself, in chunks of 1,024 tiles.
Downgrade recomputes the middle layer the same way.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

from log.hashing import hash_children

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_FULL = 256 * 32
_CHUNK = 1024


def _layers(tile: bytes) -> list[bytes]:
    """Layers 0..8 of a full tile: layer r holds its 256 >> r perfect nodes of height r (RFC 6962 interior hash)."""
    layers = [tile]
    while len(layers[-1]) > 32:
        below = layers[-1]
        layers.append(b"".join(hash_children(below[i:i + 32], below[i + 32:i + 64]) for i in range(0, len(below), 64)))
    return layers


def _recompute(column: str, value) -> None:
    conn = op.get_bind()
    tiles = sa.table("tiles", sa.column("level"), sa.column("idx"), sa.column("data"), sa.column(column))
    after = (-1, -1)
    while True:
        rows = conn.execute(
            sa.select(tiles.c.level, tiles.c.idx, tiles.c.data)
            .where(sa.tuple_(tiles.c.level, tiles.c.idx) > after, sa.func.length(tiles.c.data) == _FULL)
            .order_by(tiles.c.level, tiles.c.idx).limit(_CHUNK)
        ).all()
        if not rows:
            return
        conn.execute(
            tiles.update().where(tiles.c.level == sa.bindparam("l"), tiles.c.idx == sa.bindparam("i"))
            .values({column: sa.bindparam("v")}),
            [{"l": level, "i": idx, "v": value(bytes(data))} for level, idx, data in rows],
        )
        after = (rows[-1].level, rows[-1].idx)


def upgrade() -> None:
    op.execute("ALTER TABLE tiles RENAME COLUMN middle TO interior")
    _recompute("interior", lambda tile: b"".join(_layers(tile)[1:8]))


def downgrade() -> None:
    op.execute("ALTER TABLE tiles RENAME COLUMN interior TO middle")
    _recompute("middle", lambda tile: _layers(tile)[4])
