"""The web console's files (``static/``) and the API docs page (``docs/``): plain HTML,
CSS and JavaScript modules, served as they are by :mod:`volumed.api.console` (no build
step, nothing fetched from elsewhere at run time)."""
