"""Result storage: one SQLite file per output folder, resumable per problem."""

from ttscale.store.sqlite import DB_NAME, Store, StoredResult, StoreError

__all__ = ["DB_NAME", "Store", "StoreError", "StoredResult"]
