"""The feedback store: what each variant predicted, the ground truth that came later, and every
promotion decision (SQLite by default, Postgres when configured). The router writes it; the
promotion controller reads it."""
