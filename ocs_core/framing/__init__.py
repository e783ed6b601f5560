"""Sans-IO wire formats: length-prefixed JSON (optbayesexpt) and tab-separated lines (instrument servers)."""
