"""One agent process: OCSAgent (WAMP presence, reconnect), operations, sessions, params, feeds, locks."""
