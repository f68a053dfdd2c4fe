"""The node agent: a trio daemon that owns a node's state and serves the HTTP API."""
