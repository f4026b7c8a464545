"""Live RQ workers for the sandbox: job functions, metrics-emitting worker classes and a pool."""
