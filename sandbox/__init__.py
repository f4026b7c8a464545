"""rq-sandbox: a local sandbox for a Java producer writing RQ jobs and Python RQ workers."""

__version__ = "0.1.0"
