"""agentfire: the on-call engineer's command line for an LLM agent misbehaving in production.

The core (everything outside ``agentfire.cli``) is a Python API: it never imports typer or rich.
"""

__version__ = "0.1.0"
