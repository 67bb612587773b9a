"""`python -m local.main` with bench.meter.patch_moto_transactions applied to its in-process moto server
(TransactWriteItems snapshots the touched items instead of deep-copying whole tables: no race between
concurrent transactions, no cost growing with the table). Used by the throughput run only."""

from __future__ import annotations

from bench.meter import patch_moto_transactions

if __name__ == "__main__":
    patch_moto_transactions()
    from local.main import main
    main()
