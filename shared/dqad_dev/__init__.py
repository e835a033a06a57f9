"""dqad's development tooling: the CLI, demo, synthetic data, embedded runtime, listener, load harness,
backtest and contract generator.

Never packaged into a Lambda: deployed code imports only :mod:`dqad` (see docs/architecture.md,
"Layout"), and a layout test keeps it that way.
"""
