"""CDK app of the retention engine (`python -m infra.app`); see infra/stack.py for the composition."""
