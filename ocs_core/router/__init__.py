"""The crossbar router: its configuration rendered from the site hub, and the router process."""
