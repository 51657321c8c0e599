"""Moving data in and out of memoryd: export, import, migrate, re-embed (CLI side and the
work behind the ``store.*`` transfer methods)."""
