"""Small constructs composed by infra/stack.py."""
