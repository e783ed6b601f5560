"""optbayesexpt's classic TCP protocol: the command dispatcher (pure) and its Twisted server."""
