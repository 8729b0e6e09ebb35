"""Process plumbing every layer may use: errors as one line, devices and dtypes, progress, running a network the
user supplies, cluster shares, safe torch files, files written atomically, version records, test hooks.

The bottom layer: it imports nothing else of the package."""
