"""The CLI's exit codes: 0 every item succeeded; 1 an item failed (or an admin check
found a problem); 2 a usage error; 3 the server could not be reached or refused the request
as a whole (HTTP 4xx/5xx, no token)."""

EXIT_ITEM_FAILED = 1
EXIT_USAGE = 2
EXIT_REQUEST_FAILED = 3
