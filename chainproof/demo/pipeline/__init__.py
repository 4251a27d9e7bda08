"""The demo pipeline's own code (features, training, evaluation).

These files are registered as ``code`` assets and run as separate processes by ``chainproof
run``; this ``__init__`` only makes them ship with the package.
"""
