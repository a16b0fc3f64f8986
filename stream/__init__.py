"""The wire: typed messages, their binary encoding, settings, adapters, metrics."""
