def main() -> None:  # replaced by the CLI module\n    raise SystemExit("retention CLI not built yet")
