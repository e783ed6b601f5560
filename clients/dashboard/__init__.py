"""The web dashboard (``ocs-core web``): the whole site in a browser, with live plots.

``model`` (pure) keeps what is known of the site; ``link`` is the WAMP controller session;
``service`` ties them to the open pages; ``history`` asks the feed archiver; ``web`` serves the
page and its event stream; ``login`` (pure) holds the key and the login sessions, ``web_login``
their HTTP side, ``responses`` what the resources share; ``cli`` is the subcommand. See
docs/dashboard.md.
"""
