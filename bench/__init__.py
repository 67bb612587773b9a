"""`make bench`: AWS requests and DynamoDB capacity units per event and per message (moto, botocore
hooks), CPU with AWS stubbed, handler cold starts, tick work vs customer count, the cost model and a
bounded load run against the local stack. Results: bench/results/latest.json and latest.md."""
