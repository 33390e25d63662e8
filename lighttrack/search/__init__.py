"""Phase 3: architecture search on a trained supernet (plain torch / Nevergrad / pyarrow)."""
