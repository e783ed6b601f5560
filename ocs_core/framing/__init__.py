"""Sans-IO wire formats (bytes in, events out; objects in, bytes out), free of any event loop."""
